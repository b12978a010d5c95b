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

import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Final

import structlog
import trio

from cj.queue.nsq import wire
from cj.queue.nsq.errors import NsqConnectionLost, NsqProtocolError
from cj.queue.nsq.handshake import ConnectionOptions, open_stream

log = structlog.get_logger(__name__)

MessageHandler = Callable[["NsqConnection", wire.MessageFrame], None]

_ASYNC_ERRORS: Final = frozenset({"E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"})
_RECEIVE_BYTES: Final = 256 * 1024
# Above this much unsent output, `send` waits for the writer (bounded memory).
_HIGH_WATER_BYTES: Final = 1024 * 1024


class _Pending:
    """A command waiting for its response frame; its task sleeps until `resolve`.

    (A parked task rather than a trio.Event: this is on every publish's path.)
    """

    __slots__ = ("result", "task")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        self.result: wire.ResponseFrame | wire.ErrorFrame | NsqConnectionLost | None = None

    def resolve(self, result: wire.ResponseFrame | wire.ErrorFrame | NsqConnectionLost) -> None:
        self.result = result
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def abandon(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.task = None  # cancelled: the answer, when it comes, is dropped
        return trio.lowlevel.Abort.SUCCEEDED


class NsqConnection:
    """An identified connection to one nsqd. Made by `serve_connection`.

    Commands are appended to an output buffer that one writer task sends: whatever
    piles up while a send is under way goes out in the next single write, so a
    consumer's FINs and a publisher's concurrent PUBs cost one system call per batch,
    not per command. A caller is never cancelled half-way through a command (the
    stream stays in sync), and a cancelled request leaves its place in the response
    queue, so later answers still match their commands.
    """

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
        self._pending: deque[_Pending] = deque()
        self._reader_scope = trio.CancelScope()
        self._closed = trio.Event()
        self._out = bytearray()
        self._writing = False
        self._writer: trio.lowlevel.Task | None = None  # set while the writer sleeps
        self._drained: trio.Event | None = None  # set while someone waits in flush()
        # A plain TCP connection is also driven through a duplicate of its socket: a
        # lone request is written straight from the caller and replies are read without
        # trio's per-call wrapper, which saves two scheduler rounds per round trip (the
        # cost of a PUB one at a time). TLS streams go through trio's stream only.
        self._raw: socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            self._raw = socket.socket(fileno=os.dup(stream.socket.fileno()))
            self._raw.setblocking(False)
        self._last_read = trio.current_time()
        # A write that cannot complete within this is a dead peer (nsqd uses the
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

    def send_nowait(self, command: bytes) -> None:
        """Queue a command that has no success response (RDY, FIN, REQ, TOUCH, NOP).

        NsqConnectionLost if the connection is gone. What was queued before a failure
        may not have reached nsqd, which is then redelivering those messages anyway.
        """
        self._check_open()
        self._queue(command)

    async def send(self, command: bytes) -> None:
        """`send_nowait`, then `backpressure`."""
        self.send_nowait(command)
        await self.backpressure()

    async def backpressure(self) -> None:
        """Wait while the output buffer is over its high mark (nsqd reads slowly).

        Returns at once otherwise, without a checkpoint: this is on every ack's path.
        """
        if len(self._out) > _HIGH_WATER_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Return once everything queued so far was written (or the connection failed)."""
        while (self._out or self._writing) and not self.closed:
            await self._wait_drained()
        self._check_open()

    async def request(self, command: bytes) -> bytes:
        """Send a command and return its response (`OK`, `CLOSE_WAIT`, JSON).

        Raises NsqError for an error frame (nsqd closes the connection after most of
        them) and NsqConnectionLost if the connection ends before the answer.
        """
        self._check_open()
        pending = _Pending()
        self._pending.append(pending)
        if self._raw is not None and len(self._pending) == 1 and not (self._out or self._writing):
            self._send_direct(command)
        else:
            self._queue(command)
        if pending.result is None:
            await trio.lowlevel.wait_task_rescheduled(pending.abandon)
        result = pending.result
        if type(result) is wire.ResponseFrame:
            return result.data
        if isinstance(result, NsqConnectionLost):
            raise NsqConnectionLost(str(result)) from result
        assert isinstance(result, wire.ErrorFrame)
        raise result.to_exception(self.address)

    async def aclose(self) -> None:
        """Close now (without CLS); waiting requests fail with NsqConnectionLost.

        Commands already queued get a moment to go out first (a REQ should reach nsqd).
        """
        with trio.move_on_after(1.0):
            while (self._out or self._writing) and not self.closed:
                await self._wait_drained()
        self._fail(NsqConnectionLost(f"connection to nsqd at {self.address} closed by us"))
        await self._closed.wait()

    # --- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.error is not None:
            raise NsqConnectionLost(str(self.error)) from self.error

    def _send_direct(self, command: bytes) -> None:
        """Write now, without blocking; what the socket does not take goes to the writer."""
        assert self._raw is not None
        try:
            sent = self._raw.send(command)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(NsqConnectionLost(f"sending to nsqd at {self.address} failed: {exc!r}"))
            return
        if sent < len(command):
            self._queue(command[sent:])

    def _close_raw(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            trio.lowlevel.notify_closing(raw)
            raw.close()

    def _queue(self, command: bytes) -> None:
        self._out += command
        writer, self._writer = self._writer, None
        if writer is not None:
            trio.lowlevel.reschedule(writer)

    async def _wait_drained(self) -> None:
        if self._drained is None:
            self._drained = trio.Event()
        await self._drained.wait()

    def _writer_cancelled(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._writer = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _write_loop(self) -> None:
        while True:
            if not self._out:
                drained, self._drained = self._drained, None
                if drained is not None:
                    drained.set()
                self._writer = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._writer_cancelled)
                # One more turn of the scheduler first: the other tasks woken with us
                # (16 concurrent publishers, a batch of acks) add their commands to this
                # write. Not for a lone request (one publisher waiting): only latency.
                if len(self._pending) != 1:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            data, self._out = self._out, bytearray()
            self._writing = True
            with trio.move_on_after(self._send_timeout_s) as timer:
                await self._stream.send_all(data)
            self._writing = False
            if timer.cancelled_caught:
                raise NsqConnectionLost(
                    f"nsqd at {self.address} did not take a command within "
                    f"{self._send_timeout_s:g}s"
                )

    async def _watchdog(self) -> None:
        # nsqd sends a heartbeat every interval whatever else it sends: silence for
        # two of them means the peer (or the path to it) is gone.
        silence_s = 2 * self.heartbeat_interval_s + 1.0
        while True:
            await trio.sleep_until(self._last_read + silence_s)
            if trio.current_time() - self._last_read >= silence_s:
                raise NsqConnectionLost(
                    f"nothing from nsqd at {self.address} for {silence_s:g}s (heartbeats missed)"
                )

    def _fail(self, error: NsqConnectionLost) -> None:
        if self.error is None:
            self.error = error
        while self._pending:
            self._pending.popleft().resolve(self.error)
        if self._drained is not None:
            self._drained.set()
        self._reader_scope.cancel()

    async def _read_frames(self) -> None:
        for frame in self._decoder.frames():  # anything read together with the handshake
            self._dispatch(frame)
        receive = self._stream.receive_some
        decoder = self._decoder
        raw = self._raw
        while True:
            if raw is None:
                data = await receive(_RECEIVE_BYTES)
            else:
                await trio.lowlevel.wait_readable(raw)
                try:
                    data = raw.recv(_RECEIVE_BYTES)
                except BlockingIOError:
                    continue
            if not data:
                raise NsqConnectionLost(f"nsqd at {self.address} closed the connection")
            self._last_read = trio.current_time()
            decoder.feed(data)
            for frame in decoder.frames():
                self._dispatch(frame)

    def _dispatch(self, frame: wire.Frame) -> None:
        if isinstance(frame, wire.MessageFrame):
            if self._on_message is None:
                raise NsqProtocolError(f"nsqd at {self.address} sent a message to a publisher")
            self._on_message(self, frame)
            return
        if isinstance(frame, wire.ResponseFrame) and frame.data == wire.HEARTBEAT:
            self.send_nowait(wire.NOP)
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

    async def _run(self) -> None:
        """Read, write and watch until the connection fails (raises why)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            nursery.start_soon(self._watchdog)
            await self._read_frames()


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
        if opened.identity is not None or opened.permission_count is not None:
            log.info(
                "nsq_authenticated",
                address=address,
                identity=opened.identity,
                permission_count=opened.permission_count,
            )
        log.debug(
            "nsq_connected",
            address=address,
            nsqd_version=opened.negotiated.version,
            tls=opened.negotiated.tls_v1,
        )
        with connection._reader_scope:
            try:
                await connection._run()
            except BaseException as exc:
                lost = _connection_error(exc, address)
                if lost is None:
                    raise
                connection._fail(lost)
    finally:
        if connection is not None:
            connection._fail(NsqConnectionLost(f"connection to nsqd at {address} closed"))
            connection._close_raw()
        await trio.aclose_forcefully(stream)
        if connection is not None:
            connection._closed.set()
            log.debug("nsq_disconnected", address=address, reason=str(connection.error))


def _connection_error(exc: BaseException, address: str) -> NsqConnectionLost | None:
    """The NsqConnectionLost behind a reader/writer/watchdog failure, or None if other."""
    if isinstance(exc, BaseExceptionGroup):
        found = [_connection_error(e, address) for e in exc.exceptions]
        if found and all(f is not None for f in found):
            return found[0]
        return None
    if isinstance(exc, NsqConnectionLost):
        return exc
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        return NsqConnectionLost(f"connection to nsqd at {address} failed: {exc!r}")
    return None
