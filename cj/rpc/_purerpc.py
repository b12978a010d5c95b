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

A stream we stop tracking is removed from purerpc's table only when the reader asks
for the next bytes (`receive_data`): purerpc dispatches a batch of events with
checkpoints in between and would fail on a stream removed in the middle of a batch.

Types: purerpc ships no annotations, so its objects are `Any` here; the public modules
(`server`, `client`) expose typed wrappers only.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.abc
import h2.errors  # type: ignore[import-untyped]
import structlog
import trio
from purerpc.grpc_proto import GRPCProtoSocket
from purerpc.grpc_socket import GRPCStreamState, SocketWrapper
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import MessageReceived, ResponseEnded
from purerpc.grpclib.status import Status, StatusCode

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


class ServerConnection(_Connection):
    """The server side, with our fixes (see module doc)."""

    def __init__(self) -> None:
        super().__init__(client_side=False)
        self.raw_timeouts: dict[int, str] = {}  # stream id -> grpc-timeout as sent
        self.finished: set[int] = set()  # streams whose RPC is over
        self.on_reset: Any = None  # Callable[[int], None], set by ServerSocket

    def _request_received(self, event: Any) -> list[Any]:
        headers = []
        for name, value in event.headers:
            if name == "grpc-timeout":
                self.raw_timeouts[event.stream_id] = value
            else:
                headers.append((name, value))
        event.headers = headers
        return list(super()._request_received(event))

    def _data_received(self, event: Any) -> list[Any]:
        if event.stream_id in self.finished:
            # Nobody will read this: return the flow-control credit now and drop it.
            self.h2_connection.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            return []
        return list(super()._data_received(event))

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

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        super().__init__(GRPCConfiguration(client_side=False), stream)
        self.connection = ServerConnection()
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
            reason = f"the connection to the server failed: {exc!r}"
            log.debug("grpc client connection failed", error=repr(exc))
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
            log.debug("grpc stream reset failed", stream_id=stream_id, error=repr(exc))
            return
        # SocketWrapper.flush only sets an event; the writer task sends the frame.
        self._socket._flush_event.set()
