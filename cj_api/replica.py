"""Reads from a streaming replica (`database.read_url`), falling back to the primary.

Searches and GetCall may be answered by a replica a little behind the primary; anything
that must see its own write or decides privacy (ingest, CheckCalls, the download
decision, audits) uses the primary pool and never comes here.

When the replica cannot be reached, reads go to the primary instead: the first failure
is logged once (`replica_unavailable`), every read so served counts in
`cj_api_replica_fallback_reads`, and the replica is tried again after
`REPLICA_RETRY_S` (logged `replica_recovered` when it answers again). A replica that is
reachable but behind is still used: searches may lag, they never leak a call turned
private, because downloads decide on the primary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import structlog
from prometheus_client import Counter

from cj.config import DatabaseConfig
from cj.db import Connection, Database, DatabaseUnavailable, open_database

log = structlog.get_logger(__name__)

T = TypeVar("T")

# After the replica failed, reads go straight to the primary for this long (a query to
# an unreachable replica waits for `database.connect_timeout_s` before failing).
REPLICA_RETRY_S = 5.0


class ReplicaReads(Database):
    """A `Database` whose reads go to `replica`, or to `primary` while it is down."""

    def __init__(
        self,
        replica: Database,
        primary: Database,
        fallbacks: Counter,
        *,
        retry_s: float = REPLICA_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Deliberately not calling Database.__init__: this wraps two pools, owns none.
        self._replica = replica
        self._primary = primary
        self._fallbacks = fallbacks
        self._retry_s = retry_s
        self._clock = clock
        self._down_since: float | None = None

    @property
    def conninfo(self) -> str:
        return self._replica.conninfo

    @property
    def replica_down(self) -> bool:
        return self._down_since is not None

    async def run(self, fn: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        if self._down_since is None or self._clock() - self._down_since >= self._retry_s:
            try:
                result = await self._replica.run(fn, autocommit=autocommit)
            except DatabaseUnavailable as exc:
                if self._down_since is None:
                    log.warning(
                        "replica_unavailable",
                        error=str(exc),
                        fallback="primary",
                        retry_s=self._retry_s,
                    )
                self._down_since = self._clock()
            else:
                if self._down_since is not None:
                    log.info("replica_recovered")
                    self._down_since = None
                return result
        self._fallbacks.inc()
        return await self._primary.run(fn, autocommit=autocommit)

    async def check(self) -> None:
        """Ready when the primary answers (the replica is optional: reads fall back)."""
        await self._primary.check()


@dataclass
class ReadPool:
    """cj-api's read pool, opened before the primary's metrics exist: `bind` finishes it."""

    pool: Database
    is_replica: bool

    def bind(self, primary: Database, fallbacks: Counter) -> Database:
        """The Database searches and GetCall use: the replica with fallback, or the pool."""
        return ReplicaReads(self.pool, primary, fallbacks) if self.is_replica else self.pool


@asynccontextmanager
async def open_read_database(config: DatabaseConfig) -> AsyncIterator[ReadPool]:
    """`database.read_pool_size` connections to `database.read_url`, else to the primary.

    The replica pool opens without waiting, so cj-api starts while the replica is down.
    """
    if config.read_url is None:
        target, name = config, "cj-api-read"
    else:
        target, name = dataclasses.replace(config, url=config.read_url), "cj-api-replica"
    async with open_database(target, wait=False, name=name, size=config.read_pool_size) as db:
        yield ReadPool(db, is_replica=config.read_url is not None)
