"""Refused download attempts, counted per minute and written in batches.

Attempts refused before any token could be trusted (no token, a wrong one, a token
without the reader role) and attempts over a token's limits come in floods, at a rate
the client chooses. Each is counted in memory under (action, actor, address, result,
minute) and `AuditAggregator.run` adds the counts to their minute's audit row every
`flush_interval_s` (`INSERT … ON CONFLICT DO UPDATE SET count = count + n`): the audit
log grows by at most one row per key and minute, and the database by one upsert per
key and flush, however fast the flood. A refused attempt is answered without waiting
for the database; its count is durable within `flush_interval_s` (and at shutdown).

Memory is bounded too: past `max_keys` distinct keys waiting, new keys count under the
address "*" (the flood's total stays right; only its spread is summarised).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from cj.db import Database, DatabaseUnavailable
from cj.db.audit import AggregateCount, AggregateKey, audit_aggregated

log = structlog.get_logger(__name__)

DEFAULT_MAX_KEYS = 10_000
OVERFLOW_ADDRESS = "*"
_SHUTDOWN_FLUSH_S = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


class AuditAggregator:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval_s: float,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._db = db
        self._flush_interval_s = flush_interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._pending: dict[AggregateKey, AggregateCount] = {}
        self._flushing = trio.Lock()

    def note(
        self,
        *,
        action: str,
        actor: str,
        address: str,
        result: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Count one attempt (no I/O: it is written by the next flush)."""
        at = self._clock()
        minute = at.replace(second=0, microsecond=0)
        key = AggregateKey(action, actor, address, result, minute)
        if key not in self._pending and len(self._pending) >= self._max_keys:
            key = AggregateKey(action, actor, OVERFLOW_ADDRESS, result, minute)
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = AggregateCount(1, at, dict(detail or {}))
        else:
            entry.count += 1
            entry.last_at = at
            if detail:
                entry.detail = dict(detail)

    @property
    def pending(self) -> int:
        """Attempts counted but not written yet."""
        return sum(entry.count for entry in self._pending.values())

    async def flush(self) -> None:
        """Write what was counted; on failure keep it for the next flush."""
        async with self._flushing:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                await self._db.run(lambda conn: audit_aggregated(conn, batch))
            except (DatabaseUnavailable, Exception) as exc:
                log.warning("audit_flush_failed", keys=len(batch), error=str(exc))
                for key, entry in batch.items():
                    kept = self._pending.get(key)
                    if kept is None:
                        if len(self._pending) < self._max_keys:
                            self._pending[key] = entry
                    else:
                        kept.count += entry.count
                raise

    async def run(self) -> None:
        """Flush every `flush_interval_s` until cancelled, then once more."""
        try:
            while True:
                await trio.sleep(self._flush_interval_s)
                try:
                    await self.flush()
                except Exception:  # logged by flush; the counts wait for the next one
                    pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_SHUTDOWN_FLUSH_S):
                try:
                    await self.flush()
                except Exception:
                    log.error("audit_counts_lost_at_shutdown", attempts=self.pending)
