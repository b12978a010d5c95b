"""Calls: lookup, existence checks and the two searches (the upsert is `cj.db.ingest`).

Functions here are synchronous and take a connection: they run inside
`Database.run` in a worker thread, one transaction per call. SQL is parameterised
throughout; user input never becomes SQL text.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cj.db.keys import BY_KEY, MANY_BY_KEY
from cj.db.paging import Cursor, decode_token, encode_token, query_fingerprint
from cj.db.pool import Connection
from cj.db.windows import ALL_TIME, Window, collect
from cj.model import Call, Direction, Recording, RecordingStatus
from cj.phone import PhoneNumber, search_key

MAX_LIMIT = 1000


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
