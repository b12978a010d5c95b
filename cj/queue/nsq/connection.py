"""One TCP connection to nsqd: magic, IDENTIFY, a frame reader, serialized sends.

`serve_connection` is started with `nursery.start`: it connects and completes the
handshake (`handshake`: magic, IDENTIFY, TLS, AUTH), hands back an `NsqConnection`
once nsqd has answered, and then reads frames until the connection ends. It answers
`_heartbeat_` with NOP, passes message frames to `on_message`, and matches
`OK`/`CLOSE_WAIT`/JSON and fatal error frames to the command that is waiting for them:
nsqd executes one connection's commands in order, so responses arrive in the order the
commands were sent. The non-fatal errors (`E_FIN_FAILED`, `E_REQ_FAILED`,
`E_TOUCH_FAILED`) answer commands that have no success response, so they are logged
rather than matched.

A lost connection is not an exception in the owner's nursery: `serve_connection`
returns, `closed` becomes true, `error` says why, and waiting requests fail with
NsqConnectionLost. The owner reconnects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
import trio

from cj.queue.nsq import wire
from cj.queue.nsq.errors import NsqConnectionLost, NsqProtocolError
from cj.queue.nsq.handshake import ConnectionOptions, open_stream

log = structlog.get_logger(__name__)

MessageHandler = Callable[["NsqConnection", wire.MessageFrame], Awaitable[None]]

_ASYNC_ERRORS: Final = frozenset({"E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"})
_RECEIVE_BYTES: Final = 256 * 1024


class _Pending:
    """A command waiting for its response frame."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: wire.ResponseFrame | wire.ErrorFrame | NsqConnectionLost | None = None

    def resolve(self, result: wire.ResponseFrame | wire.ErrorFrame | NsqConnectionLost) -> None:
        self.result = result
        self.done.set()


