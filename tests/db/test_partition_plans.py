"""Every search on partitioned calls is index-bounded: EXPLAIN of the queries it runs
(each window of time a search runs over, cj.db.windows).

A few thousand calls over six months, analysed, then the SQL `search_calls` sends (phone
suffix, exact number, extension, interval, later pages) is explained with its
parameters, once planned for them (custom plan) and once generic (a prepared statement
after five runs): no sequential scan, only the months of the interval read, and the
partitions it cannot touch pruned (at plan time, or at executor start for generic plans).
The partitions left empty (months ahead, the default) may be read whole: the planner
knows they hold nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Connection, Database, open_database
from cj.db.calls import SearchQuery, search_calls
from cj.db.paging import Cursor, encode_token
from tests.db.support import create_six_months

START = datetime(2025, 1, 1, tzinfo=UTC)
MONTHS = [f"calls_2025_{m:02d}" for m in range(1, 7)]
CALLS = 6000


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        with trio.fail_after(60):
            await database.run(_load)
        yield database


def _load(conn: Connection) -> None:
    create_six_months(conn)
    span = int(timedelta(days=181).total_seconds())
    with conn.cursor().copy(
        "COPY calls (uuid, source, caller_number, caller_digits_rev, destination_number,"
        " destination_digits_rev, caller_extension, destination_extension, started_at)"
        " FROM STDIN"
    ) as copy:
        for i in range(CALLS):
            caller = f"7916{i % 997:07d}"
            dest = f"8495{i % 89:07d}"
            started = START + timedelta(seconds=i * span // CALLS)
            copy.write_row(
                (
                    uuid.uuid4(),
                    "pbx",
                    caller,
                    caller[::-1],
                    dest,
                    dest[::-1],
                    f"{1000 + i % 50}",
                    "dan" if i % 500 == 0 else "",
                    started,
                )
            )
    conn.execute("ANALYZE calls")


class _Recorder:
    """Stands in for the connection: keeps the search's statements (one per window of
    time, cj.db.windows: it answers nothing, so every window is asked)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, params))
        return self

    def fetchall(self) -> list[Any]:
        return []


def _explain(conn: Connection, query: SearchQuery, *, generic: bool) -> list[str]:
    """The plan of each statement the search sends."""
    recorder = _Recorder()
    search_calls(recorder, query)  # type: ignore[arg-type]
    conn.execute(
        "SELECT set_config('plan_cache_mode', %s, true)",
        ("force_generic_plan" if generic else "force_custom_plan",),
    )
    plans = []
    for sql, params in recorder.statements:
        # ANALYZE (the statement is a SELECT) so that a generic plan shows what executor
        # startup pruned; the rows it returns are thrown away.
        rows = conn.execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, params
        ).fetchall()
        plans.append("\n".join(next(iter(row.values())) for row in rows))
    return plans


def _scanned(plan: str) -> set[str]:
    """Partitions the executor read (a node it never ran does not count)."""
    return {
        m[1]
        for line in plan.splitlines()
        if (m := re.search(r" on (calls_\w+) c(?:_\d+)? \(", line)) and "never executed" not in line
    }


def _page_token(query: SearchQuery, at: datetime) -> str:
    return encode_token(Cursor(at, uuid.UUID(int=2**128 - 1)), query.fingerprint())


def _queries() -> list[tuple[str, SearchQuery, set[str] | None]]:
    march = datetime(2025, 3, 10, 9, tzinfo=UTC)
    hour = SearchQuery(start=march, end=march + timedelta(hours=1))
    weeks = SearchQuery(phone="0000123", start=march, end=march + timedelta(days=30))
    first_page = SearchQuery(start=march, end=march + timedelta(days=40), limit=10)
    later_page = SearchQuery(
        start=first_page.start,
        end=first_page.end,
        limit=10,
        page_token=_page_token(first_page, march + timedelta(days=5)),
    )
    phone_page = SearchQuery(phone="9160000123", limit=5)
    phone_page = SearchQuery(phone="9160000123", limit=5, page_token=_page_token(phone_page, march))
    return [
        # (what, query, the partitions it may read; None: any, as long as by index)
        ("phone suffix", SearchQuery(phone="0000123"), None),
        ("exact number", SearchQuery(phone="+79160000123", exact=True), None),
        ("extension", SearchQuery(phone="dan"), None),
        ("interval of an hour", hour, {"calls_2025_03"}),
        ("phone in an interval", weeks, {"calls_2025_03", "calls_2025_04"}),
        (
            "extension in an interval",
            SearchQuery(phone="dan", start=march, end=march + timedelta(days=3)),
            {"calls_2025_03"},
        ),
        ("a later interval page", later_page, {"calls_2025_03"}),
        # Open below: the months up to the cursor, and the default (odd dates, kept small).
        (
            "a later phone page",
            phone_page,
            {"calls_2025_01", "calls_2025_02", "calls_2025_03", "calls_default"},
        ),
    ]


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_search_plans_are_index_bounded_and_pruned(db: Database, generic: bool) -> None:
    for what, query, allowed in _queries():
        with trio.fail_after(20):
            plans = await db.run(partial(_explain, query=query, generic=generic))
        assert plans, what
        read: set[str] = set()
        for plan in plans:
            read |= _check_plan(what, query, plan)
        assert read & set(MONTHS), f"{what}:\n" + "\n".join(plans)
        if allowed is not None:
            assert read <= allowed, f"{what} read {sorted(read - allowed)}:\n" + "\n".join(plans)


def _check_plan(what: str, query: SearchQuery, plan: str) -> set[str]:
    """The partitions one statement (one window) read; each holding calls by index."""
    # An empty partition (the months ahead, the default) costs nothing to read whole,
    # and the planner knows it; a partition holding calls is only ever read by index.
    # A window may read none at all (every partition pruned) or only empty ones.
    seq = set(re.findall(r"Seq Scan on (calls_\w+) ", plan))
    assert not seq & set(MONTHS), f"{what}:\n{plan}"
    scanned = _scanned(plan)
    if scanned & set(MONTHS):
        assert "Index" in plan, f"{what}:\n{plan}"
        if query.phone == "dan":
            assert "lower(caller_extension)" in plan and "Index Cond" in plan, plan
        elif query.phone is not None:
            assert "digits_rev" in plan and "Index Cond" in plan, plan
    return scanned
