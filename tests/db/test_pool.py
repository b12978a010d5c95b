"""The Trio-facing pool: transactions, cancellation reaching the server, outages."""

from __future__ import annotations

import psycopg
import pytest
import trio
from pydantic import SecretStr

from cj.config import DatabaseConfig
from cj.db import DatabaseUnavailable, open_database
from cj.pgcluster import free_port


def _sleeping_queries(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE 'SELECT pg_sleep(%' AND state = 'active'"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_cancelled_task_cancels_the_query_on_the_server(database_url: str) -> None:
    config = DatabaseConfig(url=SecretStr(database_url), pool_size=1)
    with trio.fail_after(30):
        async with open_database(config) as db:
            started = trio.Event()

            async def sleeper() -> None:
                def work(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
                    trio.from_thread.run_sync(started.set)
                    conn.execute("SELECT pg_sleep(60)")

                await db.run(work)

            with trio.move_on_after(10) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sleeper)
                    await started.wait()
                    # The query is (about to be) running on the server; wait until it is.
                    while await trio.to_thread.run_sync(_sleeping_queries, database_url) == 0:
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
            assert not scope.cancelled_caught, "cancellation waited for pg_sleep(60)"
            assert await trio.to_thread.run_sync(_sleeping_queries, database_url) == 0
            # The only connection went back healthy: the pool still answers.
            row = await db.run(lambda conn: conn.execute("SELECT 41 + 1 AS n").fetchone())
            assert row is not None and row["n"] == 42


async def test_run_commits_on_return_and_rolls_back_on_error(
    database_config: DatabaseConfig,
) -> None:
    with trio.fail_after(20):
        async with open_database(database_config) as db:
            await db.run(lambda c: c.execute("CREATE TABLE t (x int)"))
            await db.run(lambda c: c.execute("INSERT INTO t VALUES (1)"))

            def insert_then_fail(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")

            with pytest.raises(RuntimeError, match="boom"):
                await db.run(insert_then_fail)
            rows = await db.run(lambda c: c.execute("SELECT x FROM t").fetchall())
            assert [r["x"] for r in rows] == [1]


async def test_an_autocommit_read_opens_no_transaction_and_leaves_none_behind(
    database_config: DatabaseConfig,
) -> None:
    """Reads run without BEGIN/COMMIT; the same connection then serves a writer in a
    transaction again (its failure rolls back everything it did)."""
    with trio.fail_after(20):
        async with open_database(database_config, size=1) as db:
            await db.run(lambda c: c.execute("CREATE TABLE t (x int)"))

            def read(conn: psycopg.Connection) -> tuple[bool, int]:  # type: ignore[type-arg]
                conn.execute("SELECT 1")
                return conn.autocommit, conn.info.transaction_status

            autocommit, status = await db.run(read, autocommit=True)
            assert autocommit and status == psycopg.pq.TransactionStatus.IDLE

            def insert_then_fail(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
                assert not conn.autocommit
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")

            with pytest.raises(RuntimeError, match="boom"):
                await db.run(insert_then_fail)
            rows = await db.run(lambda c: c.execute("SELECT x FROM t").fetchall())
            assert rows == []


async def test_unreachable_server_is_database_unavailable() -> None:
    config = DatabaseConfig(
        url=SecretStr(f"postgresql://nobody@127.0.0.1:{free_port()}/x"), connect_timeout_s=2
    )
    with trio.fail_after(20), pytest.raises(DatabaseUnavailable):
        async with open_database(config):
            pass  # pragma: no cover


async def test_secret_url_is_not_in_repr(database_config: DatabaseConfig) -> None:
    assert database_config.url.get_secret_value() not in repr(database_config)


async def test_cancelling_a_call_waiting_for_a_connection_returns_at_once(
    database_url: str,
) -> None:
    config = DatabaseConfig(url=SecretStr(database_url), pool_size=1)
    with trio.fail_after(30):
        await _cancel_while_waiting(config)


async def _cancel_while_waiting(config: DatabaseConfig) -> None:
    async with open_database(config) as db:
        holding = trio.Event()
        release = trio.Event()

        def hold(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
            trio.from_thread.run_sync(holding.set)
            trio.from_thread.run(release.wait)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.run, hold)
            await holding.wait()
            # The pool's only connection is busy: this call waits for a worker slot.
            with trio.fail_after(5):  # well under the 10 s a started query may get
                with trio.move_on_after(0.1):
                    await db.run(lambda conn: conn.execute("SELECT 1"))
            release.set()
        row = await db.run(lambda conn: conn.execute("SELECT 2 AS n").fetchone())
        assert row is not None and row["n"] == 2
