"""GET /api/v1/calls:export: a search's recordings as one streamed ZIP, with manifests;
private calls withheld, every recording audited (action "export")."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cj.db.audit import audit_entries
from cj.db.calls import CallRecord
from cj.db.recordings import create_recording, mark_stored
from cj.model import Call
from cj.phone import PhoneNumber
from cj_api.export import CallsExport, ExportStatus, export_query_from_params, member_name
from cj_api.rest_primitives import RestError
from tests.api.conftest import AGENT_TOKEN, READER_TOKEN, RestServer, ServiceStack
from tests.api.test_rest_recordings import new_call
from tests.factories import BASE_TIME

TIMEOUT_S = 30


async def store_mp3(stack: ServiceStack, call: Call, size: int = 30_000) -> bytes:
    """A stored recording: bytes in the permanent storage and its rows (as the encoder
    leaves them)."""
    mp3 = b"ID3" + os.urandom(size - 3)
    wav_sha = hashlib.sha256(b"wav" + call.uuid.bytes).hexdigest()
    key = f"mp3/{call.uuid}.mp3"
    async with stack.storages.permanent.open_upload(key) as writer:
        await writer.write(mp3)
        await writer.commit()

    def rows(conn: Any) -> None:
        create_recording(
            conn, call.uuid, original_name="a.wav", size=1000, sha256=wav_sha, storage="temp",
            key=f"wav/{call.uuid}.wav",
        )  # fmt: skip
        mark_stored(
            conn, call.uuid, storage="recordings", key=key, size=len(mp3),
            sha256=hashlib.sha256(mp3).hexdigest(), content_type="audio/mpeg",
            duration_ms=1000, sample_rate=8000, channels=2,
        )  # fmt: skip

    await stack.db.run(rows)
    return mp3


async def export(server: RestServer, params: dict[str, str], token: str = READER_TOKEN) -> Any:
    async with server.client(token) as reader:
        return await reader.get("/api/v1/calls:export", params=params)


async def test_export_zips_the_recordings_of_a_search_and_withholds_private_ones(
    rest_server: RestServer,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        number = "+7 900 280-04-21"
        calls = [
            await new_call(
                stack,
                caller=number,
                destination="1001",
                started_at=BASE_TIME + timedelta(minutes=i),
            )
            for i in range(3)
        ]
        private = await new_call(
            stack, caller=number, private=True, started_at=BASE_TIME + timedelta(minutes=10)
        )
        bare = await new_call(stack, caller=number, started_at=BASE_TIME + timedelta(minutes=20))
        other = await new_call(stack, caller="74950000000")
        mp3s = {call.uuid: await store_mp3(stack, call) for call in [*calls, private, other]}

        answer = await export(rest_server, {"phone": "8 (900) 280 04 21"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "application/zip"
        assert answer.headers["Content-Disposition"].startswith('attachment; filename="calls-')
        archive = zipfile.ZipFile(io.BytesIO(answer.content))
        assert archive.testzip() is None
        names = archive.namelist()
        expected = {member_name(CallRecord(call, None), "mp3"): call for call in calls}
        assert sorted(names) == sorted([*expected, "manifest.csv", "manifest.json"])
        assert names[-2:] == ["manifest.csv", "manifest.json"]
        first = calls[0]
        stamp = BASE_TIME.strftime("%Y%m%dT%H%M%SZ")
        assert f"{stamp}_79002800421_1001_{first.uuid}.mp3" in names
        for name, call in expected.items():
            assert archive.read(name) == mp3s[call.uuid]
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED

        manifest = json.loads(archive.read("manifest.json"))
        statuses = {row["uuid"]: row["status"] for row in manifest["calls"]}
        assert statuses == {
            **{str(call.uuid): "included" for call in calls},
            str(private.uuid): "withheld-private",
            str(bare.uuid): "no-recording",
        }
        assert manifest["calls"][0]["uuid"] == str(bare.uuid)  # newest first
        assert manifest["matched"] == 5 and manifest["truncated"] is False
        assert manifest["counts"]["included"] == 3 and manifest["actor"] == "ops"
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        assert {row["uuid"]: row["status"] for row in rows} == statuses
        assert all(mp3s[private.uuid] not in archive.read(name) for name in names)

        audited = await stack.query(
            "SELECT call_uuid, action, result FROM audit_log WHERE actor = 'ops'"
        )
        assert {(row["call_uuid"], row["action"], row["result"]) for row in audited} == {
            *((call.uuid, "export", "allowed") for call in calls),
            (private.uuid, "export", "permission_denied"),
        }
        assert await stack.db.run(lambda c: audit_entries(c, other.uuid, limit=5)) == []


async def test_an_export_is_paged_streamed_and_can_be_cut(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        calls = [
            await new_call(stack, caller="555 0100", started_at=BASE_TIME + timedelta(seconds=i))
            for i in range(7)
        ]
        for call in calls:
            await store_mp3(stack, call, size=5000)
        principal = stack.authenticator.authenticate(f"Bearer {READER_TOKEN}")
        query = replace(export_query_from_params({"phone": ["5550100"]}), limit=2)  # 3 pages
        body = CallsExport(stack.service, principal, query, max_calls=5)
        await body.start()
        pieces = []
        async with body:
            async for piece in body:
                pieces.append(piece)
        archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["matched"] == 5 and manifest["truncated"] is True
        assert len(archive.namelist()) == 5 + 2
        # Streamed: no piece holds more than one storage chunk plus headers.
        assert max(len(piece) for piece in pieces) < 1024 * 1024 + 4096
        assert body.counts[ExportStatus.INCLUDED] == 5


async def test_export_refusals_are_clean_json_before_any_byte(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        no_token = await export(rest_server, {"phone": "1"}, token="wrong")
        agent = await export(rest_server, {"phone": "1"}, token=AGENT_TOKEN)
        paged = await export(rest_server, {"phone": "1", "page_token": "x"})
        no_filter = await export(rest_server, {})
        assert no_token.status_code == 401
        assert agent.status_code == 403
        assert (paged.status_code, paged.json()["error"]["field"]) == (400, "page_token")
        assert (no_filter.status_code, no_filter.json()["error"]["field"]) == (400, "from")


async def test_exports_at_once_are_bounded(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        principal = stack.authenticator.authenticate(f"Bearer {READER_TOKEN}")
        query = export_query_from_params({"phone": ["1"]})
        limiter = trio.CapacityLimiter(1)
        first = CallsExport(stack.service, principal, query, max_calls=10, limiter=limiter)
        second = CallsExport(stack.service, principal, query, max_calls=10, limiter=limiter)
        await first.start()
        await second.start()  # accepted: nothing is being sent yet
        async with first:
            chunks = first.__aiter__()
            await chunks.__anext__()  # sending: the one place is taken
            third = CallsExport(stack.service, principal, query, max_calls=10, limiter=limiter)
            with pytest.raises(RestError) as refused:
                await third.start()
            assert refused.value.http_status == 429
            assert refused.value.headers["Retry-After"] == "30"
            with pytest.raises(RestError):  # started in time, but sends too late
                async with second:
                    async for _ in second:
                        pass
            async for _ in chunks:
                pass
        assert limiter.borrowed_tokens == 0
        fourth = CallsExport(stack.service, principal, query, max_calls=10, limiter=limiter)
        await fourth.start()  # the place was given back
        async with fourth:
            pass  # never sent: holds nothing
        assert limiter.borrowed_tokens == 0


def test_member_names_are_utc_and_digits() -> None:
    call = Call(
        uuid=uuid.UUID("7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d"),
        caller=PhoneNumber("+7 (900) 280-04-21"),
        destination=PhoneNumber("ivr"),
        started_at=BASE_TIME,
    )
    name = member_name(CallRecord(call, None), "mp3")
    assert name == (
        f"{BASE_TIME:%Y%m%dT%H%M%SZ}_79002800421_unknown_7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d.mp3"
    )


async def test_export_answers_are_streamed_over_http(rest_server: RestServer) -> None:
    """The ZIP arrives in pieces (chunked, no Content-Length) while it is being made."""
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack, caller="333")
        mp3 = await store_mp3(stack, call, size=3 * 1024 * 1024)
        headers = {"Authorization": f"Bearer {READER_TOKEN}"}
        pieces = []
        async with (
            httpx.AsyncClient(base_url=rest_server.url, headers=headers) as client,
            client.stream("GET", "/api/v1/calls:export", params={"phone": "333"}) as answer,
        ):
            assert answer.status_code == 200
            assert "Content-Length" not in answer.headers
            pieces = [piece async for piece in answer.aiter_raw()]
        assert len(pieces) > 1
        archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
        assert archive.read(archive.namelist()[0]) == mp3


async def test_big_members_and_offsets_use_zip64(
    rest_server: RestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """zipfile's ZIP64 threshold lowered to 10 KB: members and offsets past it take the
    ZIP64 records that > 4 GiB exports need; `unzip -t` (Info-ZIP) and zipfile agree."""
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        calls = [await new_call(stack, caller="444") for _ in range(3)]
        mp3s = [await store_mp3(stack, call, size=30_000) for call in calls]
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 10_000)
        answer = await export(rest_server, {"phone": "444"})
        monkeypatch.undo()
        assert answer.status_code == 200
        data = answer.content
        assert b"PK\x06\x06" in data  # the ZIP64 end of central directory record
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert sorted(archive.read(n) for n in archive.namelist() if n.endswith(".mp3")) == sorted(
            mp3s
        )
        if shutil.which("unzip"):
            path = tmp_path / "export.zip"
            path.write_bytes(data)
            checked = await trio.run_process(["unzip", "-tq", str(path)], capture_stdout=True)
            assert b"No errors detected" in checked.stdout
