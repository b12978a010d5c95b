"""Partitioned calls (sql/0006): keys, moves, the default partition, the migration."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg.rows import dict_row

from cj.config import DatabaseConfig
from cj.db import Connection, Database
from cj.db.calls import get_call
from cj.db.ingest import ForeignCall, UpsertOutcome, upsert_call, upsert_calls
from cj.db.migrate import default_sql_dir, migrate
from cj.db.partitions import (
    forget_known,
    list_partitions,
    maintain,
    run_partition_maintenance,
)
from cj.db.recordings import create_recording
from tests.db.support import run
from tests.factories import make_call

SHA = "a" * 64


def where(conn: Connection, call_uuid: uuid.UUID) -> list[tuple[str, datetime]]:
    """(partition, started_at) of every row of the call, and the key."""
    rows = conn.execute(
        "SELECT tableoid::regclass::text AS part, started_at FROM calls WHERE uuid = %s",
        (call_uuid,),
    ).fetchall()
    return [(row["part"], row["started_at"]) for row in rows]


def key_of(conn: Connection, call_uuid: uuid.UUID) -> datetime | None:
    row = conn.execute("SELECT started_at FROM call_keys WHERE uuid = %s", (call_uuid,)).fetchone()
    return row["started_at"] if row else None


async def test_a_month_gets_its_partition_on_first_write(db: Database) -> None:
    old = make_call(started_at=datetime(2019, 5, 17, 10, tzinfo=UTC))  # a backfill
    assert await run(db, lambda c: upsert_call(c, old)) is UpsertOutcome.INSERTED
    assert await run(db, lambda c: where(c, old.uuid)) == [("calls_2019_05", old.started_at)]
    names = [p.name for p in await run(db, list_partitions)]
    assert "calls_2019_05" in names and names[-1] == "calls_default"


@pytest.mark.parametrize(
    "started", [datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=800)]
)
async def test_odd_dates_are_kept_in_the_default_partition(db: Database, started: datetime) -> None:
    call = make_call(started_at=started)
    assert await run(db, lambda c: upsert_call(c, call)) is UpsertOutcome.INSERTED
    assert await run(db, lambda c: where(c, call.uuid)) == [("calls_default", started)]
    assert await run(db, lambda c: upsert_call(c, call)) is UpsertOutcome.UNCHANGED
    stored = await run(db, lambda c: get_call(c, call.uuid))
    assert stored is not None and stored.call == call


async def test_a_corrected_start_moves_the_call_and_keeps_its_recording(db: Database) -> None:
    first = make_call(started_at=datetime(2025, 1, 31, 23, 59, tzinfo=UTC))
    await run(db, lambda c: upsert_call(c, first))
    await run(
        db,
        lambda c: create_recording(
            c, first.uuid, original_name="a.wav", size=10, sha256=SHA, storage="t", key="k"
        ),
    )
    corrected = make_call(
        call_uuid=first.uuid, started_at=datetime(2025, 3, 1, 0, 1, tzinfo=UTC), private=True
    )
    assert await run(db, lambda c: upsert_call(c, corrected)) is UpsertOutcome.UPDATED
    assert await run(db, lambda c: where(c, first.uuid)) == [
        ("calls_2025_03", corrected.started_at)
    ]
    assert await run(db, lambda c: key_of(c, first.uuid)) == corrected.started_at
    stored = await run(db, lambda c: get_call(c, first.uuid))
    assert stored is not None and stored.call == corrected and stored.recording is not None
    audited = await run(
        db,
        lambda c: c.execute(
            "SELECT result FROM audit_log WHERE action = 'privacy' AND call_uuid = %s",
            (first.uuid,),
        ).fetchall(),
    )
    assert [row["result"] for row in audited] == ["private"]
    # Sent again at its first start: it moves back, still one row.
    back = make_call(call_uuid=first.uuid, started_at=first.started_at, private=True)
    assert await run(db, lambda c: upsert_call(c, back)) is UpsertOutcome.UPDATED
    assert await run(db, lambda c: where(c, first.uuid)) == [("calls_2025_01", first.started_at)]


async def test_one_uuid_at_two_starts_in_one_batch_is_one_call(db: Database) -> None:
    a = make_call(started_at=datetime(2025, 4, 2, tzinfo=UTC))
    b = make_call(call_uuid=a.uuid, started_at=datetime(2025, 6, 2, tzinfo=UTC))
    results = await run(db, lambda c: upsert_calls(c, [a, b]))
    assert results == [UpsertOutcome.INSERTED, UpsertOutcome.UPDATED]
    assert await run(db, lambda c: where(c, a.uuid)) == [("calls_2025_06", b.started_at)]


async def test_a_foreign_call_with_another_start_is_left_alone(db: Database) -> None:
    mine = make_call(source="pbx-1", started_at=datetime(2025, 2, 2, tzinfo=UTC))
    await run(db, lambda c: upsert_call(c, mine))
    other = make_call(
        call_uuid=mine.uuid, source="pbx-2", started_at=datetime(2025, 5, 5, tzinfo=UTC)
    )
    assert await run(db, lambda c: upsert_call(c, other)) == ForeignCall("pbx-1")
    assert await run(db, lambda c: where(c, mine.uuid)) == [("calls_2025_02", mine.started_at)]


async def test_sql_cannot_store_a_uuid_twice_and_a_delete_takes_the_key(db: Database) -> None:
    call = make_call(started_at=datetime(2025, 2, 2, tzinfo=UTC))
    await run(db, lambda c: upsert_call(c, call))

    def duplicate(conn: Connection) -> None:
        conn.execute(
            """INSERT INTO calls (uuid, caller_number, caller_digits_rev, destination_number,
                                  destination_digits_rev, started_at)
               VALUES (%s, '1', '1', '2', '2', '2025-07-07 00:00+00')""",
            (call.uuid,),
        )

    with pytest.raises(psycopg.errors.UniqueViolation, match="already stored"):
        await run(db, duplicate)
    # An UPDATE of started_at by hand moves the key along (across months too).
    await run(
        db,
        lambda c: c.execute(
            "UPDATE calls SET started_at = '2025-08-08 00:00+00', answered_at = NULL,"
            " ended_at = NULL WHERE uuid = %s",
            (call.uuid,),
        ),
    )
    assert await run(db, lambda c: key_of(c, call.uuid)) == datetime(2025, 8, 8, tzinfo=UTC)
    await run(db, lambda c: c.execute("DELETE FROM calls WHERE uuid = %s", (call.uuid,)))
    assert await run(db, lambda c: key_of(c, call.uuid)) is None


async def test_maintain_gives_months_in_the_default_their_partition(db: Database) -> None:
    # A month ingest never saw (rows written by hand, or after its partition was dropped).
    call = make_call(started_at=datetime(2018, 3, 3, tzinfo=UTC))

    def write_by_hand(conn: Connection) -> None:
        conn.execute(
            """INSERT INTO calls (uuid, caller_number, caller_digits_rev, destination_number,
                                  destination_digits_rev, started_at)
               VALUES (%s, '1', '1', '2', '2', %s)""",
            (call.uuid, call.started_at),
        )
        create_recording(
            conn, call.uuid, original_name="a.wav", size=1, sha256=SHA, storage="t", key="k"
        )

    await run(db, write_by_hand)
    assert await run(db, lambda c: where(c, call.uuid)) == [("calls_default", call.started_at)]
    assert await run(db, maintain) >= 1
    assert await run(db, lambda c: where(c, call.uuid)) == [("calls_2018_03", call.started_at)]
    assert await run(db, lambda c: key_of(c, call.uuid)) == call.started_at
    stored = await run(db, lambda c: get_call(c, call.uuid))
    assert stored is not None and stored.recording is not None
    assert await run(db, maintain) == 0
    await run(db, forget_known)


def _legacy_dir(tmp_path: Path) -> Path:
    legacy = tmp_path / "sql"
    legacy.mkdir()
    for path in sorted(default_sql_dir().glob("*.sql")):
        if int(path.name[:4]) < 6:
            shutil.copy(path, legacy / path.name)
    return legacy


def _rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT c.*, r.status AS r_status FROM calls c"
            " LEFT JOIN recordings r ON r.call_uuid = c.uuid ORDER BY c.uuid"
        ).fetchall()


def test_the_migration_keeps_every_row(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url
    migrate(url, _legacy_dir(tmp_path))
    starts = [
        datetime(2024, 12, 31, 23, 30, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2025, 6, 15, 12, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),  # an odd date: the default partition
    ]
    with psycopg.connect(url) as conn:
        for i, started in enumerate(starts * 5):
            call_uuid = uuid.uuid4()
            conn.execute(
                """INSERT INTO calls (uuid, source, caller_number, caller_digits_rev,
                                      destination_number, destination_digits_rev, started_at,
                                      private, raw, caller_extension)
                   VALUES (%s, 'pbx', %s, %s, '2', '2', %s, %s, '{"n": 1}', 'dan')""",
                (call_uuid, str(i), str(i)[::-1], started, i % 3 == 0),
            )
            if i % 2:
                conn.execute(
                    "INSERT INTO recordings (call_uuid, status, original_name, original_size,"
                    " original_sha256) VALUES (%s, 'uploaded', 'a', 1, %s)",
                    (call_uuid, SHA),
                )
    before = _rows(url)
    assert [m.version for m in migrate(url)] == [6]
    assert _rows(url) == before
    with psycopg.connect(url, row_factory=dict_row) as conn:
        counts = {
            row["part"]: row["n"]
            for row in conn.execute(
                "SELECT tableoid::regclass::text AS part, count(*) AS n FROM calls GROUP BY 1"
            )
        }
        keys = conn.execute("SELECT count(*) AS n FROM call_keys").fetchone()
        # Recordings still cascade from their call.
        victim = before[1]["uuid"]
        conn.execute("DELETE FROM calls WHERE uuid = %s", (victim,))
        left = conn.execute(
            "SELECT count(*) AS n FROM recordings WHERE call_uuid = %s", (victim,)
        ).fetchone()
    assert counts == {
        "calls_2024_12": 5,
        "calls_2025_01": 5,
        "calls_2025_06": 5,
        "calls_default": 5,
    }
    assert keys is not None and keys["n"] == 20
    assert left is not None and left["n"] == 0


async def test_cj_api_maintenance_splits_the_default_when_it_starts(db: Database) -> None:
    call = make_call(started_at=datetime(2017, 4, 4, tzinfo=UTC))
    await run(
        db,
        lambda c: c.execute(
            """INSERT INTO calls (uuid, caller_number, caller_digits_rev, destination_number,
                                  destination_digits_rev, started_at)
               VALUES (%s, '1', '1', '2', '2', %s)""",
            (call.uuid, call.started_at),
        ),
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_partition_maintenance, db)
            assert await db.run(lambda c: where(c, call.uuid)) == [
                ("calls_2017_04", call.started_at)
            ]
            nursery.cancel_scope.cancel()


async def test_two_processes_making_one_month_race_without_an_error(
    database_config: DatabaseConfig,
) -> None:
    # A holds the partition lock with the month made but not committed; B asks for the
    # same month and waits on the lock; once A commits, B finds the month made (its
    # catalog cache, read before, did not know it: DuplicateTable here, before).
    url = database_config.url.get_secret_value()
    month = datetime(2018, 3, 10, tzinfo=UTC)
    first = psycopg.connect(url)
    second = psycopg.connect(url, autocommit=True)
    watcher = psycopg.connect(url, autocommit=True)
    try:
        assert first.execute("SELECT cj_calls_create_partition(%s)", (month,)).fetchone() == (True,)
        second_pid = second.info.backend_pid
        second.execute("SELECT to_regclass('calls_2018_03')")  # warm B's catalog cache
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                answer: list[Any] = []

                def ask() -> None:
                    row = second.execute("SELECT cj_calls_create_partition(%s)", (month,))
                    answer.append(row.fetchone())

                nursery.start_soon(trio.to_thread.run_sync, ask)
                # Only PostgreSQL knows when B waits on the lock: ask it (no event to wait on).
                while not watcher.execute(  # noqa: ASYNC110
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'advisory'",
                    (second_pid,),
                ).fetchone():
                    await trio.sleep(0.01)
                first.commit()
        assert answer == [(False,)]
        assert watcher.execute("SELECT to_regclass('calls_2018_03')::text").fetchone() == (
            "calls_2018_03",
        )
    finally:
        for conn in (first, second, watcher):
            conn.close()
