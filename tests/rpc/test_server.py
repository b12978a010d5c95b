"""The gRPC server machinery, driven through our own client over real sockets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import purerpc
import pytest
import trio
import trio.testing

from cj.errors import ErrorCode
from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb
from cj.rpc import (
    CallJournalClient,
    GrpcServer,
    RpcError,
    RpcUnavailable,
    file_chunks,
    open_channel,
)

from .conftest import (
    AGENT_TOKEN,
    BOTH_TOKEN,
    READER_TOKEN,
    make_authenticator,
    method,
    running_server,
)
from .rawh2 import RawGrpcClient
from .servicer import SECRET_DETAIL, JournalServicer


async def _expect_error(call: Any, code: ErrorCode) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code is code, caught.value
    return caught.value


# --- the four cardinalities ---------------------------------------------------------------


async def test_unary_call() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            reply = await CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5)
    assert reply.outcome == pb.UPSERT_OUTCOME_INSERTED


async def test_client_stream_counts_every_message() -> None:
    calls = [pb.Call(uuid="a"), pb.Call(uuid=""), pb.Call(uuid="b")]
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            reply = await CallJournalClient(ch).add_calls(calls, timeout_s=5)
    assert (reply.inserted, reply.rejected) == (2, 1)
    assert reply.rejections[0].index == 1
    assert reply.rejections[0].field == "uuid"


async def test_upload_streams_a_file_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1200  # 300 KiB: several chunks
    path = tmp_path / "call.wav"
    path.write_bytes(data)
    header = pb.UploadHeader(
        call_uuid="c-1",
        file_name="call.wav",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            reply = await CallJournalClient(ch).upload_recording(
                header, file_chunks(path), timeout_s=5
            )
    assert (reply.size, reply.sha256) == (len(data), header.sha256)
    assert srv.servicer.received_chunks == 5  # ceil(300 KiB / 64 KiB)


async def test_server_stream_download() -> None:
    with trio.fail_after(10):
        async with (
            running_server() as srv,
            open_channel(srv.address, token=READER_TOKEN) as ch,
            CallJournalClient(ch).download_recording("c-1", timeout_s=5) as parts,
        ):
            messages = [message async for message in parts]
    header = messages[0].header
    body = b"".join(m.chunk for m in messages[1:])
    assert header.content_type == "audio/mpeg"
    assert len(body) == header.size == 256 * 1024
    assert hashlib.sha256(body).hexdigest() == header.sha256


async def test_server_stream_resumes_at_an_offset() -> None:
    with trio.fail_after(10):
        async with (
            running_server() as srv,
            open_channel(srv.address, token=READER_TOKEN) as ch,
            CallJournalClient(ch).download_recording("c-1", offset=200_000, timeout_s=5) as parts,
        ):
            messages = [message async for message in parts]
    assert messages[0].header.offset == 200_000
    assert sum(len(m.chunk) for m in messages[1:]) == 256 * 1024 - 200_000


async def test_many_concurrent_calls_on_one_connection() -> None:
    results: list[int] = []
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            journal = CallJournalClient(ch)

            async def one(i: int) -> None:
                reply = await journal.check_calls([f"u-{i}", "x"], timeout_s=5)
                results.append(len(reply.calls))

            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, i)
    assert results == [2] * 50


# --- what the handler sees ----------------------------------------------------------------


async def test_handler_sees_principal_and_client_deadline() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            record = await CallJournalClient(ch).get_call("c-1", timeout_s=7.5)
    assert record.call.source == "ops"  # the reader token's name
    deadline = json.loads(record.call.raw_json)["deadline_s"]
    assert 6.5 < deadline <= 7.5


async def test_default_deadline_applies_when_the_client_sends_none() -> None:
    with trio.fail_after(10):
        async with (
            running_server(default_deadline_s=3) as srv,
            open_channel(srv.address, token=READER_TOKEN) as ch,
        ):
            record = await CallJournalClient(ch).get_call("c-1")  # no timeout at all
    # (The test's own fail_after(10) bounds the handler too, since both run in one process.)
    assert 2 < json.loads(record.call.raw_json)["deadline_s"] <= 3


async def test_handler_declaring_request_receives_metadata() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            reply = await ch.unary_unary(
                method("SearchByInterval"),
                pb.SearchByIntervalRequest(),
                pb.SearchResponse,
                timeout_s=5,
                metadata=[("x-echo", "hello")],
            )
    assert reply.next_page_token == "hello"


async def test_without_authenticator_calls_are_anonymous() -> None:
    with trio.fail_after(10):
        async with running_server(authenticator=None) as srv, open_channel(srv.address) as ch:
            record = await CallJournalClient(ch).get_call("c-1", timeout_s=5)
    assert record.call.source == "anonymous"


# --- errors -------------------------------------------------------------------------------


async def test_service_error_becomes_its_status_with_the_field() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="invalid"), timeout_s=5),
                ErrorCode.INVALID_ARGUMENT,
            )
    assert error.message == "call.started_at: is required"
    assert error.field == "call.started_at"
    assert not error.retryable


async def test_gone_survives_the_trip_for_our_client() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).get_call("gone", timeout_s=5), ErrorCode.GONE
            )
    assert error.message == "the recording was purged"


async def test_unexpected_exception_is_internal_with_a_generic_message_and_a_logged_traceback(
    log_events: list[dict[str, Any]],
) -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="boom"), timeout_s=5),
                ErrorCode.INTERNAL,
            )
    assert SECRET_DETAIL not in str(error)
    assert error.message.startswith("internal error (request id ")
    request_id = error.message.removeprefix("internal error (request id ").rstrip(")")
    failures = [e for e in log_events if e["log_level"] == "error"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["request_id"] == request_id
    assert failure["rpc"] == method("AddCall")
    assert "Traceback" in failure["exception"]
    assert f"RuntimeError: {SECRET_DETAIL}" in failure["exception"]


async def test_explicit_internal_error_is_logged_too(log_events: list[dict[str, Any]]) -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="internal"), timeout_s=5),
                ErrorCode.INTERNAL,
            )
    assert error.message == "internal error"
    assert any(e["log_level"] == "error" for e in log_events)


async def test_service_error_raised_in_a_child_task_keeps_its_code() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="group"), timeout_s=5),
                ErrorCode.ALREADY_EXISTS,
            )
    assert error.message == "from a child task"


async def test_purerpc_rpc_failed_error_passes_through() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="purerpc"), timeout_s=5),
                ErrorCode.ABORTED,
            )
    assert error.message == "aborted through purerpc"
    assert error.retryable


async def test_handler_returning_the_wrong_type_is_internal(
    log_events: list[dict[str, Any]],
) -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            await _expect_error(
                CallJournalClient(ch).add_call(pb.Call(uuid="wrong-type"), timeout_s=5),
                ErrorCode.INTERNAL,
            )
    assert any("expected AddCallResponse" in e.get("exception", "") for e in log_events)


async def test_unknown_method_is_unimplemented() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            error = await _expect_error(
                ch.unary_unary(method("Nope"), pb.GetCallRequest(), pb.CallRecord, timeout_s=5),
                ErrorCode.UNIMPLEMENTED,
            )
    assert "Nope" in error.message


async def test_server_stream_error_before_the_first_message() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            with pytest.raises(RpcError) as caught:
                async with CallJournalClient(ch).download_recording(
                    "private", timeout_s=5
                ) as parts:
                    async for _ in parts:
                        pytest.fail("no message expected")
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


async def test_server_stream_error_midway_after_some_messages() -> None:
    received = []
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            with pytest.raises(RpcUnavailable, match="storage went away"):
                async with CallJournalClient(ch).download_recording(
                    "fail-midway", timeout_s=5
                ) as parts:
                    async for message in parts:
                        received.append(message.WhichOneof("part"))
    assert received == ["header", "chunk"]


async def test_malformed_grpc_timeout_fails_only_that_call() -> None:
    auth = [("authorization", f"Bearer {AGENT_TOKEN}")]
    request = pb.AddCallRequest(call=pb.Call(uuid="c-1"))
    with trio.fail_after(10):
        async with running_server() as srv, RawGrpcClient(srv.port) as raw:
            bad = await raw.call(method("AddCall"), request, [*auth, ("grpc-timeout", "soon")])
            good = await raw.call(method("AddCall"), request, [*auth, ("grpc-timeout", "5S")])
    assert bad["grpc-status"] == "3"
    assert "grpc-timeout" in bad["grpc-message"]
    assert bad["cj-error-field"] == "grpc-timeout"
    assert good["grpc-status"] == "0"


async def test_undecodable_request_is_invalid_argument() -> None:
    auth = [("authorization", f"Bearer {AGENT_TOKEN}")]
    garbage = b"\xff\xff\xff\xff"  # not a valid protobuf encoding of anything
    with trio.fail_after(10):
        async with running_server() as srv, RawGrpcClient(srv.port) as raw:
            reply = await raw.call(method("CheckCalls"), garbage, auth)
    assert reply["grpc-status"] == "3"
    assert "CheckCallsRequest" in reply["grpc-message"].replace("%20", " ")


# --- deadlines and cancellation -------------------------------------------------------------


async def test_server_enforces_grpc_timeout_without_help_from_the_client() -> None:
    # The raw client has no deadline of its own: only the server can end this call.
    with trio.fail_after(10):
        async with running_server() as srv, RawGrpcClient(srv.port) as raw:
            reply = await raw.call(
                method("AddCall"),
                pb.AddCallRequest(call=pb.Call(uuid="hang")),
                [("authorization", f"Bearer {AGENT_TOKEN}"), ("grpc-timeout", "200m")],
            )
            await srv.servicer.cancelled.wait()
    assert reply["grpc-status"] == "4"  # DEADLINE_EXCEEDED


async def test_client_deadline_raises_deadline_exceeded() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            start = trio.current_time()
            error = await _expect_error(
                ch.unary_unary(
                    method("SearchByPhone"),
                    pb.SearchByPhoneRequest(phone="1"),
                    pb.SearchResponse,
                    timeout_s=0.2,
                ),
                ErrorCode.DEADLINE_EXCEEDED,
            )
            await srv.servicer.cancelled.wait()  # the server stopped working on it too
    assert trio.current_time() - start < 5
    assert error.retryable


async def test_cancelling_a_call_cancels_the_handler() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            journal = CallJournalClient(ch)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: journal.get_call("hang", timeout_s=60))
                await srv.servicer.entered.wait()
                nursery.cancel_scope.cancel()
            # Not the deadline (60 s): the client's RST_STREAM cancelled it.
            await srv.servicer.cancelled.wait()
            assert (await journal.get_call("after", timeout_s=5)).call.uuid == "after"


async def test_leaving_a_server_stream_early_cancels_the_handler() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            journal = CallJournalClient(ch)
            count = 0
            async with journal.download_recording("endless", timeout_s=60) as parts:
                async for _ in parts:
                    count += 1
                    if count == 3:
                        break
            await srv.servicer.cancelled.wait()
            # The connection is still fine for other calls.
            assert (await journal.get_call("after", timeout_s=5)).call.uuid == "after"


async def test_a_client_vanishing_mid_download_is_not_an_error_of_ours(
    log_events: list[dict[str, Any]],
) -> None:
    # The TCP connection drops while the server streams (no RST_STREAM): the handler
    # ends, nothing is logged as an unexpected error, and the server serves on.
    auth = [("authorization", f"Bearer {READER_TOKEN}")]
    request = pb.DownloadRecordingRequest(call_uuid="endless")
    with trio.fail_after(10):
        async with running_server() as srv:
            async with RawGrpcClient(srv.port) as raw:
                seen = await raw.start_and_drop(
                    method("DownloadRecording"), request, auth, after_bytes=32768
                )
            await srv.servicer.cancelled.wait()
            async with open_channel(srv.address, token=READER_TOKEN) as ch:
                assert (await CallJournalClient(ch).get_call("after", timeout_s=5)).call.uuid
    assert seen >= 32768
    assert [e for e in log_events if e["log_level"] == "error"] == []


async def test_early_rejection_of_an_upload_stops_the_sender_and_keeps_the_connection() -> None:
    sent = 0

    async def endless_chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 10_000:  # 640 MiB if nothing stopped it
            sent += 1
            yield b"\0" * 65536

    header = pb.UploadHeader(call_uuid="reject-early", file_name="x.wav", size=1, sha256="0" * 64)
    with trio.fail_after(20):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            journal = CallJournalClient(ch)
            for _ in range(3):  # the dropped data must not stall the connection's window
                await _expect_error(
                    journal.upload_recording(header, endless_chunks(), timeout_s=10),
                    ErrorCode.FAILED_PRECONDITION,
                )
            assert (await journal.add_call(pb.Call(uuid="c-1"), timeout_s=5)).outcome
    assert sent < 10_000


async def test_error_raised_by_the_request_iterator_propagates_unchanged() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:

            async def failing_chunks() -> AsyncIterator[bytes]:
                yield b"first"
                # Fail only once the handler runs: a reset that arrives before the
                # server dispatched the call would leave no handler to cancel.
                await srv.servicer.entered.wait()
                raise OSError("disk read failed")

            header = pb.UploadHeader(call_uuid="hang", file_name="x.wav", size=1, sha256="0" * 64)
            with pytest.raises(OSError, match="disk read failed"):
                await CallJournalClient(ch).upload_recording(header, failing_chunks(), timeout_s=30)
            await srv.servicer.cancelled.wait()


# --- authentication and roles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "metadata", "code", "text"),
    [
        (None, [], ErrorCode.UNAUTHENTICATED, "missing credentials"),
        (None, [("authorization", f"Basic {AGENT_TOKEN}")], ErrorCode.UNAUTHENTICATED, "malformed"),
        ("wrong-token-0123456789", [], ErrorCode.UNAUTHENTICATED, "invalid token"),
        (READER_TOKEN, [], ErrorCode.PERMISSION_DENIED, "'agent' role"),
    ],
)
async def test_auth_failures_and_the_handler_never_runs(
    token: str | None, metadata: list[tuple[str, str]], code: ErrorCode, text: str
) -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=token) as ch:
            # `hang` would never answer: an answer proves the handler did not run.
            error = await _expect_error(
                ch.unary_unary(
                    method("AddCall"),
                    pb.AddCallRequest(call=pb.Call(uuid="hang")),
                    pb.AddCallResponse,
                    timeout_s=5,
                    metadata=metadata,
                ),
                code,
            )
    assert text in error.message
    assert AGENT_TOKEN not in error.message
    assert not srv.servicer.entered.is_set()


async def test_wrong_role_is_refused_before_any_upload_chunk_is_read() -> None:
    header = pb.UploadHeader(call_uuid="c-1", file_name="x.wav", size=3, sha256="0" * 64)
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=READER_TOKEN) as ch:
            await _expect_error(
                CallJournalClient(ch).upload_recording(header, [b"abc"], timeout_s=5),
                ErrorCode.PERMISSION_DENIED,
            )
    assert srv.servicer.received_chunks == 0


async def test_a_token_with_both_roles_may_do_both() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=BOTH_TOKEN) as ch:
            journal = CallJournalClient(ch)
            await journal.add_call(pb.Call(uuid="c-1"), timeout_s=5)
            assert (await journal.get_call("c-1", timeout_s=5)).call.source == "admin"


class _Unguarded(calljournal_grpc.CallJournalServicer):
    async def GetCall(self, input_message: pb.GetCallRequest) -> pb.CallRecord:
        return pb.CallRecord()


def test_server_refuses_methods_without_an_access_policy() -> None:
    with pytest.raises(ValueError, match="without an access policy") as caught:
        GrpcServer([_Unguarded().service], authenticator=make_authenticator())
    assert str(caught.value).endswith(": /calljournal.v1.CallJournal/GetCall")  # only that one
    GrpcServer([_Unguarded().service])  # without authentication there is no policy to check


async def test_methods_a_servicer_leaves_out_are_unimplemented() -> None:
    server = GrpcServer([_Unguarded().service])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with open_channel(f"127.0.0.1:{port}", token=AGENT_TOKEN) as ch:
                error = await _expect_error(
                    CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5),
                    ErrorCode.UNIMPLEMENTED,
                )
            nursery.cancel_scope.cancel()
    assert error.message == "method /calljournal.v1.CallJournal/AddCall is not implemented"


def test_server_refuses_the_same_service_twice() -> None:
    service = JournalServicer().service
    with pytest.raises(ValueError, match="given twice"):
        GrpcServer([service, service])


# --- listener and shutdown ------------------------------------------------------------------


async def test_listener_binds_the_host_only_and_closes_on_cancel() -> None:
    with trio.fail_after(10):
        async with running_server() as srv:
            port = srv.port
            assert srv.server.addresses == [("127.0.0.1", port)]
            # Another loopback address of this machine: refused, we did not bind it.
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.2", port)
            await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_port_in_use_is_an_error_not_shared() -> None:
    with trio.fail_after(10):
        async with running_server() as srv:
            with pytest.raises(OSError):
                await GrpcServer([JournalServicer().service]).serve("127.0.0.1", srv.port)


async def test_graceful_shutdown_finishes_in_flight_calls_and_refuses_new_ones() -> None:
    servicer = JournalServicer()
    server = GrpcServer([servicer.service], authenticator=make_authenticator(), grace_period_s=30)
    results: dict[str, Any] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with open_channel(f"127.0.0.1:{port}", token=AGENT_TOKEN) as ch:
                journal = CallJournalClient(ch)

                done = trio.Event()

                async def in_flight() -> None:
                    reply = await journal.add_call(pb.Call(uuid="hang-until-released"), timeout_s=9)
                    results["in_flight"] = reply.outcome
                    done.set()

                nursery.start_soon(in_flight)
                await servicer.entered.wait()
                server.shutdown()
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(OSError):  # the listener is closed
                    await trio.open_tcp_stream("127.0.0.1", port)
                # A new call on the open connection is refused with a retryable error.
                with pytest.raises(RpcUnavailable, match="shutting down"):
                    await journal.add_call(pb.Call(uuid="late"), timeout_s=5)
                assert server.in_flight == 1
                servicer.release.set()
                await done.wait()
        # The nursery ends because serve() returned by itself after the in-flight call.
    assert results["in_flight"] == pb.UPSERT_OUTCOME_INSERTED


async def test_calls_still_running_after_the_grace_period_get_unavailable() -> None:
    servicer = JournalServicer()
    server = GrpcServer([servicer.service], authenticator=make_authenticator(), grace_period_s=0.2)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with open_channel(f"127.0.0.1:{port}", token=AGENT_TOKEN) as ch:

                async def shut_down_when_busy() -> None:
                    await servicer.entered.wait()
                    server.shutdown()

                nursery.start_soon(shut_down_when_busy)
                with pytest.raises(RpcUnavailable, match="shutting down"):
                    await CallJournalClient(ch).add_call(pb.Call(uuid="hang"), timeout_s=9)
    assert servicer.cancelled.is_set()


async def test_serve_grpc_shutdown_trigger() -> None:
    from cj.rpc import serve_grpc

    stop = trio.Event()
    servicer = JournalServicer()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_grpc(
                    [servicer.service],
                    host="127.0.0.1",
                    port=0,
                    grace_period_s=5,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            async with open_channel(f"127.0.0.1:{port}") as ch:
                await CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5)
            stop.set()  # the nursery ends only if serve_grpc returns by itself
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_killed_server_ends_pending_and_later_calls_with_unavailable() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            servicer = JournalServicer()
            server_scope = trio.CancelScope()

            async def serve(task_status: trio.TaskStatus[int]) -> None:
                with server_scope:
                    await GrpcServer([servicer.service]).serve(
                        "127.0.0.1", 0, task_status=task_status
                    )

            port = await outer.start(serve)
            async with open_channel(f"127.0.0.1:{port}") as ch:
                journal = CallJournalClient(ch)

                async def kill_when_busy() -> None:
                    await servicer.entered.wait()
                    server_scope.cancel()

                outer.start_soon(kill_when_busy)
                with pytest.raises(RpcUnavailable):
                    await journal.get_call("hang", timeout_s=9)
                assert ch.closed
                with pytest.raises(RpcUnavailable):
                    await journal.get_call("after", timeout_s=5)


async def test_bidirectional_streaming_machinery() -> None:
    # The contract has no bidi method; the machinery supports it, so check it too.
    async def chat(messages: AsyncIterator[pb.GetCallRequest]) -> AsyncIterator[pb.CallRecord]:
        async for message in messages:
            yield pb.CallRecord(call=pb.Call(uuid=message.uuid.upper()))

    service = purerpc.Service("test.Echo")
    service.add_method(
        "Chat",
        chat,
        purerpc.RPCSignature(purerpc.Cardinality.STREAM_STREAM, pb.GetCallRequest, pb.CallRecord),
    )
    server = GrpcServer([service])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with RawGrpcClient(port) as raw:
                reply = await raw.call(
                    "/test.Echo/Chat", [pb.GetCallRequest(uuid=u) for u in ("a", "b", "c")]
                )
                answers = [pb.CallRecord.FromString(m).call.uuid for m in raw.messages]
            nursery.cancel_scope.cancel()
    assert reply["grpc-status"] == "0"
    assert answers == ["A", "B", "C"]


async def test_cancelled_client_closes_its_connection() -> None:
    with trio.fail_after(10):
        async with running_server() as srv:
            with trio.CancelScope() as scope:
                async with open_channel(srv.address, token=AGENT_TOKEN) as ch:
                    await CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5)
                    assert srv.server.connection_count == 1
                    scope.cancel()
                    await trio.sleep_forever()
            await trio.testing.wait_all_tasks_blocked()
            # The server saw EOF: the client's socket was really closed on cancel.
            assert srv.server.connection_count == 0
