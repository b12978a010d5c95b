"""The gRPC face of the API: calljournal.v1.CallJournal over `CallJournalService`.

Each method converts the request (`cj.codec`), calls the service with the caller
(`current_principal()`, authenticated by `cj.rpc` before the handler runs) and converts
the answer back. `ServiceError`s propagate: `cj.rpc` turns them into status codes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import TypeVar

import structlog
import trio

from cj.codec import (
    OUTCOME_TO_PB,
    STATUS_TO_PB,
    call_from_pb,
    call_state_to_pb,
    direction_filter,
    optional_time,
    parse_uuid,
    record_to_pb,
    recording_filter,
    rows_to_search_pb,
)
from cj.config import Role
from cj.db.calls import SearchQuery
from cj.db.wire import search_rows
from cj.errors import ErrorCode, ServiceError
from cj.model import Call
from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb
from cj.rpc import current_peer_address, current_principal, requires
from cj_api.holds import DEFAULT_LIST as DEFAULT_HOLDS
from cj_api.metrics import ApiMetrics
from cj_api.service import CallJournalService, InvalidCall, UploadHeader

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_CHUNK = 1024 * 1024
DOWNLOAD_CHUNK = 64 * 1024
_PRIVACY_FROM_PB = {pb.CALL_PRIVACY_PRIVATE: True, pb.CALL_PRIVACY_PUBLIC: False}
_HOLD_FROM_PB = {pb.LEGAL_HOLD_ACTION_PLACE: True, pb.LEGAL_HOLD_ACTION_LIFT: False}


class CallJournalGrpc(calljournal_grpc.CallJournalServicer):
    def __init__(self, service: CallJournalService, metrics: ApiMetrics) -> None:
        self._service = service
        self._metrics = metrics

    @contextmanager
    def _observing(self, method: str) -> Iterator[None]:
        """Count the call and its latency under its outcome's status."""
        began = time.perf_counter()
        status = "OK"
        try:
            yield
        except ServiceError as exc:
            status = exc.code.value
            raise
        except (trio.Cancelled, GeneratorExit):
            status = ErrorCode.CANCELLED.value  # the client went away, or a deadline
            raise
        except BaseException:
            status = ErrorCode.INTERNAL.value
            raise
        finally:
            self._metrics.observe("grpc", method, status, time.perf_counter() - began)

    async def _observed(self, method: str, work: Callable[[], Awaitable[T]]) -> T:
        with self._observing(method):
            return await work()

    @requires(Role.AGENT)
    async def AddCall(self, input_message: pb.AddCallRequest) -> pb.AddCallResponse:
        async def work() -> pb.AddCallResponse:
            if not input_message.HasField("call"):
                raise ServiceError.invalid("call", "is required")
            call = call_from_pb(input_message.call)
            outcome = await self._service.add_call(current_principal(), call)
            return pb.AddCallResponse(outcome=OUTCOME_TO_PB[outcome])

        return await self._observed("AddCall", work)

    @requires(Role.AGENT)
    async def AddCalls(
        self, input_messages: AsyncIterator[pb.AddCallRequest]
    ) -> pb.AddCallsResponse:
        async def items() -> AsyncGenerator[Call | InvalidCall, None]:
            async for message in input_messages:
                yield _convert(message)

        async def work() -> pb.AddCallsResponse:
            async with aclosing(items()) as stream:
                result = await self._service.add_calls(current_principal(), stream)
            return pb.AddCallsResponse(
                inserted=result.inserted,
                updated=result.updated,
                unchanged=result.unchanged,
                rejected=result.rejected,
                rejections=[
                    pb.Rejection(
                        index=r.index,
                        uuid=r.uuid,
                        reason=r.reason,
                        field=r.field or "",
                        code=r.code.value,
                    )
                    for r in result.rejections
                ],
            )

        return await self._observed("AddCalls", work)

    @requires(Role.AGENT)
    async def CheckCalls(self, input_message: pb.CheckCallsRequest) -> pb.CheckCallsResponse:
        async def work() -> pb.CheckCallsResponse:
            uuids = [
                parse_uuid(text, f"uuids[{index}]")
                for index, text in enumerate(input_message.uuids)
            ]
            states = await self._service.check_calls(current_principal(), uuids)
            answers = []
            for text, state in zip(input_message.uuids, states, strict=True):
                message = call_state_to_pb(state)
                message.uuid = text  # "the uuid as asked"
                answers.append(message)
            return pb.CheckCallsResponse(calls=answers)

        return await self._observed("CheckCalls", work)

    @requires(Role.AGENT)
    async def UploadRecording(
        self, input_messages: AsyncIterator[pb.UploadRecordingRequest]
    ) -> pb.UploadRecordingResponse:
        async def work() -> pb.UploadRecordingResponse:
            first = await anext(input_messages, None)
            if first is None or first.WhichOneof("part") != "header":
                raise ServiceError.invalid("header", "the first message must carry the header")
            header = UploadHeader(
                call_uuid=parse_uuid(first.header.call_uuid, "header.call_uuid"),
                file_name=first.header.file_name,
                size=first.header.size,
                sha256=first.header.sha256.lower(),
            )

            async def chunks() -> AsyncGenerator[bytes, None]:
                async for message in input_messages:
                    if message.WhichOneof("part") != "chunk":
                        raise ServiceError.invalid(
                            "header", "only the first message may be a header"
                        )
                    if len(message.chunk) > MAX_CHUNK:
                        raise ServiceError.invalid("chunk", "chunks must be at most 1 MiB")
                    yield message.chunk

            async with aclosing(chunks()) as stream:
                result = await self._service.upload_recording(current_principal(), header, stream)
            return pb.UploadRecordingResponse(
                duplicate=result.duplicate,
                size=result.size,
                sha256=result.sha256,
                status=STATUS_TO_PB[result.status],
            )

        return await self._observed("UploadRecording", work)

    @requires(Role.ADMIN)
    async def SetCallPrivacy(
        self, input_message: pb.SetCallPrivacyRequest
    ) -> pb.SetCallPrivacyResponse:
        async def work() -> pb.SetCallPrivacyResponse:
            call_uuid = parse_uuid(input_message.uuid, "uuid")
            private = _PRIVACY_FROM_PB.get(input_message.privacy)
            if private is None:
                raise ServiceError.invalid(
                    "privacy", "is required: CALL_PRIVACY_PRIVATE or CALL_PRIVACY_PUBLIC"
                )
            change = await self._service.set_privacy(
                current_principal(), call_uuid, private=private, reason=input_message.reason
            )
            return pb.SetCallPrivacyResponse(
                uuid=str(change.call_uuid),
                privacy=pb.CALL_PRIVACY_PRIVATE if change.private else pb.CALL_PRIVACY_PUBLIC,
                changed=change.changed,
            )

        return await self._observed("SetCallPrivacy", work)

    @requires(Role.ADMIN)
    async def SetLegalHold(self, input_message: pb.SetLegalHoldRequest) -> pb.SetLegalHoldResponse:
        async def work() -> pb.SetLegalHoldResponse:
            call_uuid = parse_uuid(input_message.uuid, "uuid")
            held = _HOLD_FROM_PB.get(input_message.action)
            if held is None:
                raise ServiceError.invalid(
                    "action", "is required: LEGAL_HOLD_ACTION_PLACE or LEGAL_HOLD_ACTION_LIFT"
                )
            change = await self._service.holds.set(
                current_principal(), call_uuid, held=held, reason=input_message.reason
            )
            return pb.SetLegalHoldResponse(
                uuid=str(change.call_uuid), held=change.held, changed=change.changed
            )

        return await self._observed("SetLegalHold", work)

    @requires(Role.ADMIN)
    async def ListLegalHolds(
        self, input_message: pb.ListLegalHoldsRequest
    ) -> pb.ListLegalHoldsResponse:
        async def work() -> pb.ListLegalHoldsResponse:
            holds = await self._service.holds.list(
                current_principal(), input_message.limit or DEFAULT_HOLDS
            )
            answer = pb.ListLegalHoldsResponse()
            for hold in holds:
                item = answer.holds.add(
                    uuid=str(hold.call_uuid), reason=hold.reason, held_by=hold.held_by
                )
                item.held_at.FromDatetime(hold.held_at)
            return answer

        return await self._observed("ListLegalHolds", work)

    @requires(Role.READER)
    async def SearchByPhone(self, input_message: pb.SearchByPhoneRequest) -> pb.SearchResponse:
        request = input_message

        def build() -> SearchQuery:
            if not request.phone:
                raise ServiceError.invalid("phone", "is required")
            return SearchQuery(
                phone=request.phone,
                exact=request.exact,
                start=optional_time(request, "start_time"),
                end=optional_time(request, "end_time"),
                direction=direction_filter(request.direction),
                has_recording=recording_filter(request.recording),
                limit=request.limit or DEFAULT_LIMIT,
                page_token=request.page_token or None,
            )

        return await self._observed("SearchByPhone", lambda: self._search(build))

    @requires(Role.READER)
    async def SearchByInterval(
        self, input_message: pb.SearchByIntervalRequest
    ) -> pb.SearchResponse:
        request = input_message

        def build() -> SearchQuery:
            start = optional_time(request, "start_time")
            end = optional_time(request, "end_time")
            if start is None:
                raise ServiceError.invalid("start_time", "is required")
            if end is None:
                raise ServiceError.invalid("end_time", "is required")
            if end <= start:
                raise ServiceError.invalid("end_time", "must be after start_time")
            return SearchQuery(
                start=start,
                end=end,
                direction=direction_filter(request.direction),
                has_recording=recording_filter(request.recording),
                limit=request.limit or DEFAULT_LIMIT,
                page_token=request.page_token or None,
            )

        return await self._observed("SearchByInterval", lambda: self._search(build))

    async def _search(self, build: Callable[[], SearchQuery]) -> pb.SearchResponse:
        page = await self._service.search_as(current_principal(), build, search_rows)
        return rows_to_search_pb(page.rows, page.next_page_token)

    @requires(Role.READER)
    async def GetCall(self, input_message: pb.GetCallRequest) -> pb.CallRecord:
        async def work() -> pb.CallRecord:
            call_uuid = parse_uuid(input_message.uuid, "uuid")
            record = await self._service.get_call(current_principal(), call_uuid)
            return record_to_pb(record, include_raw=True)

        return await self._observed("GetCall", work)

    @requires(Role.READER)
    async def DownloadRecording(
        self, input_message: pb.DownloadRecordingRequest
    ) -> AsyncIterator[pb.DownloadRecordingResponse]:
        with self._observing("DownloadRecording"):
            call_uuid = parse_uuid(input_message.call_uuid, "call_uuid")
            if input_message.offset < 0:
                raise ServiceError.invalid("offset", "must not be negative")
            principal = current_principal()
            address = current_peer_address()
            info = await self._service.prepare_download(principal, call_uuid, address)
            async with self._service.open_download(
                principal, info, input_message.offset, None, address
            ) as opened:
                info = opened.info  # a whole download follows the WAV to its new MP3
                yield pb.DownloadRecordingResponse(
                    header=pb.DownloadHeader(
                        content_type=info.content_type,
                        size=info.size,
                        sha256=info.sha256 or "",
                        duration_ms=info.duration_ms or 0,
                        file_name=info.file_name,
                        offset=input_message.offset,
                    )
                )
                async for chunk in opened.chunks:
                    for start in range(0, len(chunk), DOWNLOAD_CHUNK):
                        yield pb.DownloadRecordingResponse(
                            chunk=chunk[start : start + DOWNLOAD_CHUNK]
                        )


def _convert(message: pb.AddCallRequest) -> Call | InvalidCall:
    """One AddCalls item as a Call, or why not: a bad item is rejected alone, whatever
    is wrong with it, and the stream's other calls are still stored."""
    try:
        if not message.HasField("call"):
            raise ServiceError.invalid("call", "is required")
        return call_from_pb(message.call)
    except ServiceError as exc:
        return InvalidCall(message.call.uuid[:64], exc)
    except Exception as exc:  # a conversion we did not foresee: still this item's fault
        log.warning("add_calls_item_unconvertible", error_type=type(exc).__name__)
        return InvalidCall(
            message.call.uuid[:64], ServiceError.invalid("call", "could not be read as a call")
        )
