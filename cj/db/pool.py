"""PostgreSQL from Trio: a psycopg 3 pool driven through worker threads.

psycopg's blocking API is the fast path for small queries; each `Database.run` takes a
pooled connection in a worker thread (at most `pool_size` threads, bounded by a
`CapacityLimiter`), runs one function in one transaction and gives the connection
back. When the calling Trio task is cancelled, the query is cancelled on the server
(`cancel_safe`) and the call returns only once the connection is back in the pool, so
no query outlives its caller and no connection is left mid-transaction.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
import structlog
import trio
from psycopg.rows import DictRow, dict_row

from cj.config import DatabaseConfig
from cj.db.errors import DatabaseError, DatabaseUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[DictRow]

# How long a cancelled call waits for the server to acknowledge the cancel request.
CANCEL_TIMEOUT_S = 5.0


class Database:
    """A connection pool usable from Trio. Create with `open_database`."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Connection], size: int) -> None:
        self._pool = pool
        self._limiter = trio.CapacityLimiter(size)
        self._trio_token = trio.lowlevel.current_trio_token()

    @property
    def conninfo(self) -> str:
        conninfo = self._pool.conninfo
        return conninfo if isinstance(conninfo, str) else conninfo()

    async def run(self, fn: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """Run `fn(conn)` in a worker thread inside one transaction; return its result.

        The transaction commits when `fn` returns and rolls back when it raises. With
        `autocommit`, each statement of `fn` is its own transaction instead: for reads
        whose statements need no common snapshot (READ COMMITTED gives each statement
        its own anyway), it saves the BEGIN and COMMIT round trips.
        """
        slot = _Slot()
        trio_token = self._trio_token
        finished = trio.Event()

        def in_thread() -> T:
            with slot.lock:
                if slot.cancelled:  # the caller gave up while we waited for a thread
                    raise _CallerGone
                slot.started = True
            try:
                with self._pool.connection() as conn:
                    with slot.lock:
                        if slot.cancelled:  # the caller gave up before we began
                            raise _CallerGone
                        slot.conn = conn
                    conn.autocommit = autocommit  # every run says: none inherits it
                    try:
                        return fn(conn)
                    finally:
                        with slot.lock:
                            slot.conn = None
                        _last_used[conn] = time.monotonic()
            finally:
                trio_token.run_sync_soon(finished.set)

        try:
            return await trio.to_thread.run_sync(
                _translating(in_thread), limiter=self._limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._cancel_in_flight(slot, finished)
            raise

    async def _cancel_in_flight(self, slot: _Slot, finished: trio.Event) -> None:
        with slot.lock:
            slot.cancelled = True
            conn = slot.conn
            started = slot.started
        if not started:
            # Cancelled while waiting for a worker thread: nothing ran, nothing to wait
            # for (a thread starting now sees `cancelled` and returns at once).
            return
        if conn is not None:
            try:
                await trio.to_thread.run_sync(lambda: conn.cancel_safe(timeout=CANCEL_TIMEOUT_S))
            except Exception as exc:  # the query may have just finished: nothing to cancel
                log.debug("query_cancel_failed", error=str(exc))
        with trio.move_on_after(CANCEL_TIMEOUT_S * 2) as scope:
            await finished.wait()
        if scope.cancelled_caught:
            log.warning("cancelled_query_still_running", timeout_s=CANCEL_TIMEOUT_S * 2)

    async def check(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query succeeds."""
        await self.run(lambda conn: conn.execute("SELECT 1").fetchone())


# A connection idle for longer than this is pinged before use, so one left dead by a
# database restart is replaced rather than failing the next query. Busy connections
# skip the ping: it would cost a round trip on every query.
IDLE_CHECK_AFTER_S = 2.0
_last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()


def _check_if_idle(conn: Connection) -> None:
    last = _last_used.get(conn)
    if last is None or time.monotonic() - last > IDLE_CHECK_AFTER_S:
        psycopg_pool.ConnectionPool.check_connection(conn)


class _CallerGone(Exception):
    """Raised in a worker thread whose Trio caller was cancelled; nobody reads it."""


class _Slot:
    """Shared between the Trio task and its worker thread: the connection in use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        self.cancelled = False
        self.started = False


def _translating(fn: Callable[[], T]) -> Callable[[], T]:
    def wrapper() -> T:
        try:
            return fn()
        except psycopg_pool.PoolTimeout as exc:
            raise DatabaseUnavailable(f"no database connection available: {exc}") from exc
        except psycopg.OperationalError as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc

    return wrapper


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_kwargs(config: DatabaseConfig) -> dict[str, Any]:
    options = []
    if config.statement_timeout_s:
        options.append(f"-c statement_timeout={int(config.statement_timeout_s * 1000)}")
    return {
        "connect_timeout": max(1, int(config.connect_timeout_s)),
        "options": " ".join(options) or None,
        "application_name": "calljournal",
        "row_factory": dict_row,
    }


@asynccontextmanager
async def open_database(
    config: DatabaseConfig,
    *,
    wait: bool = True,
    name: str = "calljournal",
    size: int | None = None,
) -> AsyncIterator[Database]:
    """Open a pool for the lifetime of the block (`size` connections, default
    `config.pool_size`).

    `wait=True` fails fast (DatabaseUnavailable) when PostgreSQL cannot be reached
    within the connect timeout; `wait=False` starts anyway and lets queries fail
    until it comes up (for daemons that should ride out a database restart).
    """
    kwargs = {k: v for k, v in connection_kwargs(config).items() if v is not None}
    kwargs["application_name"] = name
    pool: psycopg_pool.ConnectionPool[Connection] = psycopg_pool.ConnectionPool(
        config.url.get_secret_value(),
        min_size=1,
        max_size=size or config.pool_size,
        kwargs=kwargs,
        open=False,
        check=_check_if_idle,
        timeout=config.connect_timeout_s,
        name=name,
    )

    def open_pool() -> None:
        pool.open(wait=wait, timeout=config.connect_timeout_s)

    try:
        await trio.to_thread.run_sync(_translating(open_pool))
    except DatabaseError:
        await trio.to_thread.run_sync(pool.close)
        raise
    try:
        yield Database(pool, size or config.pool_size)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: pool.close(timeout=5.0))
