"""REST uploads and downloads of recordings, with the temporary storage on the
filesystem and on SeaweedFS (S3): every test here runs against both."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from cj.config import FilesystemStorageConfig, StorageConfig
from cj.db.audit import audit_entries
from cj.db.ingest import upsert_call
from cj.db.recordings import mark_stored
from cj.model import Call
from tests.api.conftest import (
    AGENT_TOKEN,
    MAX_RECORDING_BYTES,
    READER_TOKEN,
    RestServer,
    ServiceStack,
    raw_exchange,
    running_rest_server,
)
from tests.factories import make_call

TIMEOUT_S = 30
UPLOAD_ROUTE = "PUT /api/v1/calls/<call_uuid>/recording"


@pytest.fixture(params=["filesystem", "s3"])
def temporary_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api_seaweed(temporary_kind: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("seaweedfs") if temporary_kind == "s3" else None


@pytest.fixture
def api_storage_config(tmp_path: Path, temporary_kind: str, api_seaweed: Any) -> StorageConfig:
    """Temporary storage on the filesystem or in a fresh SeaweedFS bucket; permanent on
    the filesystem."""
    if api_seaweed is not None:
        temporary: Any = api_seaweed.storage_config(api_seaweed.make_bucket("rest"))
    else:
        temporary = FilesystemStorageConfig(kind="filesystem", path=tmp_path / "temp", fsync=False)
    return StorageConfig(
        backends={
            "temp": temporary,
            "recordings": FilesystemStorageConfig(
                kind="filesystem", path=tmp_path / "recordings", fsync=False
            ),
        },
        temporary="temp",
        permanent="recordings",
    )


def wav_bytes(size: int = 200_000) -> bytes:
    return b"RIFF" + os.urandom(size - 4)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_headers(data: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "audio/wav", "X-Content-SHA256": sha256(data), **extra}


async def new_call(stack: ServiceStack, **overrides: Any) -> Call:
    call = make_call(**overrides)
    with trio.fail_after(10):
        await stack.db.run(lambda conn: upsert_call(conn, call))
    return call


async def upload(server: RestServer, call: Call, data: bytes) -> dict[str, Any]:
    async with server.client(AGENT_TOKEN) as agent:
        answer = await agent.put(
            f"/api/v1/calls/{call.uuid}/recording", content=data, headers=upload_headers(data)
        )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def assert_nothing_left(stack: ServiceStack, kept: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """No partial upload anywhere, and only the recordings of `kept` call uuids."""
    assert await stack.temporary_debris() == []
    objects = await stack.temporary_objects()
    assert all(any(call_uuid in key for call_uuid in kept) for key in objects), objects
    assert len(objects) == len(kept)
    rows = await stack.query("SELECT call_uuid FROM recordings")
    assert {str(row["call_uuid"]) for row in rows} == kept


# --- upload --------------------------------------------------------------------------------


async def test_upload_stores_records_and_queues_encoding(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack)
        data = wav_bytes()
        path = f"/api/v1/calls/{call.uuid}/recording"
        headers = upload_headers(
            data, **{"X-File-Name": "%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA.wav"}
        )
        async with rest_server.client(AGENT_TOKEN) as agent:
            first = await agent.put(path, content=data, headers=headers)
            # The same bytes again, this time declared with an RFC 9530 Content-Digest.
            digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
            again = await agent.put(
                path,
                content=data,
                headers={"Content-Type": "audio/x-wav", "Content-Digest": f"sha-256=:{digest}:"},
            )
            other = wav_bytes()
            different = await agent.put(path, content=other, headers=upload_headers(other))
            checked = await agent.post("/api/v1/calls:check", json={"uuids": [str(call.uuid)]})
        assert first.status_code == 201
        assert first.json() == {
            "duplicate": False,
            "size": len(data),
            "sha256": sha256(data),
            "status": "uploaded",
        }
        assert first.headers["Location"] == path
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        assert different.status_code == 409
        assert different.json()["error"]["code"] == "ALREADY_EXISTS"
        assert checked.json()["calls"][0]["recording_sha256"] == sha256(data)

        rows = await stack.query("SELECT * FROM recordings")
        assert len(rows) == 1
        assert (rows[0]["status"], rows[0]["original_size"]) == ("uploaded", len(data))
        assert rows[0]["original_name"] == "звонок.wav"
        jobs = await stack.query("SELECT body FROM jobs")
        assert [json.loads(bytes(job["body"])) for job in jobs] == [
            {"kind": "encode", "call_uuid": str(call.uuid)}
        ]
        await assert_nothing_left(stack, kept={str(call.uuid)})
        stored = await stack.storages.temporary.stat(rows[0]["original_key"])
        assert stored.size == len(data)
        uploaded = stack.metrics.registry.get_sample_value("cj_api_uploaded_bytes_total")
        assert uploaded == len(data)


async def test_chunked_upload_declares_its_size(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call, overlong = await new_call(stack), await new_call(stack)
        data = wav_bytes(300_000)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 50_000):
                yield data[start : start + 50_000]

        async with rest_server.client(AGENT_TOKEN) as agent:
            without = await agent.put(
                f"/api/v1/calls/{call.uuid}/recording",
                content=chunks(),
                headers=upload_headers(data),
            )
            declared = await agent.put(
                f"/api/v1/calls/{call.uuid}/recording",
                content=chunks(),
                headers=upload_headers(data, **{"X-Content-Length": str(len(data))}),
            )
            short = await agent.put(
                f"/api/v1/calls/{overlong.uuid}/recording",
                content=chunks(),
                headers=upload_headers(data, **{"X-Content-Length": str(len(data) - 1)}),
            )

            async def overlong_duplicate() -> AsyncIterator[bytes]:
                async for chunk in chunks():
                    yield chunk
                yield b"\x00" * 65536  # small enough for the server to read it all

            # A duplicate's body is drained unchecked by the service: still bounded.
            overflowing = await agent.put(
                f"/api/v1/calls/{call.uuid}/recording",
                content=overlong_duplicate(),
                headers=upload_headers(data, **{"X-Content-Length": str(len(data))}),
            )
        assert without.status_code == 411
        assert without.json()["error"]["field"] == "Content-Length"
        assert (declared.status_code, declared.json()["size"]) == (201, len(data))
        for refused in (short, overflowing):
            assert refused.status_code == 400
            assert refused.json()["error"]["field"] == "X-Content-Length"
        await assert_nothing_left(stack, kept={str(call.uuid)})


async def test_bad_uploads_are_refused_and_leave_nothing(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack)
        data = wav_bytes(100_000)
        good = upload_headers(data)
        path = f"/api/v1/calls/{call.uuid}/recording"
        cases: list[tuple[str, dict[str, str], bytes, int, str, str | None]] = [
            (path, {**good, "X-Content-SHA256": sha256(b"other")}, data, 400, "INVALID_ARGUMENT",
             "X-Content-SHA256"),
            (path, {**good, "Content-Type": "audio/mpeg"}, data, 415, "INVALID_ARGUMENT",
             "Content-Type"),
            (path, {"Content-Type": "audio/wav"}, data, 400, "INVALID_ARGUMENT",
             "X-Content-SHA256"),
            (path, {**good, "X-Content-SHA256": "abc"}, data, 400, "INVALID_ARGUMENT",
             "X-Content-SHA256"),
            (path, {**good, "Content-Digest": "sha-256=:AAAA:"}, data, 400, "INVALID_ARGUMENT",
             "Content-Digest"),
            (path, {"Content-Type": "audio/wav", "Content-Digest": "md5=:AAAA:"}, data, 400,
             "INVALID_ARGUMENT", "Content-Digest"),
            (path, {**good, "X-File-Name": "../etc/passwd"}, data, 400, "INVALID_ARGUMENT",
             "X-File-Name"),
            (path, {**good, "X-File-Name": "%FF.wav"}, data, 400, "INVALID_ARGUMENT",
             "X-File-Name"),
            (f"/api/v1/calls/{uuid.uuid4()}/recording", good, data, 409, "FAILED_PRECONDITION",
             "call_uuid"),
            ("/api/v1/calls/not-a-uuid/recording", good, data, 400, "INVALID_ARGUMENT",
             "call_uuid"),
        ]  # fmt: skip
        async with rest_server.client(AGENT_TOKEN) as agent:
            for target, headers, content, status, code, field in cases:
                answer = await agent.put(target, content=content, headers=headers)
                assert answer.status_code == status, (headers, answer.text)
                error = answer.json()["error"]
                assert (error["code"], error.get("field")) == (code, field), headers
        await assert_nothing_left(stack)
        assert await stack.query("SELECT * FROM jobs") == []


async def test_oversize_upload_is_refused_before_its_body(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await new_call(rest_server.stack)
        head = (
            f"PUT /api/v1/calls/{call.uuid}/recording HTTP/1.1\r\n"
            f"Host: test\r\nAuthorization: Bearer {AGENT_TOKEN}\r\n"
            f"Content-Type: audio/wav\r\nX-Content-SHA256: {'a' * 64}\r\n"
            f"Content-Length: {MAX_RECORDING_BYTES + 1}\r\nConnection: close\r\n\r\n"
        ).encode()
        # No body is sent: the answer must come anyway.
        answer = await raw_exchange(rest_server.port, head)
        assert answer is not None and answer.status == 413
        error = json.loads(answer.body)["error"]
        assert (error["code"], error["field"]) == ("RESOURCE_EXHAUSTED", "Content-Length")
        assert str(MAX_RECORDING_BYTES) in error["message"]
        rest_server.checker.error_body(json.loads(answer.body))


async def test_client_hanging_up_mid_upload_leaves_nothing(service_stack: ServiceStack) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await new_call(service_stack)
        data = wav_bytes(1_000_000)
        head = (
            f"PUT /api/v1/calls/{call.uuid}/recording HTTP/1.1\r\n"
            f"Host: test\r\nAuthorization: Bearer {AGENT_TOKEN}\r\n"
            f"Content-Type: audio/wav\r\nX-Content-SHA256: {sha256(data)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        # A grace period longer than this test: shutting down can only be quick if the
        # server noticed the hang-up and finished the upload's handling on its own.
        async with running_rest_server(service_stack, grace_period_s=3600) as server:
            await raw_exchange(server.port, head + data[: len(data) // 2], hang_up=True)
            await server.shutdown()
        aborted = service_stack.metrics.registry.get_sample_value(
            "cj_api_requests_total", {"protocol": "rest", "route": UPLOAD_ROUTE, "status": "499"}
        )
        assert aborted == 1
        await assert_nothing_left(service_stack)
        assert await service_stack.query("SELECT * FROM jobs") == []


# --- download ------------------------------------------------------------------------------


async def test_download_original_with_ranges_and_etag(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack)
        data = wav_bytes(150_000)
        await upload(rest_server, call, data)
        path = f"/api/v1/calls/{call.uuid}/recording"
        etag = f'"{sha256(data)}"'
        async with rest_server.client(READER_TOKEN) as reader:
            whole = await reader.get(path)
            head = await reader.head(path)
            first = await reader.get(path, headers={"Range": "bytes=0-9"})
            tail = await reader.get(path, headers={"Range": "bytes=-5"})
            rest = await reader.get(path, headers={"Range": "bytes=149990-"})
            beyond = await reader.get(path, headers={"Range": "bytes=150000-"})
            several = await reader.get(path, headers={"Range": "bytes=0-1,5-6"})
            other_unit = await reader.get(path, headers={"Range": "items=0-1"})
            cached = await reader.get(path, headers={"If-None-Match": etag})
            cached_weak = await reader.get(path, headers={"If-None-Match": f'W/{etag}, "x"'})
            stale = await reader.get(path, headers={"If-None-Match": '"other"'})
            if_range = await reader.get(path, headers={"Range": "bytes=0-1", "If-Range": etag})
            if_range_old = await reader.get(
                path, headers={"Range": "bytes=0-1", "If-Range": '"old"'}
            )
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["Content-Type"] == "audio/wav"
        assert whole.headers["Content-Length"] == str(len(data))
        assert whole.headers["ETag"] == etag
        assert whole.headers["Accept-Ranges"] == "bytes"
        assert whole.headers["Content-Disposition"] == f'attachment; filename="{call.uuid}.wav"'
        assert "X-Duration-Ms" not in whole.headers  # not known before encoding
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(data))
        assert head.headers["ETag"] == etag
        assert (first.status_code, first.content) == (206, data[:10])
        assert first.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
        assert first.headers["Content-Length"] == "10"
        assert (tail.status_code, tail.content) == (206, data[-5:])
        assert (rest.status_code, rest.content) == (206, data[149990:])
        assert beyond.status_code == 416
        assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
        assert beyond.json()["error"]["code"] == "OUT_OF_RANGE"
        for ignored in (several, other_unit, stale, if_range_old):
            assert (ignored.status_code, ignored.content) == (200, data)
        for not_modified in (cached, cached_weak):
            assert (not_modified.status_code, not_modified.content) == (304, b"")
            assert not_modified.headers["ETag"] == etag
        assert (if_range.status_code, if_range.content) == (206, data[:2])
        entries = await stack.db.run(lambda conn: audit_entries(conn, call.uuid, limit=100))
        assert len(entries) == 13
        results = sorted((e.actor, e.action, e.result) for e in entries)
        # Everything allowed but `beyond`, which sent nothing (its range was unsatisfiable).
        assert results == [("ops", "download", "allowed")] * 12 + [
            ("ops", "download", "out_of_range")
        ]
        sent = stack.metrics.registry.get_sample_value("cj_api_downloaded_bytes_total")
        # whole, several, other_unit, stale, if_range_old; then the ranges
        assert sent == 5 * len(data) + 10 + 5 + 10 + 2


async def test_download_stored_mp3(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack)
        await upload(rest_server, call, wav_bytes())
        mp3 = b"ID3" + os.urandom(40_000)
        key = f"2026/03/02/{call.uuid}.mp3"
        async with stack.storages.permanent.open_upload(key) as writer:
            await writer.write(mp3)
            await writer.commit()
        await stack.db.run(
            lambda conn: mark_stored(
                conn,
                call.uuid,
                storage="recordings",
                key=key,
                size=len(mp3),
                sha256=sha256(mp3),
                content_type="audio/mpeg",
                duration_ms=65_000,
                sample_rate=8000,
                channels=2,
            )
        )
        async with rest_server.client(READER_TOKEN) as reader:
            got = await reader.get(f"/api/v1/calls/{call.uuid}/recording")
            record = await reader.get(f"/api/v1/calls/{call.uuid}")
        assert got.status_code == 200 and got.content == mp3
        assert got.headers["Content-Type"] == "audio/mpeg"
        assert got.headers["Content-Disposition"] == f'attachment; filename="{call.uuid}.mp3"'
        assert got.headers["X-Duration-Ms"] == "65000"
        assert got.headers["ETag"] == f'"{sha256(mp3)}"'
        recording = record.json()["recording"]
        assert recording["status"] == "stored"
        assert (recording["content_type"], recording["size"]) == ("audio/mpeg", len(mp3))
        assert recording["sha256"] == sha256(mp3)
        assert recording["original_size"] == 200_000
        assert (recording["duration_ms"], recording["channels"]) == (65_000, 2)


async def test_refused_downloads_are_audited(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        private = await new_call(stack, private=True)
        purged = await new_call(stack)
        bare = await new_call(stack)
        for call in (private, purged):
            await upload(rest_server, call, wav_bytes(10_000))
        await stack.db.run(
            lambda conn: conn.execute(
                "UPDATE recordings SET status = 'purged' WHERE call_uuid = %s", (purged.uuid,)
            )
        )
        async with rest_server.client(READER_TOKEN) as reader:
            forbidden = await reader.get(f"/api/v1/calls/{private.uuid}/recording")
            forbidden_head = await reader.head(f"/api/v1/calls/{private.uuid}/recording")
            gone = await reader.get(f"/api/v1/calls/{purged.uuid}/recording")
            none = await reader.get(f"/api/v1/calls/{bare.uuid}/recording")
            unknown = await reader.get(f"/api/v1/calls/{uuid.uuid4()}/recording")
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "PERMISSION_DENIED"
        assert forbidden_head.status_code == 403 and forbidden_head.content == b""
        assert (gone.status_code, gone.json()["error"]["code"]) == (410, "GONE")
        assert (none.status_code, none.json()["error"]["code"]) == (404, "NOT_FOUND")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
        entries = await stack.db.run(lambda conn: audit_entries(conn, private.uuid))
        assert [(e.actor, e.result) for e in entries] == [("ops", "permission_denied")] * 2
        entries = await stack.db.run(lambda conn: audit_entries(conn, purged.uuid))
        assert [e.result for e in entries] == ["gone"]
