"""Serving the REST app with hypercorn's Trio worker, inside the caller's nursery.

`serve_rest` binds, reports the bound port through `task_status` (so `port=0` works in
tests), serves HTTP/1.1 and HTTP/2 (h2 over TLS via ALPN; h2c upgrade in clear), and
shuts down gracefully when `shutdown_trigger` returns: it stops accepting, lets requests
in flight finish for `grace_period_s`, then cancels what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

__all__ = ["serve_rest"]

log = structlog.get_logger(__name__)

# Bigger request heads are refused by hypercorn with 431 before they reach the app.
MAX_REQUEST_HEAD_BYTES = 16 * 1024


async def serve_rest(
    app: QuartTrio,
    *,
    host: str,
    port: int,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    grace_period_s: float = 10.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `host:port` until `shutdown_trigger` returns (or we are cancelled).

    Reports the bound port (useful with `port=0`) once the socket listens. TLS is on when
    both `tls_cert_file` and `tls_key_file` are given (PEM files, as in `ApiConfig`).
    Cancellation stops at once; the trigger is the graceful way.
    """
    if (tls_cert_file is None) != (tls_key_file is None):
        raise ValueError("tls_cert_file and tls_key_file must be given together")
    if grace_period_s < 0:
        raise ValueError("grace_period_s must not be negative")
    config = HypercornConfig()
    config.bind = [_bind_address(host, port)]
    if tls_cert_file is not None and tls_key_file is not None:
        config.certfile = str(tls_cert_file)
        config.keyfile = str(tls_key_file)
    config.graceful_timeout = grace_period_s
    config.accesslog = None  # the app logs every request as a structured event
    # hypercorn's own messages go through the standard logging tree, which
    # `cj.logs.configure_logging` renders with structlog.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.h11_max_incomplete_size = MAX_REQUEST_HEAD_BYTES
    config.alpn_protocols = ["h2", "http/1.1"]

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=shutdown_trigger)
        )
        bound = urlsplit(binds[0])
        if bound.port is None:  # pragma: no cover - hypercorn always reports host:port
            raise RuntimeError(f"hypercorn reported an address without a port: {binds[0]!r}")
        log.info("rest_listening", url=binds[0], tls=tls_cert_file is not None)
        task_status.started(bound.port)
    log.info("rest_stopped", url=binds[0])


def _bind_address(host: str, port: int) -> str:
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port}")
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # an IPv6 literal
    return f"{host}:{port}"