class NsqConnection:
    """An identified connection to one nsqd. Made by `serve_connection`."""

    def __init__(
        self,
        address: str,
        stream: trio.abc.Stream,
        decoder: wire.FrameDecoder,
        negotiated: wire.Negotiated,
        *,
        heartbeat_interval_s: float,
        on_message: MessageHandler | None,
        identity: str | None = None,
    ) -> None:
        self.address = address
        self.negotiated = negotiated
        self.identity = identity  # who the auth server says we are (AUTH), if any
        self.heartbeat_interval_s = heartbeat_interval_s
        self.error: NsqConnectionLost | None = None
        self._stream = stream
        self._decoder = decoder
        self._on_message = on_message
        self._send_lock = trio.Lock()
        self._pending: deque[_Pending] = deque()
        self._reader_scope = trio.CancelScope()
        self._closed = trio.Event()
        # A send that cannot complete within this is a dead peer (nsqd uses the
        # heartbeat interval as its own write deadline).
        self._send_timeout_s = max(heartbeat_interval_s, 5.0)

    def __repr__(self) -> str:
        return f"<NsqConnection {self.address}{' closed' if self.closed else ''}>"

    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed; it never reopens."""
        return self.error is not None

    async def wait_closed(self) -> None:
        """Return when the socket is closed (for any reason)."""
        await self._closed.wait()

    async def send(self, command: bytes) -> None:
        """Send a command that has no success response (RDY, FIN, REQ, TOUCH, NOP)."""
        async with self._send_lock:
            await self._send_locked(command)

    async def request(self, command: bytes) -> bytes:
        """Send a command and return its response (`OK`, `CLOSE_WAIT`, JSON).

        Raises NsqError for an error frame (nsqd closes the connection after most of
        them) and NsqConnectionLost if the connection ends before the answer.
        """
        pending = _Pending()
        async with self._send_lock:
            self._check_open()
            self._pending.append(pending)
            await self._send_locked(command)
        # If the caller is cancelled here the entry stays queued, so the response
        # that eventually arrives is still matched to the right command.
        await pending.done.wait()
        result = pending.result
        if isinstance(result, NsqConnectionLost):
            raise NsqConnectionLost(str(result)) from result
        if isinstance(result, wire.ErrorFrame):
            raise result.to_exception(self.address)
        assert isinstance(result, wire.ResponseFrame)
        return result.data

    async def aclose(self) -> None:
        """Close now (without CLS); waiting requests fail with NsqConnectionLost."""
        self._fail(NsqConnectionLost(f"connection to nsqd at {self.address} closed by us"))
        await self._closed.wait()

    # --- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.error is not None:
            raise NsqConnectionLost(str(self.error)) from self.error

    async def _send_locked(self, command: bytes) -> None:
        self._check_open()
        # Shielded: a send cancelled half-way would leave a partial command on the
        # wire and desynchronise the stream for every other user of the connection.
        deadline = trio.current_time() + self._send_timeout_s
        with trio.CancelScope(shield=True, deadline=deadline) as timer:
            try:
                await self._stream.send_all(command)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                lost = NsqConnectionLost(f"sending to nsqd at {self.address} failed: {exc!r}")
                self._fail(lost)
                raise lost from exc
        if timer.cancelled_caught:
            lost = NsqConnectionLost(
                f"nsqd at {self.address} did not take a command within {self._send_timeout_s:g}s"
            )
            self._fail(lost)
            raise lost
        # Let a cancellation that arrived during the shielded send be delivered now.
        await trio.lowlevel.checkpoint_if_cancelled()

    def _fail(self, error: NsqConnectionLost) -> None:
        if self.error is None:
            self.error = error
        while self._pending:
            self._pending.popleft().resolve(self.error)
        self._reader_scope.cancel()

    async def _read_frames(self) -> None:
        # nsqd sends a heartbeat every interval whatever else it sends: silence for
        # two of them means the peer (or the path to it) is gone.
        silence_s = 2 * self.heartbeat_interval_s + 1.0
        for frame in self._decoder.frames():  # anything read together with the handshake
            await self._dispatch(frame)
        while True:
            with trio.move_on_after(silence_s) as timer:
                data = await self._stream.receive_some(_RECEIVE_BYTES)
            if timer.cancelled_caught:
                raise NsqConnectionLost(
                    f"nothing from nsqd at {self.address} for {silence_s:g}s (heartbeats missed)"
                )
            if not data:
                raise NsqConnectionLost(f"nsqd at {self.address} closed the connection")
            self._decoder.feed(data)
            for frame in self._decoder.frames():
                await self._dispatch(frame)

    async def _dispatch(self, frame: wire.Frame) -> None:
        if isinstance(frame, wire.MessageFrame):
            if self._on_message is None:
                raise NsqProtocolError(f"nsqd at {self.address} sent a message to a publisher")
            await self._on_message(self, frame)
        elif isinstance(frame, wire.ResponseFrame) and frame.data == wire.HEARTBEAT:
            await self.send(wire.NOP)
        elif isinstance(frame, wire.ErrorFrame) and frame.code in _ASYNC_ERRORS:
            log.warning(
                "nsq_command_failed",
                address=self.address,
                code=frame.code,
                description=frame.description,
            )
        elif self._pending:
            self._pending.popleft().resolve(frame)
        elif isinstance(frame, wire.ErrorFrame):
            # nsqd closes the connection after a fatal error; the read loop will see it.
            log.error(
                "nsq_error_frame",
                address=self.address,
                code=frame.code,
                description=frame.description,
            )
        else:
            log.warning("nsq_unexpected_response", address=self.address, data=frame.data[:80])


async def serve_connection(
    address: str,
    options: ConnectionOptions,
    *,
    on_message: MessageHandler | None = None,
    task_status: trio.TaskStatus[NsqConnection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect and IDENTIFY (TLS, AUTH), report the `NsqConnection`, then read until it ends.

    Failing to connect or to IDENTIFY raises (from `nursery.start`): NsqConnectionLost
    for network trouble, NsqConfigError for settings nsqd refused or security it
    requires, NsqError/NsqAuthError for other refusals. Once started, this returns
    normally when the connection ends; `connection.error` says why.
    """
    opened = await open_stream(address, options)
    stream = opened.stream
    connection: NsqConnection | None = None
    try:
        connection = NsqConnection(
            address,
            stream,
            opened.decoder,
            opened.negotiated,
            heartbeat_interval_s=options.heartbeat_interval_s,
            on_message=on_message,
            identity=opened.identity,
        )
        task_status.started(connection)
        log.debug(
            "nsq_connected",
            address=address,
            nsqd_version=opened.negotiated.version,
            tls=opened.negotiated.tls_v1,
        )
        with connection._reader_scope:
            try:
                await connection._read_frames()
            except NsqConnectionLost as exc:
                connection._fail(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                connection._fail(
                    NsqConnectionLost(f"reading from nsqd at {address} failed: {exc!r}")
                )
    finally:
        if connection is not None:
            connection._fail(NsqConnectionLost(f"connection to nsqd at {address} closed"))
        await trio.aclose_forcefully(stream)
        if connection is not None:
            connection._closed.set()
            log.debug("nsq_disconnected", address=address, reason=str(connection.error))
