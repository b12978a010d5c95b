"""Calls: idempotent upsert, lookup, existence checks and the two searches.

Functions here are synchronous and take a connection: they run inside
`Database.run` in a worker thread, one transaction per call. SQL is parameterised
throughout; user input never becomes SQL text.
"""

from __future__ import annotations

import json
import re
import uuid as uuid_module
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from cj.db.audit import set_audit_context
from cj.db.keys import BY_KEY, MANY_BY_KEY
from cj.db.paging import Cursor, decode_token, encode_token, query_fingerprint
from cj.db.partitions import ensure_partitions
from cj.db.pool import Connection
from cj.db.windows import ALL_TIME, Window, collect
from cj.model import Call, Direction, Recording, RecordingStatus
from cj.phone import PhoneNumber, search_key

MAX_LIMIT = 1000


class UpsertOutcome(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class CallRecord:
    """A call with its recording, if it has one."""

    call: Call
    recording: Recording | None


@dataclass(frozen=True)
class CallState:
    """What CheckCalls answers for one uuid."""

    uuid: uuid_module.UUID
    exists: bool
    recording_status: RecordingStatus | None = None
    recording_sha256: str | None = None


class SearchError(ValueError):
    """A search request is invalid; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class SearchQuery:
    """Calls newest first, filtered by phone (suffix of digits or exact) and/or time.

    The interval is half-open: `start <= started_at < end`.
    """

    phone: str | None = None
    exact: bool = False
    start: datetime | None = None
    end: datetime | None = None
    direction: Direction | None = None
    has_recording: bool | None = None
    limit: int = 100
    page_token: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError("limit", f"must be between 1 and {MAX_LIMIT}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise SearchError(name, "must carry a timezone")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise SearchError("end", "must be after start (the interval is [start, end))")
        if self.phone is not None:
            phone_keys(self.phone, exact=self.exact)

    def fingerprint(self) -> str:
        return query_fingerprint(
            self.phone and repr(phone_keys(self.phone, exact=self.exact)),
            self.exact,
            self.start and self.start.isoformat(),
            self.end and self.end.isoformat(),
            self.direction,
            self.has_recording,
        )

    def cursor(self) -> Cursor | None:
        """The decoded page token; raises PageTokenError when it is not ours."""
        if not self.page_token:
            return None
        return decode_token(self.page_token, self.fingerprint())


# An extension or SIP login a phone query may name instead of a number ("dan").
_LOGIN = re.compile(r"[A-Za-z0-9._@+\-]{1,64}")


def phone_keys(phone: str, *, exact: bool = False) -> tuple[str | None, str]:
    """What a phone query matches: (the digit key of the numbers, or None when the query
    holds no digit; the extension, compared case-insensitively). SearchError if neither."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in phone):
        raise SearchError("phone", "contains a control character (NUL, tab, newline …)")
    extension = phone.strip().lower()
    try:
        digits: str | None = search_key(phone, exact=exact)
    except ValueError as exc:
        if not _LOGIN.fullmatch(phone):
            raise SearchError(
                "phone", f"{exc}, or be an extension or SIP login (letters, digits, . _ - @ +)"
            ) from None
        digits = None
    return digits, extension[:256]


@dataclass(frozen=True)
class SearchPage:
    records: list[CallRecord]
    next_page_token: str | None


# --- writing ---------------------------------------------------------------------------

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

# One statement, so the decision cannot race: the conflict branch updates only a call
# of a source the writer may write (`allowed`), and only when something changes;
# private is sticky (an update may set it, never clear it). The outer SELECT reads the
# row as it was before the statement, to tell a foreign call from an unchanged one, and
# an insert from an update (a partitioned table cannot return xmax): a row this
# statement wrote that its snapshot did not hold, made by this transaction.
_UPSERT = f"""
WITH written AS (
    INSERT INTO calls AS c (uuid, {", ".join(_CALL_COLUMNS)})
    VALUES (%(uuid)s, {", ".join(f"%({c})s" for c in _CALL_COLUMNS)})
    ON CONFLICT (uuid, started_at) DO UPDATE
       SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_COLUMNS)},
           private = c.private OR EXCLUDED.private,
           updated_at = now()
     WHERE c.source = ANY(%(allowed)s::text[])
       AND ({", ".join(f"c.{c}" for c in _UPDATED_COLUMNS)}, c.private)
           IS DISTINCT FROM
           ({", ".join(f"EXCLUDED.{c}" for c in _UPDATED_COLUMNS)}, c.private OR EXCLUDED.private)
    RETURNING c.created_at = now() AS fresh
)
SELECT CASE WHEN w.fresh THEN before.uuid IS NULL ELSE w.fresh END AS inserted,
       before.source AS owner
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN written AS w ON true
  LEFT JOIN calls AS before ON before.uuid = %(uuid)s AND before.started_at = %(started_at)s
"""

# `calls` is partitioned by month of started_at (sql/0006): a uuid is unique through its
# key in call_keys, which this locks for the rest of the transaction (so concurrent
# writers of one call queue up), with the owner of the row the key points to.
_KEYS = """
SELECT k.uuid, k.started_at, c.source
  FROM call_keys k
  LEFT JOIN calls c ON c.uuid = k.uuid AND c.started_at = k.started_at
 WHERE k.uuid = ANY(%s)
   FOR UPDATE OF k
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
        "raw": _jsonb(call.raw),
    }


def _jsonb(raw: Mapping[str, Any]) -> Jsonb:
    # PostgreSQL's jsonb refuses NUL characters in strings; keep the document, lose the
    # NUL. The text is sent as written here (not decoded and encoded again).
    text = json.dumps(raw, ensure_ascii=False, default=str).replace("\\u0000", "\\ufffd")
    return Jsonb(raw, dumps=lambda _: text)


def _result(row: Mapping[str, Any] | None, allowed: Sequence[str]) -> UpsertResult | None:
    """The outcome of one _UPSERT; None when a concurrent insert hides the owner."""
    assert row is not None  # the statement always answers one row
    if row["inserted"] is not None:
        return UpsertOutcome.INSERTED if row["inserted"] else UpsertOutcome.UPDATED
    owner = row["owner"]
    if owner is None:
        return None  # inserted by another transaction after this statement's snapshot
    return UpsertOutcome.UNCHANGED if owner in allowed else ForeignCall(owner)


def _owners(conn: Connection, uuids: Sequence[uuid_module.UUID]) -> dict[uuid_module.UUID, str]:
    rows = conn.execute(
        "SELECT uuid, source FROM calls WHERE uuid = ANY(%s)", (list(uuids),)
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
        for row in conn.execute(_KEYS, (list({p["uuid"] for p in params}),)).fetchall()
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


def _upsert_calls(
    conn: Connection, calls: Sequence[Call], allowed: Sequence[str] | None, actor: str | None
) -> list[UpsertResult]:
    if actor is not None:
        set_audit_context(conn, actor=actor, reason="ingest")
    starts: dict[uuid_module.UUID, datetime] = {}
    if any(starts.setdefault(c.uuid, c.started_at) != c.started_at for c in calls):
        # One uuid at two starts in one batch: moves must follow the writes, one by one.
        return [r for c in calls for r in _upsert_calls(conn, [c], allowed, actor)]
    ensure_partitions(conn, {c.started_at for c in calls})
    results: list[UpsertResult | None] = []
    params = [_call_params(c, allowed if allowed is not None else (c.source,)) for c in calls]
    foreign, moved = _move_corrected(conn, params)
    with conn.cursor() as cur:
        writes = [p for i, p in enumerate(params) if i not in foreign]
        if writes:
            cur.executemany(_UPSERT, writes, returning=True)
        for index, param in enumerate(params):
            if index in foreign:
                results.append(foreign[index])
                continue
            result = _result(cur.fetchone(), param["allowed"])
            if index in moved and result is UpsertOutcome.UNCHANGED:
                result = UpsertOutcome.UPDATED  # its start was all that changed
            results.append(result)
            cur.nextset()
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


# --- reading ---------------------------------------------------------------------------

_SELECT = """
SELECT c.uuid, c.source, c.caller_number, c.caller_name, c.destination_number, c.direction,
       c.caller_extension, c.destination_extension,
       c.started_at, c.answered_at, c.ended_at, c.duration_s, c.billsec, c.hangup_cause,
       c.hangup_side, c.sip_code, c.private, c.recording_name, {raw} AS raw,
       r.status AS r_status, r.original_name AS r_original_name,
       r.original_size AS r_original_size, r.original_sha256 AS r_original_sha256,
       r.original_storage AS r_original_storage, r.original_key AS r_original_key,
       r.storage AS r_storage, r.key AS r_key, r.size AS r_size, r.sha256 AS r_sha256,
       r.content_type AS r_content_type, r.duration_ms AS r_duration_ms,
       r.sample_rate AS r_sample_rate, r.channels AS r_channels, r.attempts AS r_attempts,
       r.last_error AS r_last_error, r.created_at AS r_created_at, r.updated_at AS r_updated_at
  FROM calls c LEFT JOIN recordings r ON r.call_uuid = c.uuid
"""


def row_to_recording(row: Mapping[str, Any], prefix: str = "r_") -> Recording | None:
    if row[f"{prefix}status"] is None:
        return None
    return Recording(
        call_uuid=row.get("call_uuid") or row["uuid"],
        status=RecordingStatus(row[f"{prefix}status"]),
        original_name=row[f"{prefix}original_name"],
        original_size=row[f"{prefix}original_size"],
        original_sha256=row[f"{prefix}original_sha256"],
        original_storage=row[f"{prefix}original_storage"],
        original_key=row[f"{prefix}original_key"],
        storage=row[f"{prefix}storage"],
        key=row[f"{prefix}key"],
        size=row[f"{prefix}size"],
        sha256=row[f"{prefix}sha256"],
        content_type=row[f"{prefix}content_type"],
        duration_ms=row[f"{prefix}duration_ms"],
        sample_rate=row[f"{prefix}sample_rate"],
        channels=row[f"{prefix}channels"],
        attempts=row[f"{prefix}attempts"],
        last_error=row[f"{prefix}last_error"],
        created_at=row[f"{prefix}created_at"],
        updated_at=row[f"{prefix}updated_at"],
    )


def _row_to_record(row: Mapping[str, Any]) -> CallRecord:
    call = Call(
        uuid=row["uuid"],
        source=row["source"],
        caller=PhoneNumber(row["caller_number"]),
        caller_name=row["caller_name"],
        destination=PhoneNumber(row["destination_number"]),
        caller_extension=row["caller_extension"],
        destination_extension=row["destination_extension"],
        direction=Direction(row["direction"]),
        started_at=row["started_at"],
        answered_at=row["answered_at"],
        ended_at=row["ended_at"],
        duration_s=row["duration_s"],
        billsec=row["billsec"],
        hangup_cause=row["hangup_cause"],
        hangup_side=row["hangup_side"],
        sip_code=row["sip_code"],
        private=row["private"],
        recording_name=row["recording_name"],
        raw=row["raw"] or {},
    )
    return CallRecord(call=call, recording=row_to_recording(row))


def get_call(conn: Connection, call_uuid: uuid_module.UUID) -> CallRecord | None:
    row = conn.execute(_SELECT.format(raw="c.raw") + BY_KEY, {"uuid": call_uuid}).fetchone()
    return _row_to_record(row) if row is not None else None


def check_calls(
    conn: Connection,
    uuids: Iterable[uuid_module.UUID],
    *,
    sources: Sequence[str] | None = None,
) -> list[CallState]:
    """Which of `uuids` exist, with their recording state; answers in input order.

    With `sources`, a call of any other source is answered as not existing (an agent
    learns nothing about other PBXs' calls).
    """
    wanted = list(uuids)
    rows = conn.execute(
        f"""SELECT c.uuid, r.status, r.original_sha256
              FROM {MANY_BY_KEY.format(columns="c.uuid, c.source")}
              LEFT JOIN recordings r ON r.call_uuid = c.uuid
             WHERE k.uuid = ANY(%s)
               AND (%s::text[] IS NULL OR c.source = ANY(%s::text[]))""",
        (
            wanted,
            None if sources is None else list(sources),
            None if sources is None else list(sources),
        ),
    ).fetchall()
    found = {row["uuid"]: row for row in rows}
    states = []
    for call_uuid in wanted:
        row = found.get(call_uuid)
        if row is None:
            states.append(CallState(call_uuid, exists=False))
        else:
            status = RecordingStatus(row["status"]) if row["status"] else None
            states.append(CallState(call_uuid, True, status, row["original_sha256"]))
    return states


def search_where(
    query: SearchQuery, window: Window = ALL_TIME, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (over `calls c LEFT JOIN recordings r`) and parameters of a
    search, its page token's keyset included; every search shape shares it. `window`
    bounds it further (cj.db.windows); `limit` rows (default: `query.limit + 1`)."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if query.phone is not None:
        digits, params["ext"] = phone_keys(query.phone, exact=query.exact)
        # The extensions are matched exactly (calls_*_extension_idx on lower(...)).
        matches = [
            "lower(c.caller_extension) = %(ext)s",
            "lower(c.destination_extension) = %(ext)s",
        ]
        if digits is not None and query.exact:
            params["rev"] = digits[::-1]
            matches[:0] = ["c.caller_digits_rev = %(rev)s", "c.destination_digits_rev = %(rev)s"]
        elif digits is not None:
            # Prefix range on the reversed digits: [key, key with its last digit + 1).
            key = digits[::-1]
            params["lo"] = key
            params["hi"] = key[:-1] + chr(ord(key[-1]) + 1)
            matches[:0] = [
                "(c.caller_digits_rev ~>=~ %(lo)s AND c.caller_digits_rev ~<~ %(hi)s)",
                "(c.destination_digits_rev ~>=~ %(lo)s AND c.destination_digits_rev ~<~ %(hi)s)",
            ]
        conditions.append("(" + " OR ".join(matches) + ")")
    if query.start is not None:
        params["start"] = query.start
        conditions.append("c.started_at >= %(start)s")
    if query.end is not None:
        params["end"] = query.end
        conditions.append("c.started_at < %(end)s")
    if query.direction is not None:
        params["direction"] = query.direction.value
        conditions.append("c.direction = %(direction)s")
    if query.has_recording is True:
        conditions.append("r.status IS NOT NULL AND r.status <> 'purged'")
    elif query.has_recording is False:
        conditions.append("(r.status IS NULL OR r.status = 'purged')")
    cursor = query.cursor()
    if cursor is not None:
        params["c_at"] = cursor.started_at
        params["c_uuid"] = cursor.uuid
        conditions.append("(c.started_at, c.uuid) < (%(c_at)s, %(c_uuid)s)")
        # Implied by the row comparison, but only a plain bound prunes the newer months.
        conditions.append("c.started_at <= %(c_at)s")
    low, high = window
    if low is not None:
        params["w_low"] = low
        conditions.append("c.started_at >= %(w_low)s")
    if high is not None:
        params["w_high"] = high
        conditions.append("c.started_at < %(w_high)s")
    # One more than a page: is there a next page?
    params["limit"] = query.limit + 1 if limit is None else limit
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return where + " ORDER BY c.started_at DESC, c.uuid DESC LIMIT %(limit)s", params


def search_statement(
    query: SearchQuery, window: Window = ALL_TIME, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters `search_calls` runs per window (benchmarks time the
    single, unwindowed statement alone)."""
    where, params = search_where(query, window, limit)
    return _SELECT.format(raw="NULL::jsonb") + where, params


def search_calls(conn: Connection, query: SearchQuery, *, windowed: bool = True) -> SearchPage:
    """One page of calls matching `query`, newest first (keyset pagination), run over
    windows of time (cj.db.windows; `windowed=False`: one statement)."""

    def run(window: Window, limit: int) -> list[Any]:
        return conn.execute(*search_statement(query, window, limit)).fetchall()

    rows = collect(query, run, windowed=windowed)
    records = [_row_to_record(row) for row in rows[: query.limit]]
    next_token = None
    if len(rows) > query.limit:
        last = records[-1].call
        next_token = encode_token(Cursor(last.started_at, last.uuid), query.fingerprint())
    return SearchPage(records, next_token)
