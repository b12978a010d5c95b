"""Every gRPC operation of cj_api over real sockets, with real PostgreSQL and storages."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from google.protobuf.timestamp_pb2 import Timestamp

from cj.codec import call_to_pb
from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, RpcError
from tests.factories import BASE_TIME, make_call
from tests.fixtures.api import ADMIN_TOKEN, AGENT_TOKEN, READER_TOKEN, RunningApi
from tests.rpc.rawh2 import RawGrpcClient

AUDIO = Path(__file__).resolve().parents[1] / "data" / "audio"
WAV = (AUDIO / "pcm16-8k-mono.wav").read_bytes()


def header(
    call_uuid: uuid.UUID | str, data: bytes = WAV, /, **overrides: object
) -> pb.UploadHeader:
    fields: dict[str, object] = {
        "call_uuid": str(call_uuid),
        "file_name": "rec.wav",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    fields.update(overrides)
    return pb.UploadHeader(**fields)  # type: ignore[arg-type]


def chunks(data: bytes, size: int = 16 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def ts(moment: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)  # type: ignore[arg-type]
    return stamp


async def expect_error(code: ErrorCode, awaitable: object, field: str | None = None) -> RpcError:
    with pytest.raises(RpcError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.code is code, info.value
    if field is not None:
        assert info.value.field == field, info.value
    return info.value


async def add(client: CallJournalClient, **overrides: object) -> uuid.UUID:
    call = make_call(**overrides)  # type: ignore[arg-type]
    await client.add_call(call_to_pb(call, include_raw=True))
    return call.uuid


async def test_add_call_is_an_idempotent_upsert(running_api: RunningApi) -> None:
    call = make_call(source="", raw={"from": "pbx"})
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            first = await agent.add_call(call_to_pb(call, include_raw=True))
            again = await agent.add_call(call_to_pb(call, include_raw=True))
            changed = call_to_pb(make_call(call_uuid=call.uuid, caller_name="Changed", source=""))
            updated = await agent.add_call(changed)
            record = await reader.get_call(str(call.uuid))
    assert first.outcome == pb.UPSERT_OUTCOME_INSERTED
    assert again.outcome == pb.UPSERT_OUTCOME_UNCHANGED
    assert updated.outcome == pb.UPSERT_OUTCOME_UPDATED
    assert record.call.caller_name == "Changed"
    assert record.call.source == "pbx-1"  # taken from the token when the client sends none
    assert record.call.started_at.ToDatetime().isoformat() == "2026-03-02T06:00:00"
    assert not record.HasField("recording")
    assert running_api.query("SELECT count(*) AS n FROM calls") == [{"n": 1}]


async def test_extensions_cross_grpc_and_are_searchable(running_api: RunningApi) -> None:
    call = make_call(caller="+4986517174960", caller_extension="dan", destination_extension="x1")
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            await agent.add_call(call_to_pb(call))
            record = await reader.get_call(str(call.uuid))
            page = await reader.search_by_phone(pb.SearchByPhoneRequest(phone="DAN"))
    assert (record.call.caller_extension, record.call.destination_extension) == ("dan", "x1")
    assert [r.call.uuid for r in page.calls] == [str(call.uuid)]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.ClearField("uuid"), "call.uuid"),
        (lambda c: setattr(c, "uuid", "not-a-uuid"), "call.uuid"),
        (lambda c: c.ClearField("started_at"), "call.started_at"),
        (lambda c: c.ended_at.FromSeconds(0), "call.ended_at"),
        (lambda c: setattr(c, "billsec", -1), "call.billsec"),
        (lambda c: setattr(c, "sip_code", 42), "call.sip_code"),
        (lambda c: setattr(c, "raw_json", "{not json"), "call.raw_json"),
        (lambda c: setattr(c, "raw_json", "[1]"), "call.raw_json"),
        (lambda c: setattr(c, "caller_name", "x" * 300), "call.caller_name"),
        (lambda c: setattr(c, "direction", 99), "call.direction"),
    ],
)
async def test_add_call_names_the_bad_field(
    running_api: RunningApi, mutate: object, field: str
) -> None:
    message = call_to_pb(make_call())
    mutate(message)  # type: ignore[operator]
    with trio.fail_after(30):
        async with running_api.client() as agent:
            await expect_error(ErrorCode.INVALID_ARGUMENT, agent.add_call(message), field)
    assert running_api.query("SELECT count(*) AS n FROM calls") == [{"n": 0}]


async def test_add_calls_streams_counts_and_rejections(running_api: RunningApi) -> None:
    existing = make_call()
    bad = call_to_pb(make_call())
    bad.uuid = "nope"
    with trio.fail_after(30):
        async with running_api.client() as agent:
            await agent.add_call(call_to_pb(existing))
            stream = [
                call_to_pb(make_call()),
                bad,
                call_to_pb(existing),
                call_to_pb(make_call(call_uuid=existing.uuid, billsec=1)),
                *[call_to_pb(make_call()) for _ in range(1200)],  # more than one batch
            ]
            reply = await agent.add_calls(stream)
    assert (reply.inserted, reply.updated, reply.unchanged, reply.rejected) == (1201, 1, 1, 1)
    assert [(r.index, r.uuid, r.field) for r in reply.rejections] == [(1, "nope", "call.uuid")]
    assert running_api.query("SELECT count(*) AS n FROM calls") == [{"n": 1202}]


async def test_add_calls_batches_are_written_in_stream_order(running_api: RunningApi) -> None:
    """The stream is read while the batch before is written: a call sent in the first
    batch and again, changed, in the third ends as sent last."""
    first = make_call(billsec=1)
    again = make_call(call_uuid=first.uuid, billsec=2)
    stream = [call_to_pb(first), *[call_to_pb(make_call()) for _ in range(1100)]]
    stream.insert(1050, call_to_pb(again))
    with trio.fail_after(30):
        async with running_api.client() as agent:
            reply = await agent.add_calls(stream)
    assert (reply.inserted, reply.updated, reply.rejected) == (1101, 1, 0)
    assert running_api.query("SELECT billsec FROM calls WHERE uuid = %s", (str(first.uuid),)) == [
        {"billsec": 2}
    ]


async def test_check_calls_reports_existence_and_recordings(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent:
            with_recording = await add(agent)
            plain = await add(agent)
            await agent.upload_recording(header(with_recording), chunks(WAV))
            missing = uuid.uuid4()
            reply = await agent.check_calls([str(missing), str(plain).upper(), str(with_recording)])
            await expect_error(
                ErrorCode.INVALID_ARGUMENT, agent.check_calls([str(plain), "x"]), "uuids[1]"
            )
            await expect_error(ErrorCode.INVALID_ARGUMENT, agent.check_calls([]), "uuids")
            await expect_error(
                ErrorCode.INVALID_ARGUMENT,
                agent.check_calls([str(uuid.uuid4()) for _ in range(1001)]),
                "uuids",
            )
    assert [(c.uuid, c.exists, c.recording_status) for c in reply.calls] == [
        (str(missing), False, pb.RECORDING_STATUS_NONE),
        (str(plain).upper(), True, pb.RECORDING_STATUS_NONE),
        (str(with_recording), True, pb.RECORDING_STATUS_UPLOADED),
    ]
    assert reply.calls[2].recording_sha256 == hashlib.sha256(WAV).hexdigest()


async def test_upload_stores_durably_queues_a_job_and_recognises_duplicates(
    running_api: RunningApi,
) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent:
            call_uuid = await add(agent)
            first = await agent.upload_recording(header(call_uuid), chunks(WAV))
            again = await agent.upload_recording(header(call_uuid), chunks(WAV))
            other = WAV[:-2] + b"\x01\x02"
            await expect_error(
                ErrorCode.ALREADY_EXISTS,
                agent.upload_recording(header(call_uuid, other), chunks(other)),
            )
    assert (first.duplicate, first.size, first.status) == (
        False,
        len(WAV),
        pb.RECORDING_STATUS_UPLOADED,
    )
    assert first.sha256 == hashlib.sha256(WAV).hexdigest()
    assert again.duplicate is True
    [stored] = running_api.stored_files("temp")
    assert stored.read_bytes() == WAV
    rows = running_api.query("SELECT status, original_name, original_size FROM recordings")
    assert rows == [{"status": "uploaded", "original_name": "rec.wav", "original_size": len(WAV)}]
    jobs = running_api.query("SELECT body FROM jobs")
    assert [json.loads(bytes(j["body"]))["call_uuid"] for j in jobs] == [str(call_uuid)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "data", "code", "field"),
    [
        ({"sha256": "0" * 64}, WAV, ErrorCode.INVALID_ARGUMENT, "sha256"),
        ({"sha256": "xyz"}, WAV, ErrorCode.INVALID_ARGUMENT, "sha256"),
        ({"size": len(WAV) + 10}, WAV, ErrorCode.INVALID_ARGUMENT, "size"),  # short upload
        ({"size": 100}, WAV, ErrorCode.INVALID_ARGUMENT, "size"),  # more than declared
        ({"size": -1}, WAV, ErrorCode.INVALID_ARGUMENT, "size"),
        ({"file_name": "../etc/passwd"}, WAV, ErrorCode.INVALID_ARGUMENT, "file_name"),
        ({"file_name": ""}, WAV, ErrorCode.INVALID_ARGUMENT, "file_name"),
        ({"call_uuid": "zzz"}, WAV, ErrorCode.INVALID_ARGUMENT, "header.call_uuid"),
        ({"size": 10**12}, WAV, ErrorCode.RESOURCE_EXHAUSTED, "size"),
    ],
)
async def test_bad_uploads_leave_nothing_behind(
    running_api: RunningApi, overrides: dict[str, object], data: bytes, code: ErrorCode, field: str
) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent:
            call_uuid = await add(agent)
            await expect_error(
                code,
                agent.upload_recording(header(call_uuid, data, **overrides), chunks(data)),
                field,
            )
    assert running_api.stored_files("temp") == []
    assert running_api.query("SELECT count(*) AS n FROM recordings") == [{"n": 0}]
    assert running_api.query("SELECT count(*) AS n FROM jobs") == [{"n": 0}]


async def test_upload_for_an_unknown_call_is_a_failed_precondition(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent:
            await expect_error(
                ErrorCode.FAILED_PRECONDITION,
                agent.upload_recording(header(uuid.uuid4()), chunks(WAV)),
                "call_uuid",
            )
    assert running_api.stored_files("temp") == []


async def test_upload_without_header_is_refused(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent:
            messages = [pb.UploadRecordingRequest(chunk=b"abc")]
            await expect_error(
                ErrorCode.INVALID_ARGUMENT,
                agent.channel.stream_unary(
                    "/calljournal.v1.CallJournal/UploadRecording",
                    messages,
                    pb.UploadRecordingResponse,
                ),
                "header",
            )


async def test_client_disconnecting_mid_upload_leaves_nothing(running_api: RunningApi) -> None:
    sent_half = trio.Event()

    async def half_then_hang() -> AsyncIterator[bytes]:
        parts = chunks(WAV)
        for part in parts[: len(parts) // 2]:
            yield part
        sent_half.set()
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with running_api.client() as agent:
            call_uuid = await add(agent)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(agent.upload_recording, header(call_uuid), half_then_hang())
                await sent_half.wait()
                nursery.cancel_scope.cancel()  # the client vanishes mid-upload
        # The server counts the aborted call once it has cleaned up after it.
        url = f"{running_api.endpoints.rest_url}/metrics"
        async with httpx.AsyncClient() as http:
            while 'route="UploadRecording",status="OK"' not in (text := (await http.get(url)).text):
                if 'route="UploadRecording"' in text:
                    break
    assert running_api.stored_files("temp") == []
    assert running_api.query("SELECT count(*) AS n FROM recordings") == [{"n": 0}]


async def test_search_by_phone_and_interval_with_paging_and_filters(
    running_api: RunningApi,
) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            target = []
            for minute in range(5):
                target.append(
                    await add(
                        agent,
                        caller="+7 (926) 000-11-22",
                        started_at=BASE_TIME + timedelta(minutes=minute),
                    )
                )
            await add(agent, caller="1004", destination="555")
            await agent.upload_recording(header(target[0]), chunks(WAV))
            first = await reader.search_by_phone(
                pb.SearchByPhoneRequest(phone="89260001122", limit=3)
            )
            second = await reader.search_by_phone(
                pb.SearchByPhoneRequest(
                    phone="89260001122", limit=3, page_token=first.next_page_token
                )
            )
            window = await reader.search_by_interval(
                pb.SearchByIntervalRequest(
                    start_time=ts(BASE_TIME + timedelta(minutes=1)),
                    end_time=ts(BASE_TIME + timedelta(minutes=3)),
                )
            )
            with_recording = await reader.search_by_phone(
                pb.SearchByPhoneRequest(phone="9260001122", recording=pb.RECORDING_FILTER_WITH)
            )
            outbound = await reader.search_by_phone(
                pb.SearchByPhoneRequest(phone="9260001122", direction=pb.DIRECTION_OUTBOUND)
            )
    found = [c.call.uuid for c in first.calls] + [c.call.uuid for c in second.calls]
    assert found == [str(u) for u in reversed(target)]
    assert second.next_page_token == ""
    assert [c.call.uuid for c in window.calls] == [str(target[2]), str(target[1])]
    assert [c.call.uuid for c in with_recording.calls] == [str(target[0])]
    assert with_recording.calls[0].recording.status == pb.RECORDING_STATUS_UPLOADED
    assert outbound.calls == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SearchByPhoneRequest(), "phone"),
        # "abc" is a valid query now (an extension or SIP login); this is neither.
        (pb.SearchByPhoneRequest(phone="a b c"), "phone"),
        (pb.SearchByPhoneRequest(phone="1", limit=1001), "limit"),
        (pb.SearchByPhoneRequest(phone="1", limit=-5), "limit"),
        (pb.SearchByPhoneRequest(phone="1", page_token="garbage"), "page_token"),
        (pb.SearchByPhoneRequest(phone="1", direction=42), "direction"),
        (pb.SearchByIntervalRequest(), "start_time"),
        (pb.SearchByIntervalRequest(start_time=ts(BASE_TIME)), "end_time"),
        (
            pb.SearchByIntervalRequest(start_time=ts(BASE_TIME), end_time=ts(BASE_TIME)),
            "end_time",
        ),
    ],
)
async def test_bad_searches_name_the_field(
    running_api: RunningApi, request_: object, field: str
) -> None:
    with trio.fail_after(30):
        async with running_api.client(READER_TOKEN) as reader:
            if isinstance(request_, pb.SearchByPhoneRequest):
                call = reader.search_by_phone(request_)
            else:
                call = reader.search_by_interval(request_)  # type: ignore[arg-type]
            await expect_error(ErrorCode.INVALID_ARGUMENT, call, field)


async def test_get_call_errors(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client(READER_TOKEN) as reader:
            await expect_error(ErrorCode.NOT_FOUND, reader.get_call(str(uuid.uuid4())))
            await expect_error(ErrorCode.INVALID_ARGUMENT, reader.get_call("1234"), "uuid")


async def download(
    client: CallJournalClient, call_uuid: uuid.UUID, offset: int = 0
) -> tuple[pb.DownloadHeader, bytes]:
    async with client.download_recording(str(call_uuid), offset=offset) as parts:
        first = await anext(parts)
        body = b"".join([part.chunk async for part in parts])
    return first.header, body


async def test_download_sends_the_wav_until_encoded_and_audits(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            call_uuid = await add(agent)
            await agent.upload_recording(header(call_uuid), chunks(WAV))
            head, body = await download(reader, call_uuid)
            _, tail = await download(reader, call_uuid, offset=len(WAV) - 100)
            await expect_error(ErrorCode.OUT_OF_RANGE, download(reader, call_uuid, len(WAV) + 1))
            none = await add(agent)
            await expect_error(ErrorCode.NOT_FOUND, download(reader, none))
            await expect_error(ErrorCode.NOT_FOUND, download(reader, uuid.uuid4()))
    assert head.content_type == "audio/wav" and head.size == len(WAV)
    assert head.sha256 == hashlib.sha256(WAV).hexdigest() and head.file_name == f"{call_uuid}.wav"
    assert body == WAV and tail == WAV[-100:]
    audit = running_api.query("SELECT actor, action, result FROM audit_log ORDER BY id")
    # The third one sent nothing (its offset was out of range): audited as such.
    assert audit[:2] == [{"actor": "ops", "action": "download", "result": "allowed"}] * 2
    assert [a["result"] for a in audit[2:]] == ["out_of_range", "not_found", "not_found"]


async def add_stored_mp3(api: RunningApi, agent: CallJournalClient, mp3: bytes) -> uuid.UUID:
    """A call whose recording was uploaded, then stored as `mp3` (as the encoder would)."""
    call_uuid = await add(agent)
    await agent.upload_recording(header(call_uuid), chunks(WAV))
    key = f"2026/03/02/{call_uuid}.mp3"
    target = api.root / "recordings" / key
    target.parent.mkdir(parents=True)
    target.write_bytes(mp3)
    api.query(
        "UPDATE recordings SET status = 'stored', storage = 'recordings', key = %s,"
        " size = %s, sha256 = %s, content_type = 'audio/mpeg', duration_ms = 8000",
        (key, len(mp3), hashlib.sha256(mp3).hexdigest()),
    )
    return call_uuid


async def test_stored_recording_downloads_as_mp3(running_api: RunningApi) -> None:
    mp3 = b"ID3fake-mp3-bytes" * 100
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            call_uuid = await add_stored_mp3(running_api, agent, mp3)
            head, body = await download(reader, call_uuid)
            running_api.query("UPDATE recordings SET status = 'purged'")
            # gRPC status NOT_FOUND, refined by the cj-error-code trailer.
            error = await expect_error(ErrorCode.GONE, download(reader, call_uuid))
    assert head.content_type == "audio/mpeg" and head.duration_ms == 8000 and body == mp3
    assert "purged" in error.message


def task_names() -> list[str]:
    """The names of every task running in this Trio run."""
    names, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        names.append(task.name)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return names


async def test_a_reader_vanishing_mid_download_ends_the_call_quietly(
    running_api: RunningApi, log_events: list[dict[str, Any]]
) -> None:
    # The reader's TCP connection drops while the MP3 streams: no error (no traceback,
    # no "unexpected") is logged for it, and the API serves the next download.
    mp3 = bytes(range(256)) * 4096  # 1 MiB: more than HTTP/2's initial window
    auth = [("authorization", f"Bearer {READER_TOKEN}")]
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            call_uuid = await add_stored_mp3(running_api, agent, mp3)
            request = pb.DownloadRecordingRequest(call_uuid=str(call_uuid))
            port = running_api.endpoints.grpc_port
            async with RawGrpcClient(port) as raw:
                seen = await raw.start_and_drop(
                    "/calljournal.v1.CallJournal/DownloadRecording",
                    request,
                    auth,
                    after_bytes=32768,
                )
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            calls_left = [name for name in task_names() if name.endswith("._run_rpc")]
            _, body = await download(reader, call_uuid)
    assert seen >= 32768 and body == mp3
    assert calls_left == []  # the vanished reader holds no download (nor its slot)
    errors = [e for e in log_events if e["log_level"] in ("error", "critical", "warning")]
    assert errors == []


async def test_private_recordings_are_never_downloadable(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(ADMIN_TOKEN) as admin:
            call_uuid = await add(agent, private=True)
            await agent.upload_recording(header(call_uuid), chunks(WAV))
            error = await expect_error(ErrorCode.PERMISSION_DENIED, download(admin, call_uuid))
            record = await admin.get_call(str(call_uuid))  # the metadata stays visible
    assert "private" in error.message
    assert record.call.private is True
    audit = running_api.query("SELECT actor, result, call_uuid FROM audit_log")
    assert audit == [{"actor": "admin", "result": "permission_denied", "call_uuid": call_uuid}]


AGENT_METHODS = ("AddCall", "AddCalls", "CheckCalls", "UploadRecording")
READER_METHODS = ("SearchByPhone", "SearchByInterval", "GetCall", "DownloadRecording")


async def call_method(client: CallJournalClient, method: str) -> None:
    some = str(uuid.uuid4())
    if method == "AddCall":
        await client.add_call(call_to_pb(make_call()))
    elif method == "AddCalls":
        await client.add_calls([call_to_pb(make_call())])
    elif method == "CheckCalls":
        await client.check_calls([some])
    elif method == "UploadRecording":
        await client.upload_recording(header(some), chunks(WAV))
    elif method == "SearchByPhone":
        await client.search_by_phone(pb.SearchByPhoneRequest(phone="1"))
    elif method == "SearchByInterval":
        await client.search_by_interval(
            pb.SearchByIntervalRequest(
                start_time=ts(BASE_TIME), end_time=ts(BASE_TIME + timedelta(1))
            )
        )
    elif method == "GetCall":
        await client.get_call(some)
    else:
        await download(client, uuid.UUID(some))


@pytest.mark.parametrize("method", AGENT_METHODS + READER_METHODS)
async def test_auth_is_enforced_on_every_method(running_api: RunningApi, method: str) -> None:
    wrong_role = READER_TOKEN if method in AGENT_METHODS else AGENT_TOKEN
    with trio.fail_after(30):
        for token, code in (
            (None, ErrorCode.UNAUTHENTICATED),
            ("not-a-valid-token-at-all", ErrorCode.UNAUTHENTICATED),
            (wrong_role, ErrorCode.PERMISSION_DENIED),
        ):
            async with running_api.client(token) as client:
                await expect_error(code, call_method(client, method))
    assert running_api.query("SELECT count(*) AS n FROM calls") == [{"n": 0}]


async def test_grpc_calls_are_counted_by_method_and_status(running_api: RunningApi) -> None:
    with trio.fail_after(30):
        async with running_api.client() as agent, running_api.client(READER_TOKEN) as reader:
            call_uuid = await add(agent)
            await agent.upload_recording(header(call_uuid), chunks(WAV))
            await download(reader, call_uuid)
            await expect_error(ErrorCode.NOT_FOUND, reader.get_call(str(uuid.uuid4())))
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{running_api.endpoints.rest_url}/metrics")).text
    for route, status in (
        ("AddCall", "OK"),
        ("UploadRecording", "OK"),
        ("DownloadRecording", "OK"),
        ("GetCall", "NOT_FOUND"),
    ):
        line = f'cj_api_requests_total{{protocol="grpc",route="{route}",status="{status}"}} 1.0'
        assert line in text, line
