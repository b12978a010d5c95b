"""Everything that depends on purerpc's internals, in one place (purerpc is pinned <0.9).

purerpc is split like h11: `purerpc.grpclib.connection.GRPCConnection` is a sans-IO
gRPC-over-h2 state machine, and `purerpc.grpc_socket.GRPCSocket` does the I/O around
it. We keep both and fix what hurts a long-running service:

- A malformed `grpc-timeout` makes purerpc raise inside the connection's reader, which
  kills every RPC on that connection. `ServerConnection` takes the header out before
  purerpc sees it and keeps the raw value for the RPC handler to judge.
- RST_STREAM from a client (it cancelled, or its deadline passed) is ignored by purerpc:
  the handler runs on. `ServerConnection` reports it through `on_reset` so the server
  can cancel that RPC, and the socket forgets the stream.
- Data that arrives for an RPC that is already over (the handler answered without
  reading everything, e.g. a rejected upload) is buffered forever and never
  acknowledged, which leaks memory and shrinks the connection's flow-control window
  until the connection stalls. Finished streams' data is now acknowledged and dropped.
- The writer task raises when the peer is gone, which tears down the task group that
  encloses the caller's code. Our writer stops quietly; the reader sees the same failure.
- Each stream's event queue is an anyio memory stream that purerpc never closes, so
  anyio warns (ResourceWarning) once per call. We use a Trio memory channel instead.
- On the client, when the connection ends, calls waiting for an answer wait forever.
  `ClientSocket` ends them with UNAVAILABLE and refuses new calls; and it can cancel a
  call (RST_STREAM), which purerpc cannot.

- No bounds: 64 MiB stream windows, a 1 GiB connection window, 65,536 streams and
  16 MiB frames per connection, 32 MiB messages for every method. `ServerConnection`
  applies `cj.rpc.limits.GrpcLimits` instead: per-method message limits (a message
  over its limit ends its call with RESOURCE_EXHAUSTED, not the connection), bounded
  windows and frames, and a stream cap enforced with RST_STREAM REFUSED_STREAM.

A stream we stop tracking is removed from purerpc's table only when the reader asks
for the next bytes (`receive_data`): purerpc dispatches a batch of events with
checkpoints in between and would fail on a stream removed in the middle of a batch.

Types: purerpc ships no annotations, so its objects are `Any` here; the public modules
(`server`, `client`) expose typed wrappers only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import h2.config  # type: ignore[import-untyped]
import h2.connection  # type: ignore[import-untyped]
import h2.errors  # type: ignore[import-untyped]
import h2.settings  # type: ignore[import-untyped]
import structlog
import trio
from purerpc.grpc_proto import GRPCProtoSocket
from purerpc.grpc_socket import GRPCStreamState, SocketWrapper
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import MessageReceived, RequestEnded, ResponseEnded
from purerpc.grpclib.exceptions import MessageTooLargeError
from purerpc.grpclib.status import Status, StatusCode

from cj.logs import safe_error_text
from cj.rpc.limits import GrpcLimits, message_limit

log = structlog.get_logger(__name__)

# Streams whose peer still owes us an END_STREAM.
_OPEN_STATES = (GRPCStreamState.OPEN, GRPCStreamState.HALF_CLOSED_LOCAL)


def is_generated_placeholder(method_fn: Any) -> bool:
    """Whether a service method is the generated base class's `raise NotImplementedError`
    (the servicer did not override it).

    purerpc hides one-parameter methods in a closure (`method_fn_with_headers`); the
    servicer's bound method is in that closure's cell.
    """
    candidates = [method_fn]
    if getattr(method_fn, "__name__", "") == "method_fn_with_headers":
        candidates += [cell.cell_contents for cell in method_fn.__closure__ or ()]
    for candidate in candidates:
        function = getattr(candidate, "__func__", candidate)
        if getattr(function, "__module__", "") == "cj.proto.calljournal_grpc":
            return True
    return False


class _QuietSocketWrapper(SocketWrapper):  # type: ignore[misc]
    """purerpc's socket wrapper whose writer stops, instead of raising, on a dead peer."""

    broken: BaseException | None = None

    async def _writer_thread(self) -> None:
        try:
            await super()._writer_thread()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            # The reader gets the same failure (EOF or reset) and ends the connection;
            # raising here would instead cancel the code that owns the connection.
            self.broken = exc


class _Connection(GRPCConnection):  # type: ignore[misc]
    """purerpc's sans-IO connection, plus streams to forget before the next batch."""

    def __init__(self, *, client_side: bool) -> None:
        super().__init__(config=GRPCConfiguration(client_side=client_side))
        self.forget: set[int] = set()
        self.streams: dict[int, Any] = {}  # purerpc's GRPCSocket._streams, once attached

    def receive_data(self, data: bytes) -> list[Any]:
        for stream_id in self.forget:
            self.streams.pop(stream_id, None)
            self.message_read_buffers.pop(stream_id, None)
        self.forget.clear()
        return list(super().receive_data(data))


