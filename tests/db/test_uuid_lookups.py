"""Lookups by uuid read one month's partition only (cj/db/keys.py).

Calls over six months, analysed; then the SQL that GetCall, CheckCalls, the download
watcher's revocations and a privacy change send is run under EXPLAIN (ANALYZE, FORMAT
JSON), planned for its parameters (custom plan) and generic: a partition of `calls`
counts as read when its scan ran at least once. Each uuid must have been looked for in
its own month alone (probed once), and a uuid without a call in none.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Connection, Database, open_database
from cj.db.calls import check_calls, get_call
from cj.db.downloads import revocations
from cj.db.privacy import set_call_privacy
from tests.db.support import create_six_months

START = datetime(2025, 1, 1, tzinfo=UTC)
CALLS = 600  # over six months, a month apart from the next in steps of ~7 hours


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
        " destination_digits_rev, started_at) FROM STDIN"
    ) as copy:
        for i in range(CALLS):
            started = START + timedelta(seconds=i * span // CALLS)
            copy.write_row((uuid.uuid4(), "pbx", "100", "001", "200", "002", started))
    conn.execute(
        """INSERT INTO recordings (call_uuid, status, original_name, original_size,
                                   original_sha256)
           SELECT uuid, 'uploaded', 'a.wav', 1, repeat('0', 64) FROM call_keys
            WHERE get_byte(uuid_send(uuid), 15) % 2 = 0"""
    )
    conn.execute("ANALYZE calls")
    conn.execute("ANALYZE call_keys")
    conn.execute("ANALYZE recordings")


class _Recorder:
    """Stands in for the connection: keeps the statements a function sends (answering
    nothing, which is all these functions need to send their one lookup)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = None) -> _Recorder:
        self.statements.append((sql, params))
        return self

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def transaction(self) -> nullcontext[None]:
        return nullcontext()


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _partitions_read(
    conn: Connection, fn: Callable[[Any], object], *, generic: bool
) -> dict[str, int]:
    """The partitions of `calls` the statement `fn` sends read, with their scans' loops."""
    recorder = _Recorder()
    fn(recorder)
    [(sql, params)] = recorder.statements
    conn.execute(
        "SELECT set_config('plan_cache_mode', %s, true)",
        ("force_generic_plan" if generic else "force_custom_plan",),
    )
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) " + sql, params).fetchone()
    assert row is not None
    [plan] = next(iter(row.values()))
    read: dict[str, int] = {}
    for node in _nodes(plan["Plan"]):
        name = node.get("Relation Name", "")
        if name.startswith("calls_") and node["Actual Loops"] > 0:
            read[name] = read.get(name, 0) + node["Actual Loops"]
    return read


def _month(at: datetime) -> str:
    return f"calls_{at:%Y_%m}"


def _lookups(conn: Connection, generic: bool) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """(what, partitions read with loops, partitions expected with loops), per lookup."""
    keys = conn.execute(
        "SELECT uuid, started_at FROM call_keys ORDER BY started_at, uuid"
    ).fetchall()
    march, april = keys[CALLS * 2 // 6 + 5], keys[CALLS * 3 // 6 + 5]
    also_march = keys[CALLS * 2 // 6 + 9]
    some = [march, also_march, april]
    wanted = [k["uuid"] for k in some] + [uuid.uuid4()]  # the last one has no call
    expected = {_month(march["started_at"]): 2, _month(april["started_at"]): 1}
    assert len(expected) == 2  # two months of the six
    one = {_month(march["started_at"]): 1}
    read = partial(_partitions_read, conn, generic=generic)
    return [
        ("get_call", read(partial(get_call, call_uuid=march["uuid"])), one),
        ("check_calls", read(partial(check_calls, uuids=wanted)), expected),
        (
            "check_calls of sources",
            read(partial(check_calls, uuids=wanted, sources=["pbx", "other"])),
            expected,
        ),
        ("revocations", read(partial(revocations, call_uuids=wanted)), expected),
        (
            "set_call_privacy",
            read(
                partial(
                    set_call_privacy,
                    call_uuid=march["uuid"],
                    private=True,
                    actor="test",
                    reason="plan",
                )
            ),
            one,
        ),
        ("get_call of no call", read(partial(get_call, call_uuid=uuid.uuid4())), {}),
    ]


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_uuid_lookups_read_one_partition_per_call(db: Database, generic: bool) -> None:
    with trio.fail_after(30):
        results = await db.run(partial(_lookups, generic=generic))
    wrong = [
        f"{what} read {read}, not {expected}"
        for what, read, expected in results
        if read != expected
    ]
    assert not wrong, "\n".join(wrong)


async def test_lookups_through_the_keys_answer_as_before(db: Database) -> None:
    """The same answers as by uuid alone: present, absent, and of another source."""

    def answers(conn: Connection) -> tuple[Any, ...]:
        stored = conn.execute("SELECT uuid FROM call_keys ORDER BY uuid LIMIT 3").fetchall()
        uuids = [row["uuid"] for row in stored] + [uuid.uuid4()]
        record = get_call(conn, uuids[0])
        return (
            uuids,
            record,
            get_call(conn, uuids[-1]),
            check_calls(conn, uuids),
            check_calls(conn, uuids, sources=["other"]),
            revocations(conn, uuids),
        )

    with trio.fail_after(30):
        uuids, record, missing, states, foreign, revoked = await db.run(answers)
    assert record is not None and record.call.uuid == uuids[0] and missing is None
    assert [s.exists for s in states] == [True, True, True, False]
    assert [s.uuid for s in states] == uuids
    assert not any(s.exists for s in foreign)
    assert revoked[uuids[-1]] == "deleted" and len(revoked) <= 4
