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

    async def call(
        self, path: str, message: Message | bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> dict[str, str]:
        assert self._stream is not None
        stream_id = self._conn.get_next_available_stream_id()
        self._conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", f"127.0.0.1:{self._port}"),
                ("te", "trailers"),
                ("content-type", "application/grpc"),
                *headers,
            ],
        )
        body = message if isinstance(message, bytes) else message.SerializeToString()
        self._conn.send_data(
            stream_id, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True
        )
        await self._flush()
        received: dict[str, str] = {}
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self._conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    received.update(dict(event.headers))
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    await self._flush()
                    return received
            await self._flush()
