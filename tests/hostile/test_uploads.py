"""Hypothesis against the two upload endpoints: gRPC UploadRecording and REST PUT.

Each example sends one upload with random headers, sizes, checksums, names, chunking
and truncation (the client hanging up mid-body), over raw HTTP/1.1 or a real gRPC
stream. Whatever is sent:
- the answer is never a server error (5xx; INTERNAL, UNKNOWN, DATA_LOSS);
- no partial object remains in the temporary storage once the server is done;
- every committed object belongs to a recording row with its size and sha256, and
  every recording row has its object;
- an acknowledged upload is there, with the sha256 that was declared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError, open_channel
from tests.e2e.harness import eventually
from tests.fixtures.api import ADMIN_TOKEN, RunningApi
from tests.hostile.conftest import MAX_RECORDING_BYTES, ThreadedApi

# The server thread's libraries (psycopg_pool's jitter) use the global `random` while
# Hypothesis draws examples in this thread; Hypothesis notices the shared state moving
# and warns, although its own generation does not depend on it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
UPLOAD = "/calljournal.v1.CallJournal/UploadRecording"
SERVER_FAULTS = {ErrorCode.INTERNAL, ErrorCode.UNKNOWN, ErrorCode.DATA_LOSS}
# How the examples ended ("REST 201", "gRPC INVALID_ARGUMENT", "REST hung up" …): the
# thorough run reports it, showing that the generator reaches every kind of answer.
ANSWERS: Counter[str] = Counter()
QUICK_EXAMPLES = 40
THOROUGH_EXAMPLES = 400
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
}

NAMES = st.one_of(
    st.sampled_from(
        [
            "call.wav",
            "../../etc/passwd",
            "/etc/passwd",
            "a\x00b.wav",
            "x" * 300,
            "",
            "..",
            "dir/a.wav",
            "C:\\\\rec.wav",
            "запись 1.wav",
        ]
    ),
    st.text(max_size=40),
)


@dataclass
class Attempt:
    """One generated upload."""

    transport: str  # "rest" | "grpc"
    target: str  # "fresh" (a new call), "taken" (has a recording), "unknown", "garbage"
    body: bytes
    declared: str  # "exact" | "more" | "less" | "zero" | "negative" | "huge"
    checksum: str  # "right" | "wrong" | "upper" | "short" | "missing" | "digest"
    name: str | None
    chunks: list[int]
    hang_up_after: int | None  # bytes of the body sent before the client hangs up
    chunked: bool  # REST: Transfer-Encoding: chunked with X-Content-Length
    content_type: str


@st.composite
def attempts(draw: st.DrawFn) -> Attempt:
    body = draw(
        st.one_of(
            st.binary(max_size=2048),
            st.binary(min_size=60_000, max_size=200_000).map(lambda b: b * 2),
        )
    )
    hang_up = draw(st.integers(0, max(len(body) - 1, 0)))
    # Weighted toward well-formed uploads, so the success path is fuzzed (chunking,
    # duplicates) as much as the refusals.
    return Attempt(
        transport=draw(st.sampled_from(["rest", "grpc"])),
        target=draw(st.sampled_from(["fresh", "fresh", "fresh", "taken", "unknown", "garbage"])),
        body=body,
        declared=draw(
            st.sampled_from(["exact"] * 5 + ["more", "less", "zero", "negative", "huge"])
        ),
        checksum=draw(
            st.sampled_from(["right"] * 4 + ["digest", "wrong", "upper", "short", "missing"])
        ),
        name=draw(st.one_of(st.none(), st.just("call.wav"), NAMES)),
        chunks=draw(st.lists(st.integers(1, 70_000), max_size=6)),
        hang_up_after=hang_up if draw(st.integers(0, 3)) == 0 else None,
        chunked=draw(st.booleans()),
        content_type=draw(
            st.sampled_from(
                ["audio/wav"] * 3
                + ["application/octet-stream", "text/plain", "", "audio/x-wav; x=1"]
            )
        ),
    )


def declared_size(attempt: Attempt) -> int:
    n = len(attempt.body)
    return {
        "exact": n,
        "more": n + 1 + n // 3,
        "less": max(n - 1 - n // 3, 0),
        "zero": 0,
        "negative": -1,
        "huge": MAX_RECORDING_BYTES * 1000,
    }[attempt.declared]


def declared_sha(attempt: Attempt) -> str:
    right = hashlib.sha256(attempt.body).hexdigest()
    return {
        "right": right,
        "wrong": hashlib.sha256(attempt.body + b"!").hexdigest(),
        "upper": right.upper(),
        "short": right[:40],
        "missing": "",
        "digest": right,
    }[attempt.checksum]


def split(body: bytes, sizes: list[int]) -> list[bytes]:
    parts, at = [], 0
    for size in sizes:
        if at >= len(body):
            break
        parts.append(body[at : at + size])
        at += size
    if at < len(body):
        parts.append(body[at:])
    return parts


async def new_call(api: ThreadedApi) -> str:
    call_uuid = str(uuid.uuid4())
    call = {
        "uuid": call_uuid,
        "caller_number": "+7 916 000-00-01",
        "destination_number": "84957001020",
        "started_at": "2026-03-02T06:00:00Z",
    }
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{api.rest_url}/api/v1/calls",
            json=call,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 201, response.text
    return call_uuid


async def target_uuid(api: ThreadedApi, attempt: Attempt) -> str:
    if attempt.target == "fresh":
        return await new_call(api)
    if attempt.target == "taken":
        rows = await trio.to_thread.run_sync(
            api.query, "SELECT call_uuid::text AS uuid FROM recordings LIMIT 1"
        )
        return str(rows[0]["uuid"]) if rows else await new_call(api)
    if attempt.target == "unknown":
        return str(uuid.uuid4())
    return "not-a-uuid%20../.."


# --- REST over a raw socket ------------------------------------------------------------


async def rest_upload(api: ThreadedApi, attempt: Attempt, call_uuid: str) -> int | None:
    """Send the PUT byte for byte as generated; the status, or None if we hung up."""
    size = declared_size(attempt)
    headers = [
        f"PUT /api/v1/calls/{call_uuid}/recording HTTP/1.1",
        f"Host: 127.0.0.1:{api.rest_port}",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Connection: close",
    ]
    if attempt.content_type:
        headers.append(f"Content-Type: {attempt.content_type}")
    sha = declared_sha(attempt)
    if attempt.checksum == "digest":
        raw = bytes.fromhex(sha)
        headers.append(f"Content-Digest: sha-256=:{base64.b64encode(raw).decode()}:")
    elif sha:
        headers.append(f"X-Content-SHA256: {sha}")
    if attempt.name is not None:
        headers.append(f"X-File-Name: {quote(attempt.name, safe='')}")
    body = attempt.body
    hang_up_after = attempt.hang_up_after
    if hang_up_after is not None:
        body = body[:hang_up_after]
    if attempt.chunked:
        headers += ["Transfer-Encoding: chunked", f"X-Content-Length: {size}"]
        payload = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in split(body, attempt.chunks)
        )
        if hang_up_after is None:
            payload += b"0\r\n\r\n"
    else:
        headers.append(f"Content-Length: {size}")
        payload = body
        if size >= 0 and len(body) > size:
            payload = body[:size]  # HTTP/1.1 frames by Content-Length: the rest is not the body
        elif hang_up_after is None and len(body) < size:
            hang_up_after = len(body)  # fewer bytes than announced: we must hang up
    request = "\r\n".join(headers).encode() + b"\r\n\r\n" + payload
    stream = await trio.open_tcp_stream("127.0.0.1", api.rest_port)
    async with stream:
        try:
            await stream.send_all(request)
        except trio.BrokenResourceError:
            pass  # the server answered early and closed: read what it said
        if hang_up_after is not None:
            # At once, whatever the server is doing (an early refusal may be on its way:
            # see test_hang_up_during_an_early_refusal_does_not_stop_the_server).
            return None
        data = b""
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
        except trio.BrokenResourceError:
            pass
    assert data, "the server closed the connection without an answer"
    status = _status(data)
    _head, _, answer = data.partition(b"\r\n\r\n")
    if status >= 400 and answer:
        json.loads(answer)  # errors are JSON (hypercorn's own 400s have no body)
    return status


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# --- gRPC --------------------------------------------------------------------------------


class HangUp(Exception):
    """Raised inside the request stream: the client abandons the call mid-upload."""


async def grpc_upload(api: ThreadedApi, attempt: Attempt, call_uuid: str) -> ErrorCode | str:
    """The call's error code, or "ok", or "hung up"."""
    header = pb.UploadHeader(
        call_uuid=call_uuid,
        file_name=attempt.name if attempt.name is not None else "call.wav",
        size=declared_size(attempt),
        sha256=declared_sha(attempt),
    )
    parts = split(attempt.body, attempt.chunks)

    async def messages() -> Any:
        yield pb.UploadRecordingRequest(header=header)
        sent = 0
        for part in parts:
            if attempt.hang_up_after is not None and sent + len(part) > attempt.hang_up_after:
                raise HangUp
            yield pb.UploadRecordingRequest(chunk=part)
            sent += len(part)

    async with open_channel(api.grpc_address, token=ADMIN_TOKEN, default_timeout_s=30) as channel:
        try:
            reply = await channel.stream_unary(UPLOAD, messages(), pb.UploadRecordingResponse)
        except RpcError as exc:
            return exc.code
        except HangUp:  # stream_unary cancels the call and lets it through unchanged
            return "hung up"
    # The server answers the canonical (lower-case) form of the sha256 it verified.
    assert reply.sha256 == header.sha256.lower() and reply.size == header.size
    return "ok"


