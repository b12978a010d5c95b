"""Ingest: the idempotent upsert of calls, one or a batch at a time.

A call belongs to the source that first stored it; a writer may change only the calls
of its own sources (`allowed`), and private is sticky (DESIGN §9). Functions here are
synchronous and take a connection: they run inside `Database.run` in a worker thread.
"""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cj.db.audit import set_audit_context
from cj.db.keys import MANY_BY_KEY
from cj.db.partitions import ensure_partitions
from cj.db.pool import Connection
from cj.model import Call


class UpsertOutcome(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


_CALL_COLUMNS = (
    "source",
    "caller_number",
    "caller_digits_rev",
    "caller_name",
    "destination_number",
    "destination_digits_rev",
    "caller_extension",
    "destination_extension",
    "direction",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "billsec",
    "hangup_cause",
    "hangup_side",
    "sip_code",
    "private",
    "recording_name",
    "raw",
)

# Ingest never changes a call's source (its owner) once stored.
_UPDATED_COLUMNS = tuple(c for c in _CALL_COLUMNS if c not in ("source", "private"))

# The SQL type of each column, for the arrays a batch is sent in (text otherwise).
_COLUMN_TYPES = {
    "started_at": "timestamptz",
    "answered_at": "timestamptz",
    "ended_at": "timestamptz",
    "duration_s": "int4",
    "billsec": "int4",
    "sip_code": "int4",
    "private": "bool",
}

# One statement per batch, so each decision cannot race: the conflict branch updates
# only a call of a source the writer may write (`allowed`; NULL: the call's own source),
# and only when something changes; private is sticky (an update may set it, never clear
# it). The batch arrives as one array per column, unnested in order. The outer SELECT
# reads each row as it was before the statement (one snapshot for the whole WITH), to
# tell a foreign call from an unchanged one, and an insert from an update (a partitioned
# table cannot return xmax): a row this statement wrote that its snapshot did not hold,
# made by this transaction. A uuid may appear once per batch (ON CONFLICT cannot
# touch a row twice in one statement).
_UPSERT_BATCH = f"""
WITH batch AS (
    SELECT * FROM unnest(
        %(uuid)b::uuid[],
        {", ".join(f"%({c})b::{_COLUMN_TYPES.get(c, 'text')}[]" for c in _CALL_COLUMNS)}
    ) WITH ORDINALITY AS b (uuid, {", ".join(_CALL_COLUMNS)}, ord)
), written AS (
    INSERT INTO calls AS c (uuid, {", ".join(_CALL_COLUMNS)})
    SELECT uuid, {", ".join(f"{c}::jsonb" if c == "raw" else c for c in _CALL_COLUMNS)}
      FROM batch ORDER BY uuid  -- new keys are taken in one order by every writer
    ON CONFLICT (uuid, started_at) DO UPDATE
       SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_COLUMNS)},
           private = c.private OR EXCLUDED.private,
           updated_at = now()
     WHERE c.source = ANY(coalesce(%(allowed)s::text[], ARRAY[EXCLUDED.source]))
       AND ({", ".join(f"c.{c}" for c in _UPDATED_COLUMNS)}, c.private)
           IS DISTINCT FROM
           ({", ".join(f"EXCLUDED.{c}" for c in _UPDATED_COLUMNS)}, c.private OR EXCLUDED.private)
    RETURNING c.uuid, c.created_at = now() AS fresh
)
SELECT CASE WHEN w.fresh THEN before.uuid IS NULL ELSE w.fresh END AS inserted,
       before.source AS owner
  FROM batch AS b
  LEFT JOIN written AS w ON w.uuid = b.uuid
  LEFT JOIN LATERAL (  -- an index probe per row (the LIMIT keeps the planner from
        SELECT uuid, source FROM calls  -- joining the whole table instead)
         WHERE uuid = b.uuid AND started_at = b.started_at LIMIT 1
       ) AS before ON true
 ORDER BY b.ord
"""

# `calls` is partitioned by month of started_at (sql/0006): a uuid is unique through its
# key in call_keys, which this locks for the rest of the transaction (so concurrent
# writers of one call queue up), with the owner of the row the key points to. One
# index probe per uuid, in the order given (sorted: two batches lock in one order), so
# neither a large table nor its stale statistics after a burst of inserts can turn a
# batch into a scan of every partition.
_KEYS = """
SELECT k.uuid, k.started_at, c.source
  FROM unnest(%s::uuid[]) AS wanted (uuid)
  CROSS JOIN LATERAL (
        SELECT uuid, started_at FROM call_keys WHERE uuid = wanted.uuid FOR UPDATE
       ) AS k
  LEFT JOIN LATERAL (
        SELECT source FROM calls WHERE uuid = k.uuid AND started_at = k.started_at LIMIT 1
       ) AS c ON true
"""

# A call re-sent with another start moves to it (into another month's partition, maybe)
# before the upsert applies the rest; the three times move together for the CHECKs.
_MOVE = """
UPDATE calls SET started_at = %(started_at)s, answered_at = %(answered_at)s,
                 ended_at = %(ended_at)s, updated_at = now()
 WHERE uuid = %(uuid)s AND started_at = %(old_started_at)s
"""


@dataclass(frozen=True)
class ForeignCall:
    """The call exists and belongs to `owner`, a source the writer may not write; it
    was left untouched."""

    owner: str


UpsertResult = UpsertOutcome | ForeignCall


def _call_params(call: Call, allowed: Sequence[str]) -> dict[str, Any]:
    return {
        "uuid": call.uuid,
        "allowed": list(allowed),
        "source": call.source,
        "caller_number": call.caller.raw,
        "caller_digits_rev": call.caller.reversed_digits,
        "caller_name": call.caller_name,
        "destination_number": call.destination.raw,
        "destination_digits_rev": call.destination.reversed_digits,
        "caller_extension": call.caller_extension,
        "destination_extension": call.destination_extension,
        "direction": call.direction.value,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "duration_s": call.duration_s,
        "billsec": call.billsec,
        "hangup_cause": call.hangup_cause,
        "hangup_side": call.hangup_side,
        "sip_code": call.sip_code,
        "private": call.private,
        "recording_name": call.recording_name,
        "raw": _raw_json(call.raw),
    }


def _raw_json(raw: Mapping[str, Any]) -> str:
    # PostgreSQL's jsonb refuses NUL characters in strings; keep the document, lose the
    # NUL. The text is sent as written here and cast to jsonb by the statement.
    return json.dumps(raw, ensure_ascii=False, default=str).replace("\\u0000", "\\ufffd")


def _result(row: Mapping[str, Any] | None, allowed: Sequence[str]) -> UpsertResult | None:
    """The outcome of one row of _UPSERT_BATCH; None when a concurrent insert hides the owner."""
    assert row is not None  # the statement always answers one row
    if row["inserted"] is not None:
        return UpsertOutcome.INSERTED if row["inserted"] else UpsertOutcome.UPDATED
    owner = row["owner"]
    if owner is None:
        return None  # inserted by another transaction after this statement's snapshot
    return UpsertOutcome.UNCHANGED if owner in allowed else ForeignCall(owner)


def _owners(conn: Connection, uuids: Sequence[uuid_module.UUID]) -> dict[uuid_module.UUID, str]:
    rows = conn.execute(
        f"SELECT k.uuid, c.source FROM {MANY_BY_KEY.format(columns='c.source')}"
        " WHERE k.uuid = ANY(%s)",
        (list(uuids),),
    ).fetchall()
    return {row["uuid"]: row["source"] for row in rows}


def upsert_call(
    conn: Connection,
    call: Call,
    *,
    allowed: Sequence[str] | None = None,
    actor: str | None = None,
) -> UpsertResult:
    """Insert or update one call by uuid; same content twice changes nothing.

    `allowed` are the sources the writer may write (default: the call's own); a call
    stored under another source is left alone (ForeignCall). `actor` names the writer
    in the audit row of a privacy change (none: the database user).
    """
    return upsert_calls(conn, [call], allowed=allowed, actor=actor)[0]


def upsert_calls(
    conn: Connection,
    calls: Sequence[Call],
    *,
    allowed: Sequence[str] | None = None,
    actor: str | None = None,
) -> list[UpsertResult]:
    """Upsert many calls in one round trip per batch (pipelined); results in input order.

    A uuid repeated within `calls` is written once per occurrence, in order, so the
    last occurrence wins, exactly as if they had been sent one by one.
    """
    if not calls:
        return []
    # One transaction, so that the audit context applies (callers normally hold one).
    with conn.transaction() if conn.autocommit else nullcontext():
        return _upsert_calls(conn, calls, allowed, actor)


def _move_corrected(
    conn: Connection, params: list[dict[str, Any]]
) -> tuple[dict[int, ForeignCall], set[int]]:
    """Lock the calls' keys; move each stored call whose started_at changed (of a source
    the writer may write) to its new start. The calls of other sources, by index, which
    stay untouched and are not written; and the indexes of the calls moved."""
    keys = {
        row["uuid"]: row
        for row in conn.execute(_KEYS, (sorted({p["uuid"] for p in params}),)).fetchall()
    }
    foreign: dict[int, ForeignCall] = {}
    moved: set[int] = set()
    at: dict[uuid_module.UUID, Any] = {u: row["started_at"] for u, row in keys.items()}
    for index, param in enumerate(params):
        key = keys.get(param["uuid"])
        if key is None or at[param["uuid"]] == param["started_at"]:
            continue
        owner = key["source"]
        if owner is None:
            continue  # a key left behind by a row deleted by hand: the upsert inserts
        if owner not in param["allowed"]:
            foreign[index] = ForeignCall(owner)
            continue
        conn.execute(_MOVE, {**param, "old_started_at": at[param["uuid"]]})
        at[param["uuid"]] = param["started_at"]
        moved.add(index)
    return foreign, moved


def probe_by_index(conn: Connection) -> None:
    """Plan this transaction's statements with index probes only.

    A batch names its calls by key, so a probe per call is always right; but during a
    backlog the table grows faster than autovacuum analyses it, and a month analysed
    when it held a few rows is planned as a sequential scan per call (measured: a batch
    of 500 went from 20 ms to over a second as one month filled). Transaction-local.
    """
    conn.execute("SELECT set_config('enable_seqscan', 'off', true)")


def _write_batch(
    conn: Connection, writes: list[dict[str, Any]], allowed: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Run _UPSERT_BATCH over `writes` (uuids unique): one answer row per write, in order."""
    if not writes:
        return []
    arrays: dict[str, Any] = {
        column: [write[column] for write in writes] for column in ("uuid", *_CALL_COLUMNS)
    }
    arrays["allowed"] = list(allowed) if allowed is not None else None
    return conn.execute(_UPSERT_BATCH, arrays).fetchall()


def _upsert_calls(
    conn: Connection, calls: Sequence[Call], allowed: Sequence[str] | None, actor: str | None
) -> list[UpsertResult]:
    if actor is not None:
        set_audit_context(conn, actor=actor, reason="ingest")
    probe_by_index(conn)
    results: list[UpsertResult] = []
    for run in _distinct_runs(calls):
        results.extend(_upsert_run(conn, run, allowed))
    return results


def _distinct_runs(calls: Sequence[Call]) -> Iterator[Sequence[Call]]:
    """`calls` cut, in order, into runs in which no uuid repeats: a repeated uuid is
    written once per occurrence, each after the one before (its moves included)."""
    seen: set[uuid_module.UUID] = set()
    start = 0
    for index, call in enumerate(calls):
        if call.uuid in seen:
            yield calls[start:index]
            seen.clear()
            start = index
        seen.add(call.uuid)
    yield calls[start:]


def _upsert_run(
    conn: Connection, calls: Sequence[Call], allowed: Sequence[str] | None
) -> list[UpsertResult]:
    ensure_partitions(conn, {c.started_at for c in calls})
    params = [_call_params(c, allowed if allowed is not None else (c.source,)) for c in calls]
    foreign, moved = _move_corrected(conn, params)
    writes = [p for i, p in enumerate(params) if i not in foreign]
    rows = iter(_write_batch(conn, writes, allowed))
    results: list[UpsertResult | None] = []
    for index, param in enumerate(params):
        if index in foreign:
            results.append(foreign[index])
            continue
        result = _result(next(rows), param["allowed"])
        if index in moved and result is UpsertOutcome.UNCHANGED:
            result = UpsertOutcome.UPDATED  # its start was all that changed
        results.append(result)
    hidden = [index for index, result in enumerate(results) if result is None]
    if hidden:
        # This statement's snapshot predates the row: read it now (the source never
        # changes once stored, so what we read is what blocked the write).
        owners = _owners(conn, [calls[index].uuid for index in hidden])
        for index in hidden:
            owner = owners.get(calls[index].uuid, "")
            allowed_here = params[index]["allowed"]
            results[index] = (
                UpsertOutcome.UNCHANGED if owner in allowed_here else ForeignCall(owner)
            )
    return [result for result in results if result is not None]
