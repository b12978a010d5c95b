"""Serving the REST app with hypercorn's protocol machinery, inside the caller's nursery.

`serve_rest` binds, reports the bound port through `task_status` (so `port=0` works in
tests), serves HTTP/1.1 and HTTP/2 (h2 over TLS via ALPN; h2c upgrade in clear), and
shuts down gracefully when `shutdown_trigger` returns: it stops accepting, lets requests
in flight finish for `grace_period_s`, then cancels what is left.

We run hypercorn's per-connection `TCPServer` under our own accept loop rather than
`hypercorn.trio.serve`, for one reason: there, an exception escaping one connection
(e.g. hypercorn's h11 protocol racing a client that hangs up while an early answer is
sent: `BusyResourceError`) ends the whole server. Here it ends that connection only,
and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

from cj.errors import single_leaf
from cj.logs import safe_error_text
from cj_api.sockets import open_reuse_port_listeners

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
    h2_max_concurrent_streams: int = 32,
    keep_alive_timeout_s: float = 5.0,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `host:port` until `shutdown_trigger` returns (or we are cancelled).

    Reports the bound port (useful with `port=0`) once the socket listens. TLS is on when
    both `tls_cert_file` and `tls_key_file` are given (PEM files, as in `ApiConfig`).
    Cancellation stops at once; the trigger is the graceful way.

    Bounds: at most `h2_max_concurrent_streams` requests per HTTP/2 connection (each
    buffers at most `BODY_BUFFER_BYTES` of its body), frames of 16 KiB, header blocks of
    16 KiB (431 beyond), TLS handshakes of 10 s, and a connection with no request open
    for `keep_alive_timeout_s` is closed (a connection that never sends a request too).
    No access log: the app logs each request without its headers. `reuse_port` binds
    with SO_REUSEPORT, to share the port with other worker processes (cj_api.sockets).
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
    config.h2_max_concurrent_streams = h2_max_concurrent_streams
    config.h2_max_header_list_size = MAX_REQUEST_HEAD_BYTES
    config.h2_max_inbound_frame_size = 16 * 1024
    config.keep_alive_timeout = keep_alive_timeout_s
    config.ssl_handshake_timeout = 10.0

    tls = tls_cert_file is not None
    wrapped = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
        await open_reuse_port_listeners(host, port)
        if reuse_port
        else await trio.open_tcp_listeners(port, host=host)
    )
    if tls:
        ssl_context = config.create_ssl_context()
        assert ssl_context is not None  # certfile and keyfile are set
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners
        ]
    bound_port = _port_of(listeners[0])
    url = f"{'https' if tls else 'http'}://{_bind_address(host, bound_port)}"

    async def handle(stream: trio.abc.Stream) -> None:
        connection = TCPServer(
            wrapped, config, context, ConnectionState(lifespan_state.copy()), stream
        )
        try:
            await connection.run()
        except Exception as exc:
            leaf = single_leaf(exc)
            # Never the exception's repr: protocol errors may quote header values.
            log.warning("rest_connection_failed", error=safe_error_text(leaf))

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptors:
                acceptors.start_soon(
                    partial(trio.serve_listeners, handle, listeners, handler_nursery=connections)
                )
                log.info("rest_listening", url=url, tls=tls)
                task_status.started(bound_port)
                if shutdown_trigger is None:
                    await trio.sleep_forever()
                await shutdown_trigger()
                acceptors.cancel_scope.cancel()  # stop accepting; close the listeners
            # Connections finish their requests (and close, since terminated is set)
            # within the grace period; what is left is cancelled.
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + grace_period_s
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
    log.info("rest_stopped", url=url)


def _port_of(listener: trio.abc.Listener[trio.abc.Stream]) -> int:
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    assert isinstance(inner, trio.SocketListener)
    return int(inner.socket.getsockname()[1])


def _bind_address(host: str, port: int) -> str:
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port}")
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # an IPv6 literal
    return f"{host}:{port}"
