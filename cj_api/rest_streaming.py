"""Streaming for Quart-Trio: request bodies with backpressure, response bodies from storage.

What Quart-Trio lacks for a service that moves recordings of any size:

- `BufferedBody` / `StreamingRequest` / `BackpressureConnection`: the server stops
  reading the socket while more than `BODY_BUFFER_BYTES` of a request body wait for the
  handler (Quart buffers without limit), and a client disconnect after the response is
  complete no longer cancels hypercorn half-way through closing the connection.
- `IdleTimeoutChunks`: a request body's chunks under the body rules (408) and a cap.
- `StreamBody`: a download streamed from storage, opened before the answer is chosen.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import structlog
import trio
from quart.wrappers.response import ResponseBody
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestTimeout

from cj.auth import Principal
from cj.bodyrate import BodyClock, BodyLimits
from cj.errors import ServiceError
from cj_api.downloads import DownloadInfo, OpenedDownload
from cj_api.service import CallJournalService

log = structlog.get_logger(__name__)

# Read no more from the socket while this much of a body waits for its handler. With
# HTTP/2 it is per stream: at most rest h2 streams x this per connection.
BODY_BUFFER_BYTES = 256 * 1024


class BufferedBody(TrioBody):
    """Quart's request body plus what backpressure needs: how much is buffered, and a
    wake-up when the handler takes some."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        self._room = trio.Event()
        self.received = 0
        self.stalled = False  # the body broke a deadline: not worth draining

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    def append(self, data: bytes) -> None:
        self.received += len(data)
        super().append(data)

    async def wait_for_room(self) -> None:
        while (
            len(self._data) >= BODY_BUFFER_BYTES
            and not self._complete.is_set()
            and self._must_raise is None
        ):
            self._room = trio.Event()
            await self._room.wait()

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            self._room.set()


class StreamingRequest(TrioRequest):
    body_class = BufferedBody


class BackpressureConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection with two changes.

    Backpressure: it waits for the handler to take the buffered body before receiving
    more (hypercorn then stops reading the socket).

    Disconnects: Quart-Trio cancels the handler on `http.disconnect`, but hypercorn sends
    that event itself while it processes the last body message of the response, from
    inside the handler's `send`; the cancellation then aborts hypercorn half-way and a
    connection whose request body was not read to the end is never closed. A disconnect
    after the response is complete is therefore not a reason to cancel anything.
    """

    _response_complete = False

    async def __call__(self, receive: Any, send: Any) -> None:
        async def tracking_send(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self._response_complete = True
            await send(message)

        await super().__call__(receive, tracking_send)

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: TrioRequest, receive: Callable[[], Awaitable[Any]]
    ) -> None:
        body = request.body
        while True:
            if isinstance(body, BufferedBody):
                await body.wait_for_room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                break
        if not self._response_complete:
            nursery.cancel_scope.cancel()  # the client is gone: stop working for it


class IdleTimeoutChunks:
    """A request body's chunks under the body rules (`cj.bodyrate`: idle time, minimum
    rate after a grace window, total time): RequestTimeout (408) naming the rule that
    broke; INVALID_ARGUMENT naming `size_field` once more than `max_bytes` arrived.

    `limits` may be a bare number: an idle timeout alone (no rate or total rule).
    A class, not an async generator, so abandoning it early needs no finalisation.
    """

    def __init__(
        self,
        body: Any,
        limits: BodyLimits | float,
        *,
        max_bytes: int | None = None,
        size_field: str = "Content-Length",
    ) -> None:
        if not isinstance(limits, BodyLimits):
            limits = BodyLimits(idle_timeout_s=limits, min_rate_bytes_per_s=0, timeout_s=math.inf)
        self._body = body
        self._clock = BodyClock(limits, trio.current_time())
        self._max_bytes = max_bytes
        self._size_field = size_field
        self._received = 0

    def __aiter__(self) -> IdleTimeoutChunks:
        return self

    async def __anext__(self) -> bytes:
        clock = self._clock
        while True:
            with trio.move_on_at(clock.deadline):
                chunk: bytes = await self._body.__anext__()  # StopAsyncIteration ends us
                if chunk:
                    clock.receive(len(chunk), trio.current_time())
                    self._received += len(chunk)
                    if self._max_bytes is not None and self._received > self._max_bytes:
                        # Only a chunked body can do this (h11 enforces Content-Length).
                        raise ServiceError.invalid(
                            self._size_field,
                            f"the body is longer than the declared {self._max_bytes} bytes",
                        )
                    return chunk
                continue
            if isinstance(self._body, BufferedBody):
                self._body.stalled = True
            raise RequestTimeout(clock.reason(trio.current_time()))


class StreamBody(ResponseBody):
    """A download's bytes: the storage stream is opened (and its first bytes read)
    before the answer is chosen, so a missing object is still a clean error, and closed
    when sending ends."""

    def __init__(self, opened: OpenedDownload, stack: AsyncExitStack):
        self.opened = opened
        self._stack = stack
        self._call_uuid = str(opened.info.call_uuid)

    @classmethod
    async def open(
        cls,
        service: CallJournalService,
        principal: Principal,
        info: DownloadInfo,
        start: int,
        end: int | None,
        address: str,
    ) -> StreamBody:
        stack = AsyncExitStack()
        try:
            opened = await stack.enter_async_context(
                service.open_download(principal, info, start, end, address)
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await stack.aclose()
            raise
        return cls(opened, stack)

    async def __aenter__(self) -> StreamBody:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_value is not None and not isinstance(exc_value, trio.Cancelled):
            # Headers are gone: the client sees a body shorter than Content-Length.
            log.warning("download_interrupted", call_uuid=self._call_uuid, error=str(exc_value))
        with trio.CancelScope(shield=True):
            await self._stack.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.opened.chunks
