"""A batch of AddCalls probes the calls it names by index, however the plan was made.

psycopg prepares a statement after a few runs and PostgreSQL then keeps one generic
plan for the connection. During a backlog that plan is made while a month holds a few
rows: a sequential scan per call looks cheapest, and stays in use while the month
fills (measured: a batch of 500 went from 20 ms to over a second). Here both statements
a batch runs (`_KEYS`, which locks the keys, and `_UPSERT_BATCH`) are prepared and
planned generically while the months are tiny and analysed, as `upsert_calls` sets up
its transaction; then the months fill and the cached plans are explained with a batch
of calls sent again and new: no sequential scan of a table that holds rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Connection, Database, ingest, open_database
from cj.model import Call
from tests.db.support import create_six_months
from tests.factories import make_call

START = datetime(2025, 1, 1, tzinfo=UTC)
STORED = 6000


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        yield database


def _copy(conn: Connection, calls: list[Call]) -> None:
    columns = ("uuid", *ingest._CALL_COLUMNS)
    with conn.cursor().copy(f"COPY calls ({', '.join(columns)}) FROM STDIN") as copy:
        for call in calls:
            params = ingest._call_params(call, (call.source,))
            copy.write_row([params[column] for column in columns])


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[sb]")  # psycopg's %s, %(name)s, %(name)b


class _Prepared:
    """A statement of cj.db.ingest prepared in SQL (PREPARE), its plan generic."""

    def __init__(self, conn: Connection, name: str, sql: str) -> None:
        self.conn, self.name, self.names = conn, name, list[str]()

        def number(match: re.Match[str]) -> str:
            key = match.group(1) or str(len(self.names))
            if key not in self.names:
                self.names.append(key)
            return f"${self.names.index(key) + 1}"

        numbered = _PLACEHOLDER.sub(number, sql)
        # The simple query protocol: with the extended one, $1 would be the PREPARE's own.
        result = conn.pgconn.exec_(f"PREPARE {name} AS {numbered}".encode())
        assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message

    def sequential_scans(self, params: dict[str, Any]) -> list[str]:
        """The tables holding rows this statement's plan reads by a sequential scan."""
        args = ", ".join(f"%({key})s" for key in self.names)
        # EXECUTE takes no bound parameters: the values go in as literals.
        with psycopg.ClientCursor(self.conn) as cursor:
            row = cursor.execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {self.name}({args})", params
            ).fetchone()
        assert row is not None
        plan = row["QUERY PLAN"]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return [
            node["Relation Name"]
            for node in _nodes(plan[0]["Plan"])
            if node["Node Type"] == "Seq Scan"
            and node["Relation Name"] != "calls_default"
            and node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) > 0
        ]


def _batch_params(calls: list[Call]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of _KEYS and of _UPSERT_BATCH for `calls`, as a batch sends them."""
    params = [ingest._call_params(c, (c.source,)) for c in calls]
    arrays: dict[str, Any] = {c: [p[c] for p in params] for c in ("uuid", *ingest._CALL_COLUMNS)}
    arrays["allowed"] = None
    return {"0": sorted(p["uuid"] for p in params)}, arrays


def _plans_after_growth(conn: Connection, setup: Callable[[Connection], None]) -> dict[str, Any]:
    with conn.transaction(force_rollback=True):
        setup(conn)
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        create_six_months(conn)
        span = timedelta(days=181) / STORED
        stored = [make_call(started_at=START + i * span) for i in range(STORED)]
        few = stored[:: STORED // 12]
        _copy(conn, few)
        conn.execute("ANALYZE calls, call_keys")
        keys = _Prepared(conn, "keys", ingest._KEYS)
        upsert = _Prepared(conn, "upsert", ingest._UPSERT_BATCH)
        early_keys, early_arrays = _batch_params([*few[:6], make_call(started_at=START)])
        keys.sequential_scans(early_keys)  # planned now, while the months are tiny
        upsert.sequential_scans(early_arrays)
        _copy(conn, [call for call in stored if call not in few])
        new = [make_call(started_at=START + timedelta(days=40, minutes=i)) for i in range(250)]
        batch_keys, arrays = _batch_params([*stored[1::24], *new])
        found = conn.execute(ingest._KEYS, (batch_keys["0"],)).fetchall()
        return {
            "keys": keys.sequential_scans(batch_keys),
            "upsert": upsert.sequential_scans(arrays),
            "stored calls in the batch": sum(1 for row in found if row["source"]),
        }


async def test_a_batch_probes_its_calls_by_index_with_a_plan_made_when_tiny(
    db: Database,
) -> None:
    with trio.fail_after(60):
        plans = await db.run(lambda conn: _plans_after_growth(conn, ingest.probe_by_index))
    assert plans == {"keys": [], "upsert": [], "stored calls in the batch": 250}


async def test_without_the_setting_such_a_plan_scans_the_month(db: Database) -> None:
    """What the test above guards against happens here (else it proves nothing)."""
    with trio.fail_after(60):
        plans = await db.run(lambda conn: _plans_after_growth(conn, lambda conn: None))
    assert "calls_2025_01" in plans["keys"] + plans["upsert"]
