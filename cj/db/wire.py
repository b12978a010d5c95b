"""Search pages in the shapes the wire needs, with no model objects in between.

`search_calls` (cj.db.calls) answers dataclasses, which the REST and gRPC codecs then
turn into dicts and messages: for a page of 100 calls that Python work cost several
times the query itself. The two functions here run the same search (same WHERE, same
order, same keyset) but select what the protocol sends:

- `search_json`: PostgreSQL writes each call record's JSON text, byte for byte what
  `cj_api.call_codec.record_to_json` + compact `json.dumps(ensure_ascii=False)` write
  (same keys in the same order, same escapes, RFC 3339 UTC times with `Z` and
  microseconds only when there are some); Python only joins the rows into the page.
- `search_rows`: one flat tuple per call, with times as epoch microseconds and the
  recording's download fields already chosen, for `cj.codec.rows_to_search_pb`.

Both are synchronous (run them in `Database.run`); the SQL is parameterised exactly as
`search_calls`' is. tests/db/test_wire.py holds them to the Python shapes.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.adapt import Loader
from psycopg.rows import tuple_row

from cj.db.calls import SearchQuery, search_where
from cj.db.paging import Cursor, encode_token
from cj.db.pool import Connection
from cj.db.windows import ALL_TIME, Window, collect

__all__ = [
    "JsonPage",
    "RowsPage",
    "json_statement",
    "rows_statement",
    "search_json",
    "search_rows",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- JSON text, written by PostgreSQL -------------------------------------------------


def _text(expr: str) -> str:
    """A JSON string (or null): to_json escapes exactly as Python's json module does
    with ensure_ascii=False (\\" \\\\ \\b \\f \\n \\r \\t, other controls as \\u00xx)."""
    return f"COALESCE(to_json({expr})::text, 'null')"


def _number(expr: str) -> str:
    return f"COALESCE(({expr})::text, 'null')"


def _boolean(expr: str) -> str:
    return f"CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' ELSE 'null' END"


def _time(expr: str) -> str:
    """`format_timestamp`: UTC whatever the session's TimeZone, `.ffffff` only when the
    microseconds are not zero, then `Z` (one to_char and a replace: half the cost of
    testing the fraction apart)."""
    utc = f"({expr} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {expr} IS NULL THEN 'null' ELSE "
        f"replace('\"' || to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || 'Z\"', "
        "'.000000Z\"', 'Z\"') END"
    )


def _object(fields: list[tuple[str, str]]) -> str:
    """`{"k":v,...}` as an SQL text expression; every value expression is non-null."""
    parts = []
    for index, (key, value) in enumerate(fields):
        parts.append(f"'{'{' if index == 0 else ','}\"{key}\":'")
        parts.append(value)
    parts.append("'}'")
    return " || ".join(parts)


# call_codec.call_to_json, without raw (searches never send it).
_CALL_JSON = _object(
    [
        ("uuid", "'\"' || c.uuid::text || '\"'"),
        ("source", _text("c.source")),
        ("caller_number", _text("c.caller_number")),
        ("caller_digits", _text("reverse(c.caller_digits_rev)")),
        ("caller_name", _text("c.caller_name")),
        ("caller_extension", _text("c.caller_extension")),
        ("destination_number", _text("c.destination_number")),
        ("destination_digits", _text("reverse(c.destination_digits_rev)")),
        ("destination_extension", _text("c.destination_extension")),
        ("direction", _text("c.direction")),
        ("started_at", _time("c.started_at")),
        ("answered_at", _time("c.answered_at")),
        ("ended_at", _time("c.ended_at")),
        ("duration_s", _number("c.duration_s")),
        ("billsec", _number("c.billsec")),
        ("hangup_cause", _text("c.hangup_cause")),
        ("hangup_side", _text("c.hangup_side")),
        ("sip_code", _number("c.sip_code")),
        ("private", _boolean("c.private")),
        ("recording_name", _text("c.recording_name")),
    ]
)

# call_codec.recording_to_json: what a download sends now, the MP3 once encoded.
_ENCODED = "(r.status IN ('stored', 'purged') AND r.size IS NOT NULL AND r.sha256 IS NOT NULL)"
_RECORDING_JSON = _object(
    [
        ("status", _text("r.status")),
        ("original_name", _text("r.original_name")),
        ("original_size", _number("r.original_size")),
        ("original_sha256", _text("r.original_sha256")),
        ("content_type", f"CASE WHEN {_ENCODED} THEN '\"audio/mpeg\"' ELSE '\"audio/wav\"' END"),
        ("size", _number(f"CASE WHEN {_ENCODED} THEN r.size ELSE r.original_size END")),
        ("sha256", _text(f"CASE WHEN {_ENCODED} THEN r.sha256 ELSE r.original_sha256 END")),
        ("duration_ms", _number("r.duration_ms")),
        ("sample_rate", _number("r.sample_rate")),
        ("channels", _number("r.channels")),
        ("attempts", _number("r.attempts")),
        ("last_error", _text("r.last_error")),
    ]
)

_RECORD_JSON = (
    f"'{{\"call\":' || {_CALL_JSON} || ',\"recording\":' || "
    f"CASE WHEN r.status IS NULL THEN 'null' ELSE {_RECORDING_JSON} END || '}}'"
)

