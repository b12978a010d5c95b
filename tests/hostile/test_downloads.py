"""Downloads against a reader who should not get the bytes, or who floods us (issue 11).

Real cj-api (gRPC + REST, HTTP/1.1 and HTTP/2) on 127.0.0.1, real PostgreSQL with
migration 0003's triggers, filesystem storages:
- a download in progress stops when its call turns private or its recording is purged,
  and the audit log says `cut` with the bytes sent (item 3);
- every refused attempt is audited, bad credentials included, aggregated per actor,
  address, result and minute (item 7);
- a malformed page token is INVALID_ARGUMENT naming it; a recording whose object is
  gone is UNAVAILABLE with a retry-after hint and never audited `allowed` (item 8).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cj.codec import call_to_pb
from cj.config import DatabaseConfig
from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from cj_api.app import ApiEndpoints, serve
from tests.e2e.harness import eventually
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, RunningApi, api_settings

TIMEOUT_S = 60
# Far more than loopback sockets hold (tcp_rmem grows to 32 MiB here); sparse, so cheap.
BIG = 256 * 1024 * 1024
INFLIGHT = 96 * 1024 * 1024  # more than enough for what sockets and windows hold
PATH = "/api/v1/calls/{}/recording"
RECEIVE_BUFFER = 256 * 1024


@pytest.fixture
async def api(database_config: DatabaseConfig, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """cj-api whose refused-attempt counts are written every 50 ms."""
    settings = api_settings(database_config, tmp_path)
    settings = replace(settings, api=replace(settings.api, audit_flush_interval_s=0.05))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        endpoints: ApiEndpoints = await nursery.start(
            functools.partial(serve, settings, shutdown=shutdown)
        )
        yield RunningApi(endpoints, settings, tmp_path)
        shutdown.set()


async def stored_call(api: RunningApi, size: int, **overrides: Any) -> uuid.UUID:
    """A call with a stored "MP3" of `size` zero bytes (a sparse file), written behind
    the API's back."""
    call = make_call(**overrides)
    async with api.client(AGENT_TOKEN) as agent:
        await agent.add_call(call_to_pb(call))
    key = f"2026/03/02/{call.uuid}.mp3"
    target = api.root / "recordings" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as file:
        file.truncate(size)
    digest = hashlib.sha256(call.uuid.bytes).hexdigest()  # never checked by a download
    await trio.to_thread.run_sync(
        api.query,
        "INSERT INTO recordings (call_uuid, status, original_name, original_size,"
        " original_sha256, storage, key, size, sha256, content_type)"
        " VALUES (%s, 'stored', 'rec.wav', %s, %s, 'recordings', %s, %s, %s, 'audio/mpeg')",
        (call.uuid, size, digest, key, size, digest),
    )
    return call.uuid


async def revoke(api: RunningApi, call_uuid: uuid.UUID, how: str) -> None:
    if how == "private":
        sql = "UPDATE calls SET private = true WHERE uuid = %s"
    else:
        sql = (
            "UPDATE recordings SET status = 'purged', storage = NULL, key = NULL"
            " WHERE call_uuid = %s"
        )
    await trio.to_thread.run_sync(api.query, sql, (call_uuid,))


async def audit_rows(api: RunningApi, sql_filter: str = "TRUE") -> list[dict[str, Any]]:
    return await trio.to_thread.run_sync(
        api.query,
        "SELECT actor, result, call_uuid, address, count, detail FROM audit_log"
        f" WHERE action = 'download' AND {sql_filter} ORDER BY id",
    )


# --- item 3: a download in progress stops --------------------------------------------------


