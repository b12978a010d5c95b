"""A raw HTTP/2 gRPC peer (h2 over a Trio socket) that behaves as an attacker would:
streams that never send a body, messages announced bigger than they are, more streams
than the server allows, connections that say nothing."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import h2.config  # type: ignore[import-untyped]
import h2.connection  # type: ignore[import-untyped]
import h2.events  # type: ignore[import-untyped]
import h2.exceptions  # type: ignore[import-untyped]
import trio
from google.protobuf.message import Message

SERVICE = "/calljournal.v1.CallJournal"


def grpc_frame(body: bytes, *, declared: int | None = None) -> bytes:
    """One length-prefixed gRPC message; `declared` lies about its length."""
    length = len(body) if declared is None else declared
    return b"\x00" + length.to_bytes(4, "big") + body


@dataclass
class StreamState:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False
    reset_code: int | None = None

    @property
    def status(self) -> str | None:
        return self.headers.get("grpc-status")

    @property
    def message(self) -> str:
        return urllib.parse.unquote(self.headers.get("grpc-message", ""))

    @property
    def done(self) -> bool:
        return self.ended or self.reset_code is not None


class RawGrpcPeer:
    """One client connection. Call `pump()` to exchange frames; it records each
    stream's headers, trailers, data and resets, and whether the server sent GOAWAY."""

    def __init__(self, port: int, *, preface: bool = True) -> None:
        self.port = port
        self._preface = preface
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding="utf-8",
                # An attacker sends what it likes (e.g. values with surrounding spaces).
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.sock: trio.SocketStream | None = None
        self.streams: dict[int, StreamState] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False  # the server closed the TCP connection
        self.window_opened = trio.Event()  # set when the server grants more credit
        self._send_lock = trio.Lock()

    async def __aenter__(self) -> RawGrpcPeer:
        self.sock = await trio.open_tcp_stream("127.0.0.1", self.port)
        if self._preface:
            self.conn.initiate_connection()
            await self.flush()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.sock is not None
        await self.sock.aclose()

    async def flush(self) -> None:
        assert self.sock is not None
        async with self._send_lock:  # a reader and a writer task may both flush
            data = self.conn.data_to_send()
            if data:
                await self.sock.send_all(data)

    def start(
        self, method: str, token: str | None, *, extra: Sequence[tuple[str, str]] = ()
    ) -> int:
        """Open a stream for `method` (headers only; nothing is flushed yet)."""
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", f"{SERVICE}/{method}"),
            (":authority", f"127.0.0.1:{self.port}"),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]
        if token is not None:
            headers.append(("authorization", f"Bearer {token}"))
        headers.extend(extra)
        return self.request(headers)

    def request(self, headers: Sequence[tuple[str, str]], *, end: bool = False) -> int:
        """Open a stream with exactly `headers` (nothing is flushed yet)."""
        stream_id: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, list(headers), end_stream=end)
        self.streams[stream_id] = StreamState()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = False) -> int:
        """Queue as much of `data` as the windows allow; returns how much was queued."""
        try:
            room = min(self.conn.local_flow_control_window(stream_id), len(data))
        except h2.exceptions.StreamClosedError:
            return 0
        sent = 0
        while sent < room:
            step = min(room - sent, self.conn.max_outbound_frame_size)
            self.conn.send_data(stream_id, data[sent : sent + step])
            sent += step
        if end and sent == len(data):
            self.conn.end_stream(stream_id)
        return sent

    def send_message(self, stream_id: int, message: Message | bytes, *, end: bool = True) -> None:
        body = message if isinstance(message, bytes) else message.SerializeToString()
        queued = self.send(stream_id, grpc_frame(body), end=end)
        assert queued == len(body) + 5, "message bigger than the window"

    async def pump(self, timeout_s: float | None = None) -> bool:
        """Flush, then read once (waiting at most `timeout_s`); False if nothing came."""
        assert self.sock is not None
        if self._preface:
            await self.flush()
        data = b""
        with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            try:
                data = await self.sock.receive_some(1 << 20)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.closed = True
                return True
        if not data:
            return False
        if not self._preface:
            return True  # a silent peer says nothing, not even a SETTINGS acknowledgement
        for event in self.conn.receive_data(data):
            self._on(event)
        await self.flush()
        return True

    def _on(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                stream.data += event.data
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            if stream is not None:
                stream.headers.update(dict(event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset_code = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_opened.set()
            self.window_opened = trio.Event()

    async def until(self, predicate: Any) -> None:
        """Pump until `predicate()` holds or the server closed the connection."""
        while not predicate() and not self.closed:
            await self.pump()

    async def finish(self, stream_id: int) -> StreamState:
        """Pump until the stream ended or was reset."""
        await self.until(lambda: self.streams[stream_id].done)
        return self.streams[stream_id]