class _BoundedH2Connection(h2.connection.H2Connection):  # type: ignore[misc]
    """h2's connection, refusing a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS with
    RST_STREAM REFUSED_STREAM (a retryable stream error, RFC 9113 §5.1.2) instead of h2's
    connection error, which would end every call of the connection."""

    _admitting = False

    @property
    def open_inbound_streams(self) -> int:
        if self._admitting:
            return 0  # let h2 decode the headers (HPACK state) and open the stream
        count: int = super().open_inbound_streams
        return count

    def _receive_headers_frame(self, frame: Any) -> Any:
        if (
            frame.stream_id in self.streams
            or self.open_inbound_streams < self.local_settings.max_concurrent_streams
        ):
            return super()._receive_headers_frame(frame)
        self._admitting = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._admitting = False
        self.reset_stream(frame.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        self.refused_streams += 1
        kept = [e for e in events if getattr(e, "stream_id", None) != frame.stream_id]
        return frames, kept

    refused_streams = 0


class ServerConnection(_Connection):
    """The server side, with our fixes and bounds (see module doc)."""

    def __init__(self, limits: GrpcLimits | None = None) -> None:
        self.limits = limits or GrpcLimits()
        super().__init__(client_side=False)
        self.h2_connection = _BoundedH2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._set_h2_connection_local_settings()
        self.raw_timeouts: dict[int, str] = {}  # stream id -> grpc-timeout as sent
        self.finished: set[int] = set()  # streams whose RPC is over
        self.too_large: dict[int, str] = {}  # stream id -> why its message was refused
        self.on_reset: Any = None  # Callable[[int], None], set by ServerSocket
        self.on_first_bytes: Callable[[], None] | None = None
        self.bytes_received = 0

    def _set_h2_connection_local_settings(self) -> None:
        limits: GrpcLimits = getattr(self, "limits", None) or GrpcLimits()
        codes = h2.settings.SettingCodes
        self.h2_connection.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                codes.INITIAL_WINDOW_SIZE: limits.stream_window_bytes,
                codes.MAX_FRAME_SIZE: limits.max_frame_bytes,
                codes.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes,
            },
        )
        self.h2_connection.max_inbound_frame_size = limits.max_frame_bytes
        # Enforced when decoding (h2 only applies the setting to hpack once acknowledged).
        self.h2_connection.decoder.max_header_list_size = limits.max_header_list_bytes

    def initiate_connection(self) -> None:
        self.h2_connection.initiate_connection()
        increment = self.limits.connection_window_increment
        if increment:
            self.h2_connection.increment_flow_control_window(increment)

    def receive_data(self, data: bytes) -> list[Any]:
        if not self.bytes_received and data and self.on_first_bytes is not None:
            self.on_first_bytes()
        self.bytes_received += len(data)
        return super().receive_data(data)

    def _request_received(self, event: Any) -> list[Any]:
        headers = []
        path = ""
        for name, value in event.headers:
            if name == "grpc-timeout":
                self.raw_timeouts[event.stream_id] = value
            else:
                if name == ":path":
                    path = value
                headers.append((name, value))
        event.headers = headers
        events = list(super()._request_received(event))
        buffer = self.message_read_buffers.get(event.stream_id)
        if buffer is not None:
            buffer._max_message_length = message_limit(path)
        return events

    def _data_received(self, event: Any) -> list[Any]:
        if event.stream_id in self.finished:
            # Nobody will read this: return the flow-control credit now and drop it.
            self.h2_connection.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            return []
        buffer = self.message_read_buffers.get(event.stream_id)
        try:
            return list(super()._data_received(event))
        except MessageTooLargeError as exc:
            # Refused from the message's length prefix: end the call (the handler sees
            # RESOURCE_EXHAUSTED), drop what was buffered, and drop what still comes.
            self.h2_connection.acknowledge_received_data(_unacknowledged(buffer), event.stream_id)
            self.message_read_buffers.pop(event.stream_id, None)
            self.finished.add(event.stream_id)
            self.too_large[event.stream_id] = str(exc)
            return [RequestEnded(event.stream_id)]

    def _stream_ended(self, event: Any) -> list[Any]:
        self.finished.discard(event.stream_id)  # purerpc forgets the stream after this
        return list(super()._stream_ended(event))

    def _stream_reset(self, event: Any) -> list[Any]:
        # No more frames come for this stream, so purerpc would never remove it.
        self.finished.discard(event.stream_id)
        self.raw_timeouts.pop(event.stream_id, None)
        self.forget.add(event.stream_id)
        if self.on_reset is not None:
            self.on_reset(event.stream_id)
        return []