async def rest_download_until_cut(
    api: RunningApi, call_uuid: uuid.UUID, how: str, http2: bool
) -> tuple[int, int]:
    """(bytes received before the change, in all); reads 256 KiB, changes, reads on."""
    received = before = 0
    # A small receive buffer (no autotuning up to 32 MiB): what is in flight when the
    # call changes stays far below the recording's size.
    transport = httpx.AsyncHTTPTransport(
        http1=not http2,
        http2=http2,
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)],
    )
    async with (
        httpx.AsyncClient(
            base_url=api.endpoints.rest_url,
            headers={"Authorization": f"Bearer {READER_TOKEN}"},
            timeout=30,
            transport=transport,
        ) as client,
        client.stream("GET", PATH.format(call_uuid)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(BIG)
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if not before and received >= 256 * 1024:
                    before = received
                    await revoke(api, call_uuid, how)
        except httpx.HTTPError:
            pass  # the server ended the body short of its Content-Length
    return before, received


async def grpc_download_until_cut(
    api: RunningApi, call_uuid: uuid.UUID, how: str
) -> tuple[int, int, RpcError | None]:
    received = before = 0
    error: RpcError | None = None
    async with api.client(READER_TOKEN) as reader:
        try:
            async with reader.download_recording(str(call_uuid)) as parts:
                async for part in parts:
                    received += len(part.chunk)
                    if not before and received >= 256 * 1024:
                        before = received
                        await revoke(api, call_uuid, how)
        except RpcError as exc:
            error = exc
    return before, received, error


@pytest.mark.parametrize("how", ["private", "purged"])
@pytest.mark.parametrize("transport", ["http1", "http2", "grpc"])
async def test_a_download_in_progress_stops_when_its_call_turns_private_or_is_purged(
    api: RunningApi, transport: str, how: str
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid = await stored_call(api, BIG)
        if transport == "grpc":
            before, received, error = await grpc_download_until_cut(api, call_uuid, how)
            assert error is not None, "the whole recording was sent"
            expected = ErrorCode.PERMISSION_DENIED if how == "private" else ErrorCode.GONE
            assert error.code is expected, error
        else:
            before, received = await rest_download_until_cut(
                api, call_uuid, how, http2=transport == "http2"
            )
        rows = await audit_rows(api, "result = 'cut'")
    assert before > 0
    # What was in flight (socket buffers, flow-control windows, one piece) arrives; the
    # rest of the 40 MiB does not.
    assert received - before < INFLIGHT, f"{received} of {BIG} bytes arrived after all"
    assert len(rows) == 1, rows
    (cut,) = rows
    assert cut["actor"] == "ops" and cut["call_uuid"] == call_uuid
    assert cut["address"] == "127.0.0.1"
    assert cut["detail"]["reason"] == how
    assert received <= cut["detail"]["bytes_sent"] < BIG


async def test_a_revoked_call_is_not_downloaded_even_if_revoked_between_check_and_send(
    api: RunningApi,
) -> None:
    """Revoked after the policy check passed: the audit transaction checks once more."""
    with trio.fail_after(TIMEOUT_S):
        call_uuid = await stored_call(api, 1000)
        await revoke(api, call_uuid, "private")
        async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
            answer = await client.get(
                PATH.format(call_uuid), headers={"Authorization": f"Bearer {READER_TOKEN}"}
            )
        rows = await audit_rows(api)
    assert answer.status_code == 403
    assert [r["result"] for r in rows] == ["permission_denied"]


# --- item 7: every attempt audited, floods aggregated ------------------------------------


async def test_refused_download_attempts_are_audited_and_aggregated(api: RunningApi) -> None:
    attempts = 25
    credentials = {
        "(none)": None,
        "(invalid)": "Bearer not-a-configured-token-at-all",
        "pbx-1": f"Bearer {AGENT_TOKEN}",
    }
    with trio.fail_after(TIMEOUT_S):
        call_uuid = await stored_call(api, 1000)
        async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
            for authorization in credentials.values():
                headers = {} if authorization is None else {"Authorization": authorization}
                for _ in range(attempts):
                    answer = await client.get(PATH.format(call_uuid), headers=headers)
                    assert answer.status_code in (401, 403)
        for token in (None, "not-a-configured-token-at-all", AGENT_TOKEN):
            async with api.client(token) as client:
                for _ in range(attempts):
                    with pytest.raises(RpcError) as info:
                        async with client.download_recording(str(call_uuid)) as parts:
                            async for _part in parts:
                                pass
                    assert info.value.code in (
                        ErrorCode.UNAUTHENTICATED,
                        ErrorCode.PERMISSION_DENIED,
                    )

        async def counted() -> list[dict[str, Any]] | None:
            rows = await audit_rows(api)
            total = sum(row["count"] for row in rows)
            return rows if total >= 2 * attempts * len(credentials) else None

        rows = await eventually(counted, timeout_s=10, what="the refused attempts counted")
    by_actor: dict[str, int] = {}
    for row in rows:
        assert row["address"] == "127.0.0.1"
        by_actor[row["actor"]] = by_actor.get(row["actor"], 0) + row["count"]
    assert by_actor == {actor: 2 * attempts for actor in credentials}
    results = {row["actor"]: row["result"] for row in rows}
    assert results == {
        "(none)": "unauthenticated",
        "(invalid)": "unauthenticated",
        "pbx-1": "permission_denied",
    }
    # 150 attempts, a handful of rows: one per actor and minute (two if a minute ended).
    assert len(rows) <= 2 * len(credentials), rows


# --- item 8: precise errors instead of 500 ---------------------------------------------


def forged_token(payload: object) -> str:
    text = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


FORGED = [
    {"v": 1, "t": 0, "u": ["00000000-0000-0000-0000-000000000000"], "q": "x"},
    {"v": 1, "t": 0, "u": {"a": 1}, "q": "x"},
    {"v": 1, "t": 0, "u": "00000000-0000-0000-0000-000000000000", "q": ["x"]},
    {"v": 1, "t": [0], "u": "00000000-0000-0000-0000-000000000000", "q": "x"},
    {"v": 1, "t": 10**30, "u": "00000000-0000-0000-0000-000000000000", "q": "x"},
    [1, 2, 3],
    "a string",
]


@pytest.mark.parametrize("payload", FORGED, ids=range(len(FORGED)))
async def test_a_malformed_page_token_is_invalid_argument(api: RunningApi, payload: object) -> None:
    token = forged_token(payload)
    with trio.fail_after(TIMEOUT_S):
        async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
            answer = await client.get(
                "/api/v1/calls",
                params={"phone": "9161234567", "page_token": token},
                headers={"Authorization": f"Bearer {READER_TOKEN}"},
            )
        async with api.client(READER_TOKEN) as reader:
            with pytest.raises(RpcError) as info:
                await reader.search_by_phone(
                    pb.SearchByPhoneRequest(phone="9161234567", page_token=token)
                )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "page_token"
    assert info.value.code is ErrorCode.INVALID_ARGUMENT and info.value.field == "page_token"


async def test_a_recording_whose_object_is_gone_is_unavailable_with_retry_after(
    api: RunningApi,
) -> None:
    """The encoder's handover seen from outside: the row names an object that is not
    (yet, or any more) there. Retry later; nothing was served, nothing audited allowed."""
    with trio.fail_after(TIMEOUT_S):
        call_uuid = await stored_call(api, 1000)
        await trio.to_thread.run_sync(
            api.query,
            "UPDATE recordings SET key = 'moved/elsewhere.mp3' WHERE call_uuid = %s",
            (call_uuid,),
        )
        async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
            answer = await client.get(
                PATH.format(call_uuid), headers={"Authorization": f"Bearer {READER_TOKEN}"}
            )
        async with api.client(READER_TOKEN) as reader:
            with pytest.raises(RpcError) as info:
                async with reader.download_recording(str(call_uuid)) as parts:
                    async for _part in parts:
                        pass
        rows = await audit_rows(api)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1
    assert [r["result"] for r in rows] == ["unavailable", "unavailable"]
