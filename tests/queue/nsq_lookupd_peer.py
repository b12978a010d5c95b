"""A tiny stand-in for nsqlookupd's HTTP `/lookup` endpoint (trio + h11). Not nsqlookupd.

It answers `GET /lookup?topic=NAME` the way nsqlookupd does: 1.x shape
`{"channels": […], "producers": [{"broadcast_address", "tcp_port", …}]}`, or with
`legacy = True` the pre-1.0 envelope `{"status_code": 200, "status_txt": "OK",
"data": {…}}`; an unknown topic is 404 `{"message": "TOPIC_NOT_FOUND"}` (legacy: 500
with status_txt TOPIC_NOT_FOUND). Real nsqlookupd is exercised in docker compose.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import h11
import trio


class LookupdPeer:
    """`port = await nursery.start(lookupd.serve)`; set `producers[topic]` to addresses."""

    def __init__(self) -> None:
        self.producers: dict[str, list[str]] = {}
        self.legacy = False
        self.failing = False  # answer 500 to everything
        self.requests = 0
        self.port = 0
        self._changed = trio.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def wait_for_requests(self, count: int) -> None:
        """Return once `count` lookups in total have been answered."""
        while self.requests < count:
            await self._changed.wait()

    def answer(self, target: str) -> tuple[int, bytes]:
        """Status and JSON body for a request target like `/lookup?topic=x`."""
        if self.failing:
            return 500, b'{"message":"INTERNAL_ERROR"}'
        url = urlsplit(target)
        if url.path != "/lookup":
            return 404, b'{"message":"NOT_FOUND"}'
        topics = parse_qs(url.query).get("topic", [])
        if not topics:
            return 400, b'{"message":"MISSING_ARG_TOPIC"}'
        addresses = self.producers.get(topics[0])
        if addresses is None:
            if self.legacy:
                doc = {"status_code": 500, "status_txt": "TOPIC_NOT_FOUND", "data": None}
                return 500, json.dumps(doc).encode()
            return 404, b'{"message":"TOPIC_NOT_FOUND"}'
        producers = []
        for address in addresses:
            host, _, port = address.rpartition(":")
            producers.append(
                {
                    "remote_address": f"{host}:{int(port) + 10000}",
                    "hostname": host,
                    "broadcast_address": host,
                    "tcp_port": int(port),
                    "http_port": int(port) + 1,
                    "version": "1.3.0",
                }
            )
        data = {"channels": [], "producers": producers}
        if self.legacy:
            return 200, json.dumps({"status_code": 200, "status_txt": "OK", "data": data}).encode()
        return 200, json.dumps(data).encode()

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    status, body = self.answer(event.target.decode())
                    headers = [
                        ("content-type", "application/json; charset=utf-8"),
                        ("content-length", str(len(body))),
                    ]
                    parts = [
                        connection.send(h11.Response(status_code=status, headers=headers)),
                        connection.send(h11.Data(data=body)),
                        connection.send(h11.EndOfMessage()),
                    ]
                    await stream.send_all(b"".join(part for part in parts if part))
                    self.requests += 1
                    self._changed.set()
                    self._changed = trio.Event()
                elif event is h11.PAUSED:  # request and response done: keep-alive
                    connection.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)
