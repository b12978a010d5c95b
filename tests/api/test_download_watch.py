"""The download watcher's fallback re-check and the refused-attempt aggregator, on a real
PostgreSQL (the LISTEN path is exercised end to end in tests/hostile/test_downloads.py)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Database, open_database
from cj.db.downloads import parse_notification
from cj.db.ingest import upsert_call
from cj.db.recordings import create_recording
from cj_api.audit_buffer import OVERFLOW_ADDRESS, AuditAggregator
from cj_api.download_watch import DownloadRegistry, DownloadWatcher
from tests.factories import make_call

TIMEOUT_S = 20


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        yield database


async def recorded_call(db: Database) -> uuid.UUID:
    call = make_call()
    await db.run(functools.partial(upsert_call, call=call))
    await db.run(
        functools.partial(
            create_recording,
            call_uuid=call.uuid,
            original_name="rec.wav",
            size=10,
            sha256="0" * 64,
            storage="temp",
            key="k",
        )
    )
    return call.uuid


async def test_recheck_revokes_what_changed_while_nobody_listened(db: Database) -> None:
    registry = DownloadRegistry()
    watcher = DownloadWatcher(registry, db, recheck_interval_s=1.0)
    with trio.fail_after(TIMEOUT_S):
        private, purged, deleted, fine = [await recorded_call(db) for _ in range(4)]
        with (
            registry.watch(private) as w_private,
            registry.watch(purged) as w_purged,
            registry.watch(deleted) as w_deleted,
            registry.watch(fine) as w_fine,
        ):
            assert len(registry) == 4
            await db.run(
                lambda conn: conn.execute(
                    "UPDATE calls SET private = true WHERE uuid = %s", (private,)
                )
            )
            await db.run(
                lambda conn: conn.execute(
                    "UPDATE recordings SET status = 'purged' WHERE call_uuid = %s", (purged,)
                )
            )
            await db.run(lambda conn: conn.execute("DELETE FROM calls WHERE uuid = %s", (deleted,)))
            await watcher.recheck()
        assert len(registry) == 0
    assert (w_private.revoked, w_purged.revoked, w_deleted.revoked) == (
        "private",
        "purged",
        "deleted",
    )
    assert w_fine.revoked is None


def test_notifications_are_parsed_strictly() -> None:
    some = uuid.uuid4()
    assert parse_notification(f"private:{some}") == (some, "private")
    assert parse_notification(f"purged:{some}") == (some, "purged")
    assert parse_notification(f"other:{some}") is None
    assert parse_notification("private:not-a-uuid") is None


async def test_refused_attempts_are_counted_per_minute_in_one_row(db: Database) -> None:
    now = [datetime(2026, 3, 2, 6, 0, 10, tzinfo=UTC)]
    aggregator = AuditAggregator(db, flush_interval_s=1.0, max_keys=2, clock=lambda: now[0])
    with trio.fail_after(TIMEOUT_S):
        for _ in range(1000):
            aggregator.note(action="download", actor="(none)", address="10.0.0.1", result="u")
        await aggregator.flush()
        for _ in range(500):  # the same minute: the same row grows
            aggregator.note(action="download", actor="(none)", address="10.0.0.1", result="u")
        aggregator.note(action="download", actor="(none)", address="10.0.0.2", result="u")
        aggregator.note(action="download", actor="(none)", address="10.0.0.3", result="u")
        await aggregator.flush()
        now[0] += timedelta(minutes=1)
        aggregator.note(action="download", actor="(none)", address="10.0.0.1", result="u")
        await aggregator.flush()
        rows = await db.run(
            lambda conn: conn.execute("SELECT address, count, minute FROM audit_log").fetchall()
        )
    first = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    assert sorted((r["minute"], r["address"], r["count"]) for r in rows) == [
        (first, OVERFLOW_ADDRESS, 1),  # past max_keys, the spread is summarised
        (first, "10.0.0.1", 1500),
        (first, "10.0.0.2", 1),
        (first + timedelta(minutes=1), "10.0.0.1", 1),
    ]
    assert aggregator.pending == 0


async def test_the_watcher_survives_its_connection_being_killed(db: Database) -> None:
    """The database restarting (or a DBA killing the backend) must not stop cj-api: the
    watcher listens again, and downloads are re-checked meanwhile."""
    registry = DownloadRegistry()
    watcher = DownloadWatcher(registry, db, recheck_interval_s=1.0, connect_timeout_s=2.0)
    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            await watcher.wait_listening(True)
            killed = await db.run(
                lambda conn: conn.execute(
                    "SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE application_name = 'cj-api-download-watch') t"
                ).fetchone()
            )
            assert killed is not None and killed["n"] == 1
            await watcher.wait_listening(False)
            await watcher.wait_listening(True)  # back, and the task did not fail
            call_uuid = await recorded_call(db)
            with registry.watch(call_uuid) as watch:
                await db.run(
                    lambda conn: conn.execute(
                        "UPDATE calls SET private = true WHERE uuid = %s", (call_uuid,)
                    )
                )
                await watch.wait_revoked()  # heard on the new connection
            nursery.cancel_scope.cancel()
    assert watch.revoked == "private"