def _unacknowledged(buffer: Any) -> int:
    """Flow-controlled bytes a purerpc MessageReadBuffer holds (this frame's included):
    the prefix being parsed, the bytes after it, complete messages not handed out."""
    if buffer is None:
        return 0
    held = buffer._flow_controlled_length or 0
    held += sum(length for _, length in buffer._buffer._deque)
    held += sum(length for _, length in buffer._messages)
    return int(held)


def _with_trio_channel(stream: Any) -> Any:
    """Swap purerpc's per-stream anyio memory stream for a Trio memory channel (same
    `send`, `receive`, `send_nowait`, `receive_nowait`; needs no closing)."""
    for end in stream._incoming_events:
        end.close()
    stream._incoming_events = trio.open_memory_channel[Any](math.inf)
    return stream


class ServerSocket(GRPCProtoSocket):  # type: ignore[misc]
    """The server side of one HTTP/2 connection (purerpc's, with our fixes).

    `on_reset(stream_id)` is called when the client resets a stream.
    """

    def __init__(self, stream: anyio.abc.ByteStream, limits: GrpcLimits | None = None) -> None:
        super().__init__(GRPCConfiguration(client_side=False), stream)
        self.connection = ServerConnection(limits)
        self.connection.streams = self._streams
        self._grpc_connection = self.connection
        self._socket = _QuietSocketWrapper(self.connection, stream)

    @property
    def on_reset(self) -> Any:
        return self.connection.on_reset

    @on_reset.setter
    def on_reset(self, callback: Any) -> None:
        self.connection.on_reset = callback

    def _stream_ctor(self, stream_id: int) -> Any:
        return _with_trio_channel(super()._stream_ctor(stream_id))

    def finish(self, stream: Any) -> None:
        """The RPC on `stream` is over: acknowledge and drop whatever it did not read.

        Idempotent; call it after the final status was queued (or abandoned).
        """
        stream_id = stream.stream_id
        self.connection.raw_timeouts.pop(stream_id, None)
        if (
            stream.state in _OPEN_STATES
            and stream_id in self._streams
            and stream_id not in self.connection.forget  # reset by the client
        ):
            self.connection.finished.add(stream_id)
        receive = stream._incoming_events[1]
        while True:
            try:
                event = receive.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(event, MessageReceived):
                self.connection.acknowledge_received_data(stream_id, event.flow_controlled_length)


class ClientSocket(GRPCProtoSocket):  # type: ignore[misc]
    """The client side of one HTTP/2 connection (purerpc's, with our fixes)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        super().__init__(GRPCConfiguration(client_side=True), stream)
        self.connection = _Connection(client_side=True)
        self.connection.streams = self._streams
        self._grpc_connection = self.connection
        self._socket = _QuietSocketWrapper(self.connection, stream)
        self.closed_reason: str | None = None  # set once the connection is unusable

    def _stream_ctor(self, stream_id: int) -> Any:
        return _with_trio_channel(super()._stream_ctor(stream_id))

    async def _reader_thread(self) -> None:
        reason = "the server closed the connection"
        try:
            await super()._reader_thread()
        except Exception as exc:  # h2 protocol errors, TLS errors, resets
            # Never repr(exc): h2's protocol errors quote header values (tokens).
            reason = f"the connection to the server failed: {safe_error_text(exc)}"
            log.debug("grpc client connection failed", error=safe_error_text(exc))
        self.abandon(reason)

    def abandon(self, reason: str) -> None:
        """The connection is unusable: end calls waiting for the server's status (they
        would wait forever) with UNAVAILABLE `reason`, and refuse new ones."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for stream_id, stream in list(self._streams.items()):
            if stream.state in _OPEN_STATES:
                ended = ResponseEnded(stream_id, Status(StatusCode.UNAVAILABLE, reason))
                stream._incoming_events[0].send_nowait(ended)

    def cancel(self, stream: Any) -> None:
        """Abandon a call unless it has ended: RST_STREAM (CANCEL) tells the server.

        Safe in a cancelled scope (no checkpoint).
        """
        stream_id = stream.stream_id
        if (
            stream.end_stream_event is not None  # we read the server's status: it's over
            or stream_id not in self._streams  # purerpc saw both sides close
            or self.closed_reason is not None
        ):
            return
        self.connection.forget.add(stream_id)
        try:
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        except Exception as exc:  # already closed on the h2 level: nothing to cancel
            log.debug("grpc stream reset failed", stream_id=stream_id, error=safe_error_text(exc))
            return
        # SocketWrapper.flush only sets an event; the writer task sends the frame.
        self._socket._flush_event.set()
