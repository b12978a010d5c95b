"""Caller/destination extensions: stored, read back, and found by a phone search."""

from __future__ import annotations

from typing import Any

import pytest

from cj.db import Connection, Database
from cj.db.calls import SearchError, SearchQuery, get_call, search_calls
from cj.db.ingest import upsert_call
from tests.db.support import run
from tests.factories import make_call


async def test_extensions_round_trip_and_change_the_stored_call(db: Database) -> None:
    call = make_call(caller="+4986517174960", caller_extension="dan", destination_extension="")
    await run(db, lambda c: upsert_call(c, call))
    stored = await run(db, lambda c: get_call(c, call.uuid))
    assert stored is not None
    assert (stored.call.caller_extension, stored.call.destination_extension) == ("dan", "")
    assert stored.call == call
    moved = make_call(call_uuid=call.uuid, caller="+4986517174960", caller_extension="dan2")
    await run(db, lambda c: upsert_call(c, moved))
    again = await run(db, lambda c: get_call(c, call.uuid))
    assert again is not None and again.call.caller_extension == "dan2"


async def test_a_phone_search_finds_a_call_by_extension(db: Database) -> None:
    by_login = make_call(caller="+4986517174960", caller_extension="Dan")
    by_callee = make_call(
        caller="79161234567", destination="74957001020", destination_extension="1001"
    )
    by_number = make_call(caller="84951111001")  # digits end in 1001
    unrelated = make_call(caller="79160000000", caller_extension="1002")
    for call in (by_login, by_callee, by_number, unrelated):
        await run(db, lambda c, call=call: upsert_call(c, call))

    async def search(**query: Any) -> set[object]:
        page = await run(db, lambda c: search_calls(c, SearchQuery(**query)))
        return {r.call.uuid for r in page.records}

    assert await search(phone="dan") == {by_login.uuid}
    assert await search(phone="DAN") == {by_login.uuid}
    # Digits match numbers by suffix and extensions exactly.
    assert await search(phone="1001") == {by_callee.uuid, by_number.uuid}
    assert await search(phone="1001", exact=True) == {by_callee.uuid}
    assert await search(phone="+4986517174960") == {by_login.uuid}
    with pytest.raises(SearchError, match=r"^phone: .*extension or SIP login"):
        SearchQuery(phone="no digits")


class _Recorder:
    """A connection that remembers the last statement it ran."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sql = ""
        self.params: Any = None

    def execute(self, sql: str, params: Any = None) -> Any:
        self.sql, self.params = sql, params
        return self.conn.execute(sql, params)


@pytest.mark.parametrize("phone", ["dan", "1001"])
async def test_extension_search_plans_are_index_bounded(db: Database, phone: str) -> None:
    def plan(conn: Connection) -> str:
        recorder = _Recorder(conn)
        search_calls(recorder, SearchQuery(phone=phone))  # type: ignore[arg-type]
        conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute("EXPLAIN " + recorder.sql, recorder.params).fetchall()
        return "\n".join(next(iter(row.values())) for row in rows)

    text = await run(db, plan)
    assert "Seq Scan on calls" not in text, text
    # With empty partitions the planner may walk the time index; which index serves a
    # loaded table is tests/db/test_partition_plans.py's.
    assert "Index Scan" in text or "Bitmap Index Scan" in text, text
