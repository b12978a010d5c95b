"""A batch of AddCalls probes the calls it names by index, whatever the statistics say.

Right after a burst of inserts (an agent's backlog), autovacuum has not analysed the
new rows yet; a join over the batch would then be planned as a scan of every month
(and of call_keys) per batch, which grows with the table. The two statements a batch
runs (`_KEYS`, which locks the keys, and `_UPSERT_BATCH`) are explained with their
parameters on unanalysed calls spread over six months: no sequential scan of a table
that holds rows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Connection, Database, ingest, open_database
from cj.model import Call
from tests.factories import make_call

START = datetime(2025, 1, 1, tzinfo=UTC)
STORED = 6000


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        yield database


def _stored_calls(conn: Connection) -> list[Call]:
    """STORED calls over six months, by COPY and never analysed; half a batch of them
    back, to be sent again."""
    conn.execute(
        "SELECT cj_calls_create_partition(m) FROM generate_series("
        "'2025-01-01 00:00+00'::timestamptz, '2025-06-01 00:00+00', '1 month') AS m"
    )
    span = timedelta(days=181) / STORED
    calls = [make_call(started_at=START + i * span) for i in range(STORED)]
    columns = ("uuid", *ingest._CALL_COLUMNS)
    with conn.cursor().copy(f"COPY calls ({', '.join(columns)}) FROM STDIN") as copy:
        for call in calls:
            params = ingest._call_params(call, (call.source,))
            copy.write_row([params[column] for column in columns])
    return calls[::24]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _scanned_whole(conn: Connection, sql: str, params: Any) -> list[str]:
    """The tables holding rows that the statement, run with `params`, read by a
    sequential scan."""
    with conn.transaction(force_rollback=True):
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
    assert row is not None
    plan = row["QUERY PLAN"]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return [
        node["Relation Name"]
        for node in _nodes(plan[0]["Plan"])
        if node["Node Type"] == "Seq Scan"
        and node["Relation Name"] not in ("calls_default",)
        and node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) > 0
    ]


async def test_a_batch_probes_its_calls_by_index_on_unanalysed_months(db: Database) -> None:
    def explain(conn: Connection) -> dict[str, list[str]]:
        resent = _stored_calls(conn)
        new = [make_call(started_at=START + timedelta(days=40, minutes=i)) for i in range(250)]
        batch = [*resent, *new]
        params = [ingest._call_params(c, (c.source,)) for c in batch]
        arrays = {c: [p[c] for p in params] for c in ("uuid", *ingest._CALL_COLUMNS)}
        arrays["allowed"] = None
        keys = sorted(p["uuid"] for p in params)
        return {
            "keys": _scanned_whole(conn, ingest._KEYS, (keys,)),
            "upsert": _scanned_whole(conn, ingest._UPSERT_BATCH, arrays),
        }

    with trio.fail_after(60):
        scans = await db.run(explain)
    assert scans == {"keys": [], "upsert": []}


async def test_the_batch_fixture_holds_calls_the_statements_find(db: Database) -> None:
    """The plans above were of a batch that names stored calls (not of empty tables)."""

    def count(conn: Connection) -> int:
        resent = _stored_calls(conn)
        rows = conn.execute(ingest._KEYS, (sorted(c.uuid for c in resent),)).fetchall()
        return sum(1 for row in rows if row["source"] is not None)

    with trio.fail_after(60):
        found = await db.run(count)
    assert found == len(range(0, STORED, 24))
