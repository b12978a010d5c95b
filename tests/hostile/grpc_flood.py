"""The memory attack of issue 11 (item 4), runnable against any cj-api gRPC port.

Each connection opens `streams` calls of `method` and sends, on each, the length prefix
of a `declared`-byte message followed by `send` bytes of it, as fast as the server's
flow control lets it, whatever the server answers meanwhile. The issue's attack:
3 connections x 34 streams, 31 MiB of a 32 MiB SearchByPhone request, a reader token.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from tests.hostile.grpc_raw import RawGrpcPeer

MiB = 1024 * 1024
_BLOCK = bytes(MiB)


@dataclass
class FloodResult:
    bytes_sent: int = 0
    streams_answered: int = 0  # the server ended them (a status) ...
    streams_reset: int = 0  # ... or reset them (refused, or we broke a rule)
    statuses: dict[str, int] | None = None


async def flood_connection(
    port: int,
    token: str,
    result: FloodResult,
    *,
    method: str = "SearchByPhone",
    streams: int = 34,
    declared: int = 32 * MiB,
    send: int = 31 * MiB,
    hold: trio.Event | None = None,
) -> None:
    """One attacking connection; returns when every stream sent `send` bytes or was
    reset or, with `hold`, once `hold` is set (the connection is kept till then, with
    whatever the server holds for it, even if the server stopped granting credit)."""
    async with RawGrpcPeer(port) as peer:
        ids = [peer.start(method, token) for _ in range(streams)]
        prefix = b"\x00" + declared.to_bytes(4, "big")
        remaining = dict.fromkeys(ids, send + len(prefix))
        pending_prefix = set(ids)
        written = trio.Event()

        async def read() -> None:
            while not peer.closed:
                await peer.pump()

        async def write() -> None:
            while remaining and not peer.closed:
                opened = peer.window_opened
                for stream_id in list(remaining):
                    if peer.streams[stream_id].reset_code is not None:
                        del remaining[stream_id]
                        continue
                    if stream_id in pending_prefix:
                        if peer.send(stream_id, prefix) == len(prefix):
                            pending_prefix.discard(stream_id)
                            remaining[stream_id] -= len(prefix)
                        continue
                    sent = peer.send(stream_id, _BLOCK[: min(MiB, remaining[stream_id])])
                    result.bytes_sent += sent
                    remaining[stream_id] -= sent
                    if remaining[stream_id] <= 0:
                        del remaining[stream_id]
                await peer.flush()
                if remaining:
                    await opened.wait()  # no credit left: wait for a WINDOW_UPDATE
            written.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)
            # Keep the connection (and whatever the server holds for it) until told.
            await (hold.wait() if hold is not None else written.wait())
            nursery.cancel_scope.cancel()
        statuses: dict[str, int] = result.statuses if result.statuses is not None else {}
        for state in peer.streams.values():
            if state.reset_code is not None:
                result.streams_reset += 1
            elif state.ended:
                result.streams_answered += 1
                status = state.status or "?"
                statuses[status] = statuses.get(status, 0) + 1
        result.statuses = statuses