# --- the invariants ----------------------------------------------------------------------


def storage_consistent(api: ThreadedApi) -> list[str]:
    """Problems between the temporary storage and the recording rows (none expected)."""
    problems = []
    objects = api.temp_objects()
    rows = api.query(
        "SELECT call_uuid::text AS uuid, original_key, original_size, original_sha256 "
        "FROM recordings"
    )
    keys = {row["original_key"]: row for row in rows}
    for key, (size, sha) in objects.items():
        row = keys.get(key)
        if row is None:
            problems.append(f"object {key} belongs to no recording")
        elif (row["original_size"], row["original_sha256"]) != (size, sha):
            problems.append(f"object {key} is not what its row says ({size} bytes, {sha})")
    for key, row in keys.items():
        if key not in objects:
            problems.append(f"recording of {row['uuid']} has no object {key}")
    return problems


async def check_invariants(api: ThreadedApi, attempt: Attempt, call_uuid: str, ok: bool) -> None:
    # A hung-up upload is cleaned up when the server notices; give it a moment.
    await eventually(
        lambda: not api.partial_uploads(), timeout_s=10, interval=0.05, what="partial uploads gone"
    )
    problems = await trio.to_thread.run_sync(storage_consistent, api)
    assert not problems, problems
    if ok:
        rows = await trio.to_thread.run_sync(
            api.query,
            "SELECT original_sha256 FROM recordings WHERE call_uuid = %s::uuid",
            (call_uuid,),
        )
        assert rows and rows[0]["original_sha256"] == declared_sha(attempt).lower()


