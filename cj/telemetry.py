"""`/metrics` and `/healthz` for the daemons that have no REST server (encoder, agent).

    port = await nursery.start(serve_telemetry, "127.0.0.1", 9102, registry, health)

A small HTTP/1.1 server (h11 over Trio sockets): `GET /metrics` answers the registry in
Prometheus' text format, `GET /healthz` answers `health()` as JSON with 200 when healthy
and 503 when not, anything else 404/405. One request per connection, request heads up to
`MAX_HEAD_BYTES`, `READ_TIMEOUT_S` for the whole request, so a scraper that hangs holds
nothing for long. Scrapes run while the daemon works: the registry's collectors must be
cheap (read counters; directory scans are bounded by their collectors).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import structlog
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Health:
    """What `/healthz` answers: healthy or not, and why, as named checks."""

    healthy: bool
    checks: dict[str, Any] = field(default_factory=dict)


HealthCheck = Callable[[], Awaitable[Health]]


async def serve_telemetry(
    host: str,
    port: int,
    registry: CollectorRegistry,
    health: HealthCheck,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; `task_status.started(bound_port)` once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("telemetry_listening", host=host, port=bound)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handle(stream: trio.SocketStream) -> None:
        async with limiter:
            try:
                with trio.move_on_after(READ_TIMEOUT_S):
                    await _answer(stream, registry, health)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                pass
            finally:
                await trio.aclose_forcefully(stream)

    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)


async def _answer(
    stream: trio.SocketStream, registry: CollectorRegistry, health: HealthCheck
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    request = await _read_request(stream, conn)
    if request is None:
        return
    target = request.target.decode("ascii", "replace").split("?", 1)[0]
    method = request.method.upper()
    if target not in ("/metrics", "/healthz"):
        status, content_type, body = 404, "application/json", b'{"error": "not found"}'
    elif method not in (b"GET", b"HEAD"):
        status, content_type, body = 405, "application/json", b'{"error": "use GET"}'
    elif target == "/metrics":
        status, content_type = 200, CONTENT_TYPE_LATEST
        body = generate_latest(registry)
    else:
        report = await health()
        status = 200 if report.healthy else 503
        content_type = "application/json"
        body = json.dumps(
            {"status": "ok" if report.healthy else "unhealthy", "checks": report.checks},
            default=str,
        ).encode()
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("connection", "close"),
        ("cache-control", "no-store"),
    ]
    data = conn.send(h11.Response(status_code=status, headers=headers))
    if method != b"HEAD":
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
    data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
    await stream.send_all(data)


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.receive_some(MAX_HEAD_BYTES)
            conn.receive_data(chunk)
            if not chunk:
                return None
            continue
        if isinstance(event, h11.Request):
            return event
        return None
