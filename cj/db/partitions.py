"""The monthly partitions of `calls` (sql/0006): made ahead, on demand, and dropped.

    ensure_partitions(conn, {call.started_at for call in batch})  # ingest, before writing
    made = maintain(conn)                                          # cj-api, hourly

A month's partition is made the first time ingest writes a call of that month (a backfill
of old CDRs included); calls of months that get none (before 2000, more than a year
ahead) land in `calls_default` and are never refused. `maintain` makes the next months
ahead and gives every month found in the default its own partition (moving its rows).
`purge_partition` deletes a month's CDRs for retention (cj/cdr_retention.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog
import trio

from cj.db.audit import audit
from cj.db.errors import DatabaseError
from cj.db.pool import Connection, Database

log = structlog.get_logger(__name__)

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


# --- CDR retention: whole months --------------------------------------------------------

# A call whose row must stay: under a legal hold, or with a recording whose objects are
# still to delete (being encoded, or a purge that did not finish).
_BLOCKED = """(EXISTS (SELECT 1 FROM legal_holds h WHERE h.call_uuid = p.uuid)
      OR EXISTS (SELECT 1 FROM recordings r WHERE r.call_uuid = p.uuid
                  AND (r.status <> 'purged' OR r.key IS NOT NULL
                       OR r.original_key IS NOT NULL)))"""
# What a dry run counts as kept: the audio purge that runs first would delete the rest.
_BLOCKED_AFTER_AUDIO = """(EXISTS (SELECT 1 FROM legal_holds h WHERE h.call_uuid = p.uuid)
      OR EXISTS (SELECT 1 FROM recordings r WHERE r.call_uuid = p.uuid
                  AND r.status IN ('uploaded', 'encoding')))"""


@dataclass(frozen=True)
class MonthPurge:
    """What purging one partition's CDRs did (or would do)."""

    partition: str
    calls: int  # calls deleted
    kept: int  # calls kept: held, or with audio still to delete
    dropped: bool  # the whole partition went


def purge_partition(
    conn: Connection,
    partition: Partition,
    *,
    before: datetime,
    actor: str,
    dry_run: bool = False,
) -> MonthPurge:
    """Delete the calls of `partition` that started before `before`, with their keys and
    recording rows, except held calls and calls whose audio is still stored (purge the
    recordings first). A month with none to keep is dropped whole (one DROP TABLE, no
    row-by-row delete of the calls themselves).

    One transaction: `legal_holds` is locked against new holds until it commits, so a
    hold placed meanwhile waits and then finds its call still there, or gone before it.
    """
    name = partition.name
    table = f'"{name}"'  # a name from pg_class: calls_YYYY_MM or calls_default
    whole = partition.upper is not None and partition.upper <= before
    in_range = "true" if whole else "p.started_at < %(before)s"
    params = {"before": before}
    conn.execute("LOCK TABLE legal_holds IN SHARE MODE")
    blocked = _BLOCKED_AFTER_AUDIO if dry_run else _BLOCKED
    counted = conn.execute(
        f"""SELECT count(*) FILTER (WHERE NOT {blocked}) AS calls,
                   count(*) FILTER (WHERE {blocked}) AS kept
              FROM {table} p WHERE {in_range}""",
        params,
    ).fetchone()
    assert counted is not None
    calls, kept = int(counted["calls"]), int(counted["kept"])
    drop = whole and kept == 0 and name != DEFAULT_PARTITION
    result = MonthPurge(name, calls, kept, drop)
    if dry_run or calls == 0:
        return result
    conn.execute("SELECT set_config('cj.partition_maintenance', 'on', true)")
    if drop:
        conn.execute(
            f"""DELETE FROM call_keys k USING {table} p
                 WHERE k.uuid = p.uuid AND k.started_at = p.started_at"""
        )
        conn.execute(f"DROP TABLE {table}")
    else:
        conn.execute(
            f"""DELETE FROM call_keys k USING {table} p
                 WHERE k.uuid = p.uuid AND k.started_at = p.started_at
                   AND {in_range} AND NOT {_BLOCKED}""",
            params,
        )
        conn.execute(f"DELETE FROM {table} p WHERE {in_range} AND NOT {_BLOCKED}", params)
    conn.execute("SELECT set_config('cj.partition_maintenance', '', true)")
    audit(
        conn,
        actor=actor,
        action="cdr_purge",
        call_uuid=None,
        result="dropped" if drop else "deleted",
        detail={"partition": name, "calls": calls, "kept": kept, "before": before.isoformat()},
    )
    return result


async def run_partition_maintenance(
    db: Database,
    *,
    interval_s: float = 3600.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`maintain` now and every `interval_s` until cancelled (cj-api runs it): the next
    months' partitions exist before their first call, and a backfill that landed in the
    default partition gets its months. A database that is down is retried next time.
    Started once the first pass is over (done or failed)."""
    while True:
        try:
            made = await db.run(maintain)
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("call_partitions_failed", error=str(exc))
        else:
            if made:
                log.info("call_partitions_made", count=made)
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        await trio.sleep(interval_s)
