"""The wire-shaped searches (cj.db.wire) equal the Python shapes, byte for byte.

`search_json` must write exactly what `record_to_json` + compact `json.dumps` write, and
`search_rows` + `rows_to_search_pb` exactly what `record_to_pb` builds, for the values
that are easy to get wrong: NULLs, microseconds (zero or not), times before 1970, the
session's time zone, unicode and control characters, private calls, and recordings in
every status (encoded or not).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cj.codec import record_to_pb, rows_to_search_pb
from cj.db import Connection, Database
from cj.db.calls import SearchQuery, search_calls
from cj.db.ingest import upsert_call
from cj.db.recordings import create_recording
from cj.db.wire import search_json, search_rows
from cj.model import Direction
from cj.proto import calljournal_pb2 as pb
from cj_api.call_codec import record_to_json
from tests.db.support import run
from tests.factories import BASE_TIME, make_call

SHA_A = "a" * 64
SHA_B = "b" * 64
# Every status, encoded or not, with and without an MP3's size and sha256.
RECORDINGS: list[dict[str, Any] | None] = [
    None,
    {"status": "uploaded"},
    {"status": "encoding", "attempts": 1},
    {"status": "failed", "attempts": 3, "last_error": 'lame: "bad"\nheader ✗'},
    {
        "status": "stored",
        "storage": "s3",
        "key": "k",
        "size": 4321,
        "sha256": SHA_B,
        "content_type": "audio/mpeg",
        "duration_ms": 60000,
        "sample_rate": 8000,
        "channels": 1,
    },
    {"status": "purged", "size": 4321, "sha256": SHA_B, "duration_ms": 0},
    {"status": "purged"},  # purged before it was ever encoded
]


def tricky_calls() -> list[Any]:
    odd = 'Ёлка "q" \\ / \t\x01\x1f\x7f \u2028 😀 中文'
    calls = [
        make_call(started_at=BASE_TIME - timedelta(minutes=i), caller_name=f"n{i}")
        for i in range(len(RECORDINGS))
    ]
    calls += [
        # NULLs everywhere they are allowed, microseconds, a private call.
        make_call(
            started_at=BASE_TIME + timedelta(seconds=1, microseconds=1),
            answered_at=None,
            ended_at=None,
            sip_code=None,
            recording_name=None,
            private=True,
            direction=Direction.UNKNOWN,
            billsec=0,
        ),
        make_call(
            started_at=BASE_TIME + timedelta(seconds=2, microseconds=999_999),
            answered_at=BASE_TIME + timedelta(seconds=3, microseconds=500_000),
            caller_name=odd,
            caller_extension="Dan.ONeil@pbx",
            destination_extension="1001",
            hangup_cause=odd,
            hangup_side="",
            source="pbx-ünïcode",
            recording_name="rec ✓.wav",
            direction=Direction.OUTBOUND,
        ),
        # Before 1970 (negative epoch microseconds), with a fraction.
        make_call(
            caller="+7 (916) 123-45-67",
            started_at=datetime(1969, 12, 31, 23, 59, 59, 250_000, tzinfo=UTC),
            answered_at=None,
            ended_at=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
            duration_s=2,
            billsec=0,
        ),
    ]
    return calls


async def store(db: Database) -> list[Any]:
    calls = tricky_calls()

    def write(conn: Connection) -> None:
        for index, call in enumerate(calls):
            upsert_call(conn, call)
            spec = RECORDINGS[index] if index < len(RECORDINGS) else None
            if spec is None:
                continue
            create_recording(
                conn,
                call.uuid,
                original_name=f"orig ✓ {index}.wav",
                size=1000 + index,
                sha256=SHA_A,
                storage="temp",
                key=f"wav/{index}",
            )
            columns = ", ".join(f"{name} = %({name})s" for name in spec)
            conn.execute(
                f"UPDATE recordings SET {columns} WHERE call_uuid = %(uuid)s",
                {**spec, "uuid": call.uuid},
            )

    await run(db, write)
    return calls


def python_json(records: list[Any], token: str | None) -> bytes:
    payload = {"calls": [record_to_json(r) for r in records], "next_page_token": token}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


QUERIES = [
    SearchQuery(start=datetime(1960, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC)),
    SearchQuery(phone="9161234567"),
    SearchQuery(phone="dan.oneil@pbx"),
    SearchQuery(start=BASE_TIME - timedelta(hours=1), end=BASE_TIME, has_recording=True),
    SearchQuery(start=BASE_TIME - timedelta(hours=1), end=BASE_TIME, has_recording=False),
]


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kathmandu", "America/St_Johns"])
async def test_json_and_rows_equal_the_python_shapes(db: Database, time_zone: str) -> None:
    await store(db)

    def compare(conn: Connection) -> None:
        conn.execute(f"SET TIME ZONE '{time_zone}'")
        for query in QUERIES:
            for limit in (1, 3, 100):  # with and without a next page
                paged = SearchQuery(**{**query.__dict__, "limit": limit})
                token: str | None = None
                while True:
                    current = SearchQuery(**{**paged.__dict__, "page_token": token})
                    expected = search_calls(conn, current)
                    assert expected.records or token is None
                    page = search_json(conn, current)
                    assert page.body == python_json(expected.records, expected.next_page_token)
                    assert page.count == len(expected.records)
                    rows = search_rows(conn, current)
                    assert rows.next_page_token == expected.next_page_token
                    built = rows_to_search_pb(rows.rows, rows.next_page_token)
                    wanted = pb.SearchResponse(
                        calls=[record_to_pb(r) for r in expected.records],
                        next_page_token=expected.next_page_token or "",
                    )
                    assert built == wanted
                    assert built.SerializeToString(deterministic=True) == (
                        wanted.SerializeToString(deterministic=True)
                    )
                    token = expected.next_page_token
                    if token is None:
                        break

    await run(db, compare)


async def test_every_tricky_value_is_served(db: Database) -> None:
    calls = await store(db)
    query = SearchQuery(
        start=datetime(1960, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC), limit=100
    )
    page = await run(db, lambda conn: search_json(conn, query))
    served = json.loads(page.body)
    assert {c["call"]["uuid"] for c in served["calls"]} == {str(c.uuid) for c in calls}
    by_name = {c["call"]["caller_name"]: c for c in served["calls"]}
    odd = next(c for c in calls if c.caller_name.startswith("Ёлка"))
    assert by_name[odd.caller_name]["call"]["hangup_cause"] == odd.hangup_cause
    statuses = sorted(c["recording"]["status"] for c in served["calls"] if c["recording"])
    assert statuses == sorted(spec["status"] for spec in RECORDINGS if spec)
    private = [c for c in served["calls"] if c["call"]["private"]]
    assert len(private) == 1 and private[0]["recording"] is None
    assert page.next_page_token is None
