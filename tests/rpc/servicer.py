"""A small CallJournal servicer that exercises cj.rpc's machinery (not business logic).

Behaviour is chosen by the request's uuid, so one servicer covers every case:
`boom` raises an unexpected exception, `invalid` / `gone` / `internal` a ServiceError,
`hang` waits until cancelled, `deadline` answers with the deadline the handler saw.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import purerpc
import trio

from cj.config import Role
from cj.errors import ServiceError
from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb
from cj.rpc import current_principal, requires

SECRET_DETAIL = "do-not-leak-this-detail"


class JournalServicer(calljournal_grpc.CallJournalServicer):
    """The test servicer; events let tests observe what handlers went through."""

    def __init__(self) -> None:
        self.cancelled = trio.Event()  # a handler saw trio.Cancelled
        self.entered = trio.Event()  # a `hang` handler started
        self.release = trio.Event()  # lets a `hang-until-released` handler finish
        self.received_chunks = 0

    async def _hang(self) -> None:
        self.entered.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled.set()
            raise

    @requires(Role.AGENT)
    async def AddCall(self, input_message: pb.AddCallRequest) -> pb.AddCallResponse:
        uuid = input_message.call.uuid
        if uuid == "boom":
            raise RuntimeError(SECRET_DETAIL)
        if uuid == "invalid":
            raise ServiceError.invalid("call.started_at", "is required")
        if uuid == "internal":
            raise ServiceError.internal()
        if uuid == "purerpc":
            raise purerpc.AbortedError("aborted through purerpc")
        if uuid == "group":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._fail_in_child)
        if uuid == "wrong-type":
            return pb.CallRecord()  # type: ignore[return-value]
        if uuid == "hang":
            await self._hang()
        if uuid == "hang-until-released":
            self.entered.set()
            await self.release.wait()
        return pb.AddCallResponse(outcome=pb.UPSERT_OUTCOME_INSERTED)

    async def _fail_in_child(self) -> None:
        raise ServiceError.already_exists("from a child task")

    @requires(Role.AGENT)
    async def AddCalls(
        self, input_messages: AsyncIterator[pb.AddCallRequest]
    ) -> pb.AddCallsResponse:
        reply = pb.AddCallsResponse()
        index = 0
        async for message in input_messages:
            if message.call.uuid:
                reply.inserted += 1
            else:
                reply.rejected += 1
                reply.rejections.add(index=index, reason="uuid: is required", field="uuid")
            index += 1
        return reply

    @requires(Role.AGENT)
    async def CheckCalls(self, input_message: pb.CheckCallsRequest) -> pb.CheckCallsResponse:
        return pb.CheckCallsResponse(
            calls=[
                pb.CallState(uuid=u, exists=False, recording_status=pb.RECORDING_STATUS_NONE)
                for u in input_message.uuids
            ]
        )

    @requires(Role.AGENT)
    async def UploadRecording(
        self, input_messages: AsyncIterator[pb.UploadRecordingRequest]
    ) -> pb.UploadRecordingResponse:
        first = await anext(input_messages, None)
        if first is None or not first.HasField("header"):
            raise ServiceError.invalid("header", "the first message must carry the header")
        header = first.header
        if header.call_uuid == "reject-early":
            raise ServiceError.failed_precondition("no such call; add it first")
        if header.call_uuid == "hang":
            await self._hang()
        digest = hashlib.sha256()
        size = 0
        async for message in input_messages:
            if message.WhichOneof("part") != "chunk":
                raise ServiceError.invalid("chunk", "only the first message carries a header")
            digest.update(message.chunk)
            size += len(message.chunk)
            self.received_chunks += 1
        if size != header.size:
            raise ServiceError.invalid("header.size", f"announced {header.size}, got {size}")
        if digest.hexdigest() != header.sha256:
            raise ServiceError.invalid("header.sha256", "does not match the bytes received")
        return pb.UploadRecordingResponse(
            size=size, sha256=digest.hexdigest(), status=pb.RECORDING_STATUS_UPLOADED
        )

    @requires(Role.READER)
    async def GetCall(self, input_message: pb.GetCallRequest) -> pb.CallRecord:
        if input_message.uuid == "gone":
            raise ServiceError.gone("the recording was purged")
        if input_message.uuid == "hang":
            await self._hang()
        record = pb.CallRecord(call=pb.Call(uuid=input_message.uuid))
        # Echo what the machinery gave the handler, for the tests to check.
        record.call.source = current_principal().name
        deadline = trio.current_effective_deadline()
        remaining = None if deadline == float("inf") else deadline - trio.current_time()
        record.call.raw_json = json.dumps({"deadline_s": remaining})
        return record

    @requires(Role.READER)
    async def SearchByPhone(self, input_message: pb.SearchByPhoneRequest) -> pb.SearchResponse:
        await self._hang()
        raise AssertionError("unreachable")

    @requires(Role.READER)
    async def SearchByInterval(
        self, input_message: pb.SearchByIntervalRequest, request: object = None
    ) -> pb.SearchResponse:
        # Declares `request`: receives purerpc's RequestReceived with the metadata.
        metadata = dict(getattr(request, "custom_metadata", ()))
        return pb.SearchResponse(next_page_token=str(metadata.get("x-echo", "")))

    @requires(Role.READER)
    async def DownloadRecording(
        self, input_message: pb.DownloadRecordingRequest
    ) -> AsyncIterator[pb.DownloadRecordingResponse]:
        uuid = input_message.call_uuid
        if uuid == "private":
            raise ServiceError.permission_denied("the recording is private")
        data = bytes(range(256)) * 1024  # 256 KiB
        yield pb.DownloadRecordingResponse(
            header=pb.DownloadHeader(
                content_type="audio/mpeg",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                offset=input_message.offset,
            )
        )
        if uuid == "endless":
            try:
                while True:
                    yield pb.DownloadRecordingResponse(chunk=b"x" * 65536)
            finally:
                # An endless stream ends only when the server gives up on it (the
                # generator is closed with GeneratorExit, not cancelled).
                self.cancelled.set()
        for start in range(input_message.offset, len(data), 65536):
            if uuid == "fail-midway" and start > 0:
                raise ServiceError.unavailable("storage went away")
            yield pb.DownloadRecordingResponse(chunk=data[start : start + 65536])
