"""The monthly partitions of `calls` (sql/0006): made ahead, on demand, and dropped.

    ensure_partitions(conn, {call.started_at for call in batch})  # ingest, before writing
    made = maintain(conn)                                          # cj-api, hourly

A month's partition is made the first time ingest writes a call of that month (a backfill
of old CDRs included); calls of months that get none (before 2000, more than a year
ahead) land in `calls_default` and are never refused. `maintain` makes the next months
ahead and gives every month found in the default its own partition (moving its rows).
Dropping whole months for CDR retention is cj/cdr_retention.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cj.db.pool import Connection

DEFAULT_PARTITION = "calls_default"

# Months known to have a partition, per database: ingest asks the server only about a
# month it has not seen (one statement, then never again). A month dropped by retention
# stays "known": a late call of it lands in the default partition, which `maintain`
# splits again. Worker threads share it, hence the lock.
_known: dict[str, set[tuple[int, int]]] = {}
_known_lock = threading.Lock()


def _database(conn: Connection) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def month_of(at: datetime) -> tuple[int, int]:
    at = at.astimezone(UTC)
    return at.year, at.month


def ensure_partitions(conn: Connection, starts: Iterable[datetime]) -> None:
    """Make the month partitions these calls need (in the caller's transaction)."""
    database = _database(conn)
    with _known_lock:
        known = _known.setdefault(database, set())
        wanted = {month_of(at): at for at in starts if month_of(at) not in known}
    if not wanted:
        return
    conn.execute(
        "SELECT cj_calls_create_partition(at) FROM unnest(%s::timestamptz[]) AS at",
        (list(wanted.values()),),
    )
    with _known_lock:
        known.update(wanted)


def forget_known(conn: Connection) -> None:
    """Ask the server again about every month (after partitions were dropped)."""
    with _known_lock:
        _known.pop(_database(conn), None)


def maintain(conn: Connection, *, ahead: int = 3) -> int:
    """Partitions for last month to `ahead` months ahead and for every month found in
    the default partition; how many were made."""
    row = conn.execute("SELECT cj_calls_maintain(%s) AS made", (ahead,)).fetchone()
    return int(row["made"]) if row else 0


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime | None  # None for the default partition
    upper: datetime | None
    rows: int  # the planner's estimate (exact after ANALYZE)
    bytes: int  # table, indexes and TOAST


def list_partitions(conn: Connection) -> list[Partition]:
    """Every partition of `calls`, oldest month first, the default last."""
    rows = conn.execute(
        """SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
                  greatest(c.reltuples, 0)::bigint AS rows,
                  pg_total_relation_size(c.oid) AS bytes
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'calls'::regclass"""
    ).fetchall()
    partitions = []
    for row in rows:
        lower = upper = None
        if row["name"] != DEFAULT_PARTITION:
            bounds = conn.execute(
                "SELECT lo, hi FROM cj_calls_month(%s::timestamptz)",
                (_lower_bound_text(row["bound"]),),
            ).fetchone()
            assert bounds is not None
            lower, upper = bounds["lo"], bounds["hi"]
        partitions.append(Partition(row["name"], lower, upper, int(row["rows"]), row["bytes"]))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: p.lower or far)


def _lower_bound_text(bound: str) -> str:
    # "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')"
    return bound.split("'")[1]