_JSON_SELECT = (
    "SELECT (extract(epoch FROM c.started_at) * 1000000)::bigint AS at_us, c.uuid::text, "
    f"{_RECORD_JSON} AS record"
    " FROM calls c LEFT JOIN recordings r ON r.call_uuid = c.uuid"
)


class _BytesLoader(Loader):
    """text as the bytes PostgreSQL sent (UTF-8): the JSON goes out as it came in."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


@dataclass(frozen=True)
class JsonPage:
    """`{"calls": [...], "next_page_token": ...}` as UTF-8 JSON, ready to send."""

    body: bytes
    count: int
    next_page_token: str | None


def json_statement(
    query: SearchQuery, window: Window = ALL_TIME, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters `search_json` runs per window (benchmarks time it alone)."""
    where, params = search_where(query, window, limit)
    return _JSON_SELECT + where, params


def search_json(conn: Connection, query: SearchQuery, *, windowed: bool = True) -> JsonPage:
    """One page of `query` as the REST API's JSON (see the module's docstring)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.adapters.register_loader("text", _BytesLoader)

        def run(window: Window, limit: int) -> list[Any]:
            return cur.execute(*json_statement(query, window, limit)).fetchall()

        rows = collect(query, run, windowed=windowed)
    page = rows[: query.limit]
    token = _next_token(rows, query)
    tail = b'],"next_page_token":' + (b"null" if token is None else b'"' + token.encode() + b'"')
    body = b'{"calls":[' + b",".join(row[2] for row in page) + tail + b"}"
    return JsonPage(body, len(page), token)


def _next_token(rows: list[Any], query: SearchQuery) -> str | None:
    if len(rows) <= query.limit:
        return None
    last = rows[query.limit - 1]
    uuid_text = last[1].decode() if isinstance(last[1], bytes) else last[1]
    cursor = Cursor(_EPOCH + timedelta(microseconds=last[0]), uuid_module.UUID(uuid_text))
    return encode_token(cursor, query.fingerprint())


# --- flat tuples for protobuf -----------------------------------------------------------


def _micros(expr: str) -> str:
    return f"(extract(epoch FROM {expr}) * 1000000)::bigint"


# The order `cj.codec.rows_to_search_pb` reads; defaults as `call_to_pb` and
# `recording_to_pb` apply them (an unset proto3 field and its zero are the same).
_STORED = "(r.status = 'stored')"
ROW_COLUMNS = (
    ("at_us", _micros("c.started_at")),
    ("uuid", "c.uuid::text"),
    ("source", "c.source"),
    ("caller_number", "c.caller_number"),
    ("caller_name", "c.caller_name"),
    ("caller_extension", "c.caller_extension"),
    ("destination_number", "c.destination_number"),
    ("destination_extension", "c.destination_extension"),
    ("direction", "c.direction"),
    ("answered_us", _micros("c.answered_at")),
    ("ended_us", _micros("c.ended_at")),
    ("duration_s", "c.duration_s"),
    ("billsec", "c.billsec"),
    ("hangup_cause", "c.hangup_cause"),
    ("hangup_side", "c.hangup_side"),
    ("sip_code", "COALESCE(c.sip_code, 0)"),
    ("private", "c.private"),
    ("recording_name", "COALESCE(c.recording_name, '')"),
    ("r_status", "r.status"),
    ("r_original_name", "r.original_name"),
    ("r_original_size", "r.original_size"),
    ("r_original_sha256", "r.original_sha256"),
    ("r_content_type", f"CASE WHEN {_STORED} THEN 'audio/mpeg' ELSE 'audio/wav' END"),
    ("r_size", f"CASE WHEN {_STORED} THEN COALESCE(r.size, 0) ELSE r.original_size END"),
    (
        "r_sha256",
        f"CASE WHEN {_STORED} THEN COALESCE(r.sha256, '') ELSE r.original_sha256 END",
    ),
    ("r_duration_ms", "COALESCE(r.duration_ms, 0)"),
    ("r_sample_rate", "COALESCE(r.sample_rate, 0)"),
    ("r_channels", "COALESCE(r.channels, 0)"),
    ("r_last_error", "COALESCE(r.last_error, '')"),
)
_ROWS_SELECT = (
    "SELECT "
    + ", ".join(expr for _, expr in ROW_COLUMNS)
    + " FROM calls c LEFT JOIN recordings r ON r.call_uuid = c.uuid"
)


@dataclass(frozen=True)
class RowsPage:
    """A page as tuples in `ROW_COLUMNS` order."""

    rows: list[tuple[Any, ...]]
    next_page_token: str | None


def rows_statement(
    query: SearchQuery, window: Window = ALL_TIME, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters `search_rows` runs per window (benchmarks time it alone)."""
    where, params = search_where(query, window, limit)
    return _ROWS_SELECT + where, params


def search_rows(conn: Connection, query: SearchQuery, *, windowed: bool = True) -> RowsPage:
    """One page of `query` as flat tuples (see `ROW_COLUMNS`)."""
    with conn.cursor(row_factory=tuple_row) as cur:

        def run(window: Window, limit: int) -> list[Any]:
            return cur.execute(*rows_statement(query, window, limit)).fetchall()

        rows = collect(query, run, windowed=windowed)
    return RowsPage(rows[: query.limit], _next_token(rows, query))
