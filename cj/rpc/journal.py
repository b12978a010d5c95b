"""A typed client of `calljournal.v1.CallJournal` over a `Channel`.

How the agent uploads a recording (client stream: header, then chunks):

    header = pb.UploadHeader(call_uuid=uuid, file_name=path.name, size=size, sha256=digest)
    async with open_channel(server, token=token, default_timeout_s=60) as channel:
        journal = CallJournalClient(channel)
        await journal.add_call(call)
        reply = await journal.upload_recording(header, file_chunks(path), timeout_s=600)
    # Acknowledged: reply.sha256 == digest, and the bytes are durable on the server.
    # Only now delete or archive the local files.

Compute `size` and `sha256` before uploading (the server verifies both). The chunks
are read while sending, under HTTP/2 flow control, so memory stays at a few chunks.
On `RpcUnavailable` (server down, connection lost) or another `RpcError` whose
`retryable` is true, retry the whole call later with backoff on a new channel: every
operation is idempotent (an identical recording is recognised by its SHA-256).
Other codes will not get better by retrying (quarantine the input instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, aclosing
from pathlib import Path

import trio

from cj.proto import calljournal_pb2 as pb
from cj.rpc.client import Channel, as_async_iterator

__all__ = ["CHUNK_SIZE", "SERVICE", "CallJournalClient", "file_chunks"]

SERVICE = "calljournal.v1.CallJournal"
CHUNK_SIZE = 64 * 1024  # bytes per upload/download message


def _path(method: str) -> str:
    return f"/{SERVICE}/{method}"


class CallJournalClient:
    """One method per RPC; `timeout_s` overrides the channel's default deadline."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def add_call(
        self, call: pb.Call, *, timeout_s: float | None = None
    ) -> pb.AddCallResponse:
        return await self.channel.unary_unary(
            _path("AddCall"), pb.AddCallRequest(call=call), pb.AddCallResponse, timeout_s=timeout_s
        )

    async def add_calls(
        self,
        calls: AsyncIterable[pb.Call] | Iterable[pb.Call],
        *,
        timeout_s: float | None = None,
    ) -> pb.AddCallsResponse:
        return await self.channel.stream_unary(
            _path("AddCalls"), _wrap_calls(calls), pb.AddCallsResponse, timeout_s=timeout_s
        )

    async def check_calls(
        self, uuids: Iterable[str], *, timeout_s: float | None = None
    ) -> pb.CheckCallsResponse:
        return await self.channel.unary_unary(
            _path("CheckCalls"),
            pb.CheckCallsRequest(uuids=list(uuids)),
            pb.CheckCallsResponse,
            timeout_s=timeout_s,
        )

    async def upload_recording(
        self,
        header: pb.UploadHeader,
        chunks: AsyncIterable[bytes] | Iterable[bytes],
        *,
        timeout_s: float | None = None,
    ) -> pb.UploadRecordingResponse:
        return await self.channel.stream_unary(
            _path("UploadRecording"),
            _upload_messages(header, chunks),
            pb.UploadRecordingResponse,
            timeout_s=timeout_s,
        )

    async def search_by_phone(
        self, request: pb.SearchByPhoneRequest, *, timeout_s: float | None = None
    ) -> pb.SearchResponse:
        return await self.channel.unary_unary(
            _path("SearchByPhone"), request, pb.SearchResponse, timeout_s=timeout_s
        )

    async def search_by_interval(
        self, request: pb.SearchByIntervalRequest, *, timeout_s: float | None = None
    ) -> pb.SearchResponse:
        return await self.channel.unary_unary(
            _path("SearchByInterval"), request, pb.SearchResponse, timeout_s=timeout_s
        )

    async def get_call(self, uuid: str, *, timeout_s: float | None = None) -> pb.CallRecord:
        return await self.channel.unary_unary(
            _path("GetCall"), pb.GetCallRequest(uuid=uuid), pb.CallRecord, timeout_s=timeout_s
        )

    async def set_call_privacy(
        self,
        uuid: str,
        privacy: pb.CallPrivacy,
        reason: str,
        *,
        timeout_s: float | None = None,
    ) -> pb.SetCallPrivacyResponse:
        """Release (CALL_PRIVACY_PUBLIC) or protect a call; role admin, audited."""
        return await self.channel.unary_unary(
            _path("SetCallPrivacy"),
            pb.SetCallPrivacyRequest(uuid=uuid, privacy=privacy, reason=reason),
            pb.SetCallPrivacyResponse,
            timeout_s=timeout_s,
        )

    async def set_legal_hold(
        self,
        uuid: str,
        action: pb.LegalHoldAction,
        reason: str,
        *,
        timeout_s: float | None = None,
    ) -> pb.SetLegalHoldResponse:
        """Place (LEGAL_HOLD_ACTION_PLACE) or lift a legal hold; role admin, audited."""
        return await self.channel.unary_unary(
            _path("SetLegalHold"),
            pb.SetLegalHoldRequest(uuid=uuid, action=action, reason=reason),
            pb.SetLegalHoldResponse,
            timeout_s=timeout_s,
        )

    async def list_legal_holds(
        self, *, limit: int = 0, timeout_s: float | None = None
    ) -> pb.ListLegalHoldsResponse:
        return await self.channel.unary_unary(
            _path("ListLegalHolds"),
            pb.ListLegalHoldsRequest(limit=limit),
            pb.ListLegalHoldsResponse,
            timeout_s=timeout_s,
        )

    def download_recording(
        self, call_uuid: str, *, offset: int = 0, timeout_s: float | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[pb.DownloadRecordingResponse]]:
        """`async with journal.download_recording(uuid) as parts:` — the header, then
        chunks. The deadline covers the whole download."""
        return self.channel.unary_stream(
            _path("DownloadRecording"),
            pb.DownloadRecordingRequest(call_uuid=call_uuid, offset=offset),
            pb.DownloadRecordingResponse,
            timeout_s=timeout_s,
        )


async def file_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """The bytes of the file at `path`, `chunk_size` at a time (for uploads)."""
    async with await trio.open_file(path, "rb") as file:
        while chunk := await file.read(chunk_size):
            yield chunk


async def _wrap_calls(
    calls: AsyncIterable[pb.Call] | Iterable[pb.Call],
) -> AsyncIterator[pb.AddCallRequest]:
    async with aclosing(as_async_iterator(calls)) as each:
        async for call in each:
            yield pb.AddCallRequest(call=call)


async def _upload_messages(
    header: pb.UploadHeader, chunks: AsyncIterable[bytes] | Iterable[bytes]
) -> AsyncIterator[pb.UploadRecordingRequest]:
    yield pb.UploadRecordingRequest(header=header)
    async with aclosing(as_async_iterator(chunks)) as each:
        async for chunk in each:
            yield pb.UploadRecordingRequest(chunk=chunk)