async def run_attempt(api: ThreadedApi, attempt: Attempt) -> None:
    with trio.fail_after(60):
        call_uuid = await target_uuid(api, attempt)
        if attempt.transport == "rest":
            status = await rest_upload(api, attempt, call_uuid)
            ANSWERS[f"REST {status}" if status else "REST hung up"] += 1
            assert status is None or status < 500, f"REST answered {status} to {attempt}"
            ok = status in (200, 201)
        else:
            if attempt.target == "garbage":
                call_uuid = "not-a-uuid"
            code = await grpc_upload(api, attempt, call_uuid)
            ANSWERS[f"gRPC {code}"] += 1
            assert code not in SERVER_FAULTS, f"gRPC answered {code} to {attempt}"
            ok = code == "ok"
        await check_invariants(api, attempt, call_uuid, ok)


@given(attempt=attempts())
@settings(max_examples=QUICK_EXAMPLES, **SETTINGS)
async def test_hostile_uploads_never_fault_or_leave_debris(
    hostile_api: ThreadedApi, attempt: Attempt
) -> None:
    await run_attempt(hostile_api, attempt)


@pytest.mark.slow
@given(attempt=attempts())
@settings(max_examples=THOROUGH_EXAMPLES, **SETTINGS)
async def test_hostile_uploads_thoroughly(hostile_api: ThreadedApi, attempt: Attempt) -> None:
    await run_attempt(hostile_api, attempt)


@pytest.mark.slow
def test_thorough_uploads_are_reported(hostile_api: ThreadedApi, reliability: Any) -> None:
    outcome = reliability.outcomes("test_hostile_uploads_thoroughly")
    assert outcome and all(result == "passed" for result in outcome.values()), outcome
    rows = hostile_api.query("SELECT count(*) AS n FROM recordings")
    reliability.record(
        "upload fuzzing (gRPC UploadRecording, REST PUT)",
        kind="hostile",
        summary=(
            "random sizes, checksums, names (../, /abs, NUL, 300 chars), chunking, "
            "truncation and hang-ups: never 5xx / INTERNAL, never a partial object left, "
            "every object matches its row and every row has its object"
        ),
        examples=sum(ANSWERS.values()),
        recordings_accepted=rows[0]["n"],
        answers="; ".join(f"{answer} ×{n}" for answer, n in sorted(ANSWERS.items())),
        failures=0,
    )


async def test_hang_up_during_an_early_refusal_does_not_stop_the_server(
    running_api: RunningApi,
) -> None:
    """No token, a 1 GB Content-Length, 3 bytes, hang up: the server refuses early (401)
    and must survive the client leaving. hypercorn's h11 protocol can fail such a
    connection (BusyResourceError from its error response; hypercorn#203 is the same
    family); cj_api.rest_server keeps that failure inside the one connection."""
    port = running_api.endpoints.rest_port
    request = (
        f"PUT /api/v1/calls/{uuid.uuid4()}/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 1048576000\r\n\r\nabc"
    ).encode()
    with trio.fail_after(30):
        for _ in range(50):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(request)
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(f"{running_api.endpoints.rest_url}/healthz")
    assert health.status_code == 200
