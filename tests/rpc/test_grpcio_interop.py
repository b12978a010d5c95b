"""A standard grpcio client, with stubs generated from protos/ alone, against our server.

grpcio is blocking, so each client runs in a worker thread while Trio serves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import grpc
import pytest
import trio

from .conftest import AGENT_TOKEN, READER_TOKEN, running_server
from .servicer import SECRET_DETAIL

T = TypeVar("T")
AGENT = [("authorization", f"Bearer {AGENT_TOKEN}")]
READER = [("authorization", f"Bearer {READER_TOKEN}")]


async def in_thread(port: int, calls: Callable[[Any], T]) -> T:
    """Run `calls(channel)` on a fresh grpcio channel, in a worker thread."""

    def run() -> T:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            return calls(channel)

    return await trio.to_thread.run_sync(run)


def _error(call: Callable[[], object]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call did not fail")


async def test_all_cardinalities_with_metadata_and_deadlines(
    grpcio_stubs: tuple[ModuleType, ModuleType],
) -> None:
    pb2, pb2_grpc = grpcio_stubs

    def calls(channel: grpc.Channel) -> dict[str, Any]:
        stub = pb2_grpc.CallJournalStub(channel)
        out: dict[str, Any] = {}
        out["unary"] = stub.AddCall(
            pb2.AddCallRequest(call=pb2.Call(uuid="c-1")), metadata=AGENT, timeout=5
        )
        out["record"] = stub.GetCall(pb2.GetCallRequest(uuid="c-1"), metadata=READER, timeout=7)
        requests = iter([pb2.AddCallRequest(call=pb2.Call(uuid=u)) for u in ("a", "", "b")])
        out["client_stream"] = stub.AddCalls(requests, metadata=AGENT, timeout=5)
        out["server_stream"] = list(
            stub.DownloadRecording(
                pb2.DownloadRecordingRequest(call_uuid="c-1"), metadata=READER, timeout=5
            )
        )
        return out

    with trio.fail_after(20):
        async with running_server() as srv:
            out = await in_thread(srv.port, calls)
    assert out["unary"].outcome == pb2.UPSERT_OUTCOME_INSERTED
    assert out["record"].call.source == "ops"
    assert 6 < json.loads(out["record"].call.raw_json)["deadline_s"] < 7.5  # grpcio rounds up
    assert (out["client_stream"].inserted, out["client_stream"].rejected) == (2, 1)
    header, *chunks = out["server_stream"]
    body = b"".join(c.chunk for c in chunks)
    assert hashlib.sha256(body).hexdigest() == header.header.sha256
    assert len(body) == header.header.size


async def test_upload_as_a_client_stream(grpcio_stubs: tuple[ModuleType, ModuleType]) -> None:
    pb2, pb2_grpc = grpcio_stubs
    data = b"RIFF" + bytes(300_000)
    header = pb2.UploadHeader(
        call_uuid="c-1", file_name="c.wav", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )

    def messages() -> Iterator[Any]:
        yield pb2.UploadRecordingRequest(header=header)
        for start in range(0, len(data), 65536):
            yield pb2.UploadRecordingRequest(chunk=data[start : start + 65536])

    def calls(channel: grpc.Channel) -> Any:
        stub = pb2_grpc.CallJournalStub(channel)
        return stub.UploadRecording(messages(), metadata=AGENT, timeout=5)

    with trio.fail_after(20):
        async with running_server() as srv:
            reply = await in_thread(srv.port, calls)
    assert (reply.size, reply.sha256) == (len(data), header.sha256)


async def test_error_codes_messages_and_trailers(
    grpcio_stubs: tuple[ModuleType, ModuleType],
) -> None:
    pb2, pb2_grpc = grpcio_stubs

    def calls(channel: grpc.Channel) -> dict[str, grpc.RpcError]:
        stub = pb2_grpc.CallJournalStub(channel)

        def add(uuid: str, metadata: Any = AGENT) -> Callable[[], object]:
            request = pb2.AddCallRequest(call=pb2.Call(uuid=uuid))
            return lambda: stub.AddCall(request, metadata=metadata, timeout=5)

        return {
            "invalid": _error(add("invalid")),
            "boom": _error(add("boom")),
            "missing": _error(add("c-1", metadata=[])),
            "bad_token": _error(add("c-1", metadata=[("authorization", "Bearer nope-nope")])),
            "wrong_role": _error(add("c-1", metadata=READER)),
            "gone": _error(
                lambda: stub.GetCall(pb2.GetCallRequest(uuid="gone"), metadata=READER, timeout=5)
            ),
        }

    with trio.fail_after(20):
        async with running_server() as srv:
            errors = await in_thread(srv.port, calls)
    invalid = errors["invalid"]
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.details() == "call.started_at: is required"
    assert ("cj-error-field", "call.started_at") in invalid.trailing_metadata()
    boom = errors["boom"]
    assert boom.code() == grpc.StatusCode.INTERNAL
    assert boom.details().startswith("internal error (request id ")
    assert SECRET_DETAIL not in boom.details()
    assert errors["missing"].code() == grpc.StatusCode.UNAUTHENTICATED
    assert errors["bad_token"].details() == "invalid token"
    assert errors["wrong_role"].code() == grpc.StatusCode.PERMISSION_DENIED
    gone = errors["gone"]
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert ("cj-error-code", "GONE") in gone.trailing_metadata()


async def test_deadline_and_a_failing_server_stream(
    grpcio_stubs: tuple[ModuleType, ModuleType],
) -> None:
    pb2, pb2_grpc = grpcio_stubs

    def calls(channel: grpc.Channel) -> dict[str, Any]:
        stub = pb2_grpc.CallJournalStub(channel)
        slow = _error(
            lambda: stub.SearchByPhone(
                pb2.SearchByPhoneRequest(phone="1"), metadata=READER, timeout=0.3
            )
        )
        received: list[str] = []

        def download() -> None:
            request = pb2.DownloadRecordingRequest(call_uuid="fail-midway")
            for message in stub.DownloadRecording(request, metadata=READER, timeout=5):
                received.append(message.WhichOneof("part"))

        return {"slow": slow, "midway": _error(download), "received": received}

    with trio.fail_after(20):
        async with running_server() as srv:
            out = await in_thread(srv.port, calls)
            await srv.servicer.cancelled.wait()  # the slow handler was stopped
    assert out["slow"].code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert out["midway"].code() == grpc.StatusCode.UNAVAILABLE
    assert out["midway"].details() == "storage went away"
    assert out["received"] == ["header", "chunk"]


@pytest.mark.parametrize("rejected_first", [True, False])
async def test_connection_survives_rejected_and_abandoned_uploads(
    grpcio_stubs: tuple[ModuleType, ModuleType], rejected_first: bool
) -> None:
    pb2, pb2_grpc = grpcio_stubs

    def chunks(uuid: str) -> Iterator[Any]:
        yield pb2.UploadRecordingRequest(
            header=pb2.UploadHeader(call_uuid=uuid, file_name="x", size=1, sha256="0" * 64)
        )
        for _ in range(200):  # 12.5 MiB that the server does not want
            yield pb2.UploadRecordingRequest(chunk=bytes(65536))

    uuid = "reject-early" if rejected_first else "hang"  # hang: abandoned at the deadline
    timeout = 5 if rejected_first else 0.2

    def calls(channel: grpc.Channel) -> list[Any]:
        stub = pb2_grpc.CallJournalStub(channel)

        def upload() -> object:
            return stub.UploadRecording(chunks(uuid), metadata=AGENT, timeout=timeout)

        codes = [_error(upload).code() for _ in range(3)]
        request = pb2.AddCallRequest(call=pb2.Call(uuid="c-1"))
        codes.append(stub.AddCall(request, metadata=AGENT, timeout=5).outcome)
        return codes

    with trio.fail_after(20):
        async with running_server() as srv:
            codes = await in_thread(srv.port, calls)
    expected = (
        grpc.StatusCode.FAILED_PRECONDITION if rejected_first else grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert codes == [expected] * 3 + [pb2.UPSERT_OUTCOME_INSERTED]
