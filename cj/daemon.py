"""Running a daemon's `serve` as a process: logging, signals, exit status.

Every daemon has `async def serve(settings, *, shutdown, task_status)`. The first
SIGTERM or SIGINT sets `shutdown` (stop taking work, finish what is in flight within
the grace period); a second one cancels everything at once.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import structlog
import trio

from cj.config import ConfigError, LoggingConfig
from cj.errors import single_leaf
from cj.logs import configure_logging, register_settings_secrets

log = structlog.get_logger(__name__)

S = TypeVar("S", contravariant=True)


class Serve(Protocol[S]):
    def __call__(
        self,
        settings: S,
        *,
        shutdown: trio.Event | None = ...,
        task_status: trio.TaskStatus[Any] = ...,
    ) -> Awaitable[None]: ...


def run_daemon(name: str, serve: Serve[S], settings: S, logging: LoggingConfig) -> int:
    """Run `serve` until it returns after a graceful shutdown; return the exit status."""
    configure_logging(logging)
    register_settings_secrets(settings)
    prefer_event_loop_latency()
    try:
        trio.run(_supervise, name, serve, settings)
    except KeyboardInterrupt:  # pragma: no cover - a signal before our handler was installed
        return 130
    except Exception as exc:
        root = single_leaf(exc)
        if isinstance(root, ConfigError):  # the operator's to fix; a traceback won't help
            log.error("refused_to_start", daemon=name, error=str(root))
        else:
            log.error("failed", daemon=name, error=f"{type(root).__name__}: {root}", exc_info=exc)
        return 1
    log.info("stopped", daemon=name)
    return 0


# How long a thread may hold the GIL before it must offer it (CPython's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.001


def prefer_event_loop_latency() -> None:
    """Hand the GIL over more often.

    A daemon's event loop shares the interpreter with worker threads doing Python work
    (psycopg adapting a batch of 200 calls, boto3, audio blocks). With the default 5 ms
    a request waiting for the loop can stall behind several such slices; 1 ms cut the
    REST search p99 under ingest load by more than half (tests/e2e/test_load.py).
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


async def _supervise(name: str, serve: Serve[S], settings: S) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown, nursery.cancel_scope)

        async def run(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            await serve(settings, shutdown=shutdown, task_status=task_status)
            nursery.cancel_scope.cancel()  # served and drained: stop watching signals

        await nursery.start(run)
        log.info("running", daemon=name)


async def _watch_signals(shutdown: trio.Event, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                shutdown.set()
            else:
                log.warning("forced_shutdown", signal=signal.Signals(signum).name)
                everything.cancel()
                return
