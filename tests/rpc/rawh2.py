"""A bare HTTP/2 gRPC client (h2 over a Trio socket) for what real clients never send:
malformed headers, or a `grpc-timeout` without a client-side deadline of its own."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import h2.config  # type: ignore[import-untyped]
import h2.connection  # type: ignore[import-untyped]
import h2.events  # type: ignore[import-untyped]
import trio
from google.protobuf.message import Message


class RawGrpcClient:
    """One connection; `call()` sends a request and returns the response's headers and
    trailers (all merged) once the stream ends."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._stream: trio.SocketStream | None = None
        self.messages: list[bytes] = []  # the last response's messages, serialized

    async def __aenter__(self) -> RawGrpcClient:
        self._stream = await trio.open_tcp_stream("127.0.0.1", self._port)
        self._conn.initiate_connection()
        await self._flush()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stream is not None
        await self._stream.aclose()

    async def _flush(self) -> None:
        assert self._stream is not None
        data = self._conn.data_to_send()
        if data:
            await self._stream.send_all(data)

    async def start_and_drop(
        self,
        path: str,
        message: Message,
        headers: Sequence[tuple[str, str]] = (),
        *,
        after_bytes: int,
    ) -> int:
        """Send `message`, read at least `after_bytes` of the response's body (under
        HTTP/2's initial window of 65,535: it is never widened), then drop the TCP
        connection (no RST_STREAM, no GOAWAY): a client that goes away mid-stream.
        Returns the body bytes seen."""
        assert self._stream is not None
        stream_id = self._conn.get_next_available_stream_id()
        self._conn.send_headers(stream_id, self._request_headers(path, headers))
        self._conn.send_data(stream_id, _frame(message), end_stream=True)
        await self._flush()
        seen = 0
        while seen < after_bytes:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self._conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    seen += len(event.data)
            await self._flush()  # SETTINGS acknowledged; the body's window left as it is
        await self._stream.aclose()
        return seen

    def _request_headers(
        self, path: str, headers: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        return [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"127.0.0.1:{self._port}"),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            *headers,
        ]

    async def call(
        self,
        path: str,
        message: Message | bytes | Sequence[Message],
        headers: Sequence[tuple[str, str]] = (),
    ) -> dict[str, str]:
        """Send `message` (or several), end the request; return the response's headers
        and trailers. The response's messages are left in `self.messages`."""
        assert self._stream is not None
        stream_id = self._conn.get_next_available_stream_id()
        self._conn.send_headers(stream_id, self._request_headers(path, headers))
        items = [message] if isinstance(message, bytes | Message) else list(message)
        self._conn.send_data(stream_id, b"".join(map(_frame, items)), end_stream=True)
        await self._flush()
        received: dict[str, str] = {}
        data_in = b""
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self._conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                    if event.stream_id == stream_id:
                        data_in += event.data
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    received.update(dict(event.headers))
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    await self._flush()
                    self.messages = _unframe(data_in)
                    return received
            await self._flush()


def _frame(message: Message | bytes) -> bytes:
    body = message if isinstance(message, bytes) else message.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def _unframe(data: bytes) -> list[bytes]:
    """gRPC length-prefixed messages (uncompressed) out of a response body."""
    messages = []
    while data:
        length = int.from_bytes(data[1:5], "big")
        messages.append(data[5 : 5 + length])
        data = data[5 + length :]
    return messages
