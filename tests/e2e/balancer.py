"""A tiny TCP (L4) balancer in Trio, for tests that put several cj-api processes
behind one address.

Each accepted connection goes to the next backend in turn; a backend that refuses
the connection is skipped (the next one is tried), so once an API dies new
connections go to the live ones. Bytes are copied both ways until either side
closes, then both are closed: a client whose backend died sees its connection drop
and reconnects, landing on a live backend.

    balancer = Balancer([("127.0.0.1", 50051), ("127.0.0.1", 50052)])
    port = await nursery.start(balancer.serve)
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import trio

CHUNK = 64 * 1024


@dataclass
class Balancer:
    backends: list[tuple[str, int]]
    host: str = "127.0.0.1"
    # Per backend ("host:port"): connections forwarded, and connection attempts refused.
    forwarded: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    rejected: int = 0  # client connections closed because no backend answered
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free port of `host` (reported to `nursery.start`) until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        port = int(listeners[0].socket.getsockname()[1])
        task_status.started(port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            upstream = await self._connect()
            if upstream is None:
                self.rejected += 1
                return
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)

    async def _connect(self) -> trio.SocketStream | None:
        first = next(self._turn)
        for i in range(len(self.backends)):
            host, port = self.backends[(first + i) % len(self.backends)]
            name = f"{host}:{port}"
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                self.refused[name] += 1
                continue
            self.forwarded[name] += 1
            return stream
        return None


async def _pump(
    source: trio.SocketStream, target: trio.SocketStream, scope: trio.CancelScope
) -> None:
    try:
        while data := await source.receive_some(CHUNK):
            await target.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        scope.cancel()  # either side gone: close both
