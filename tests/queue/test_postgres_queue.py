"""The embedded PostgreSQL job queue, against a real PostgreSQL.

Lease expiry is simulated by moving `available_at` in the database rather than by
waiting: the database clock is real time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from cj.config import DatabaseConfig, QueueConfig
from cj.db import Database, open_database
from cj.queue.base import ConsumerStopped, EncodeJob
from cj.queue.postgres import PostgresPublisher, enqueue, open_postgres_consumer

CONFIG = QueueConfig(kind="postgres", lease_s=300, poll_interval_s=3600)


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        yield database


async def _jobs(db: Database) -> list[dict]:  # type: ignore[type-arg]
    return await db.run(
        lambda c: c.execute(
            "SELECT id, attempts, available_at > now() + interval '1 hour' AS later,"
            " lease_token FROM jobs ORDER BY id"
        ).fetchall()
    )


async def test_publish_receive_ack(db: Database) -> None:
    job = EncodeJob(uuid.uuid4())
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as consumer:
            await PostgresPublisher(db, CONFIG.topic).publish(job)
            delivery = await consumer.receive()
            assert delivery.job == job
            assert delivery.attempts == 1
            await delivery.ack()
    assert await _jobs(db) == []


async def test_notify_wakes_a_waiting_receiver(db: Database) -> None:
    # poll_interval is an hour: only NOTIFY can deliver this within the deadline.
    job = EncodeJob(uuid.uuid4())
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as consumer:
            async with trio.open_nursery() as nursery:
                received = []

                async def wait_for_job() -> None:
                    received.append(await consumer.receive())

                nursery.start_soon(wait_for_job)
                await trio.testing.wait_all_tasks_blocked()
                await PostgresPublisher(db, CONFIG.topic).publish(job)
            assert received[0].job == job


async def test_retry_delays_redelivery(db: Database) -> None:
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as consumer:
            await PostgresPublisher(db, CONFIG.topic).publish(EncodeJob(uuid.uuid4()))
            first = await consumer.receive()
            await first.retry(7200)
            [row] = await _jobs(db)
            assert row["later"] and row["lease_token"] is None
            await db.run(lambda c: c.execute("UPDATE jobs SET available_at = now()"))
            second = await consumer.receive()
            assert second.job == first.job and second.attempts == 2
            await second.ack()
    assert await _jobs(db) == []


async def test_expired_lease_is_redelivered_and_stale_holder_cannot_settle(db: Database) -> None:
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as a, open_postgres_consumer(db, CONFIG) as b:
            await PostgresPublisher(db, CONFIG.topic).publish(EncodeJob(uuid.uuid4()))
            crashed = await a.receive()
            # a's worker dies without acking; its lease runs out.
            await db.run(
                lambda c: c.execute("UPDATE jobs SET available_at = now() - interval '1 s'")
            )
            taken_over = await b.receive()
            assert taken_over.job == crashed.job and taken_over.attempts == 2
            await crashed.ack()  # too late: must not delete b's job
            assert len(await _jobs(db)) == 1
            await taken_over.ack()
    assert await _jobs(db) == []


async def test_touch_extends_the_lease(db: Database) -> None:
    config = QueueConfig(kind="postgres", lease_s=10, poll_interval_s=3600)
    with trio.fail_after(20):
        async with open_postgres_consumer(db, config) as consumer:
            await PostgresPublisher(db, config.topic).publish(EncodeJob(uuid.uuid4()))
            delivery = await consumer.receive()
            await db.run(
                lambda c: c.execute("UPDATE jobs SET available_at = now() + interval '1 s'")
            )
            await delivery.touch()
            row = await db.run(
                lambda c: c.execute(
                    "SELECT available_at - now() > interval '5 s' AS ok FROM jobs"
                ).fetchone()
            )
            assert row is not None and row["ok"]


async def test_two_consumers_share_the_work_exactly_once(
    database_config: DatabaseConfig,
) -> None:
    jobs = [EncodeJob(uuid.uuid4()) for _ in range(200)]
    seen: list[uuid.UUID] = []
    with trio.fail_after(60):
        async with open_database(database_config) as db1, open_database(database_config) as db2:
            publisher = PostgresPublisher(db1, CONFIG.topic)
            for job in jobs:
                await publisher.publish(job)
            per_consumer = {}

            async def work(db: Database, name: str) -> None:
                count = 0
                async with open_postgres_consumer(db, CONFIG) as consumer:
                    while len(seen) < len(jobs):
                        with trio.move_on_after(2):
                            delivery = await consumer.receive()
                            seen.append(delivery.job.call_uuid)
                            await delivery.ack()
                            count += 1
                per_consumer[name] = count

            async with trio.open_nursery() as nursery:
                nursery.start_soon(work, db1, "one")
                nursery.start_soon(work, db2, "two")
    assert sorted(seen) == sorted(j.call_uuid for j in jobs)
    assert per_consumer["one"] > 0 and per_consumer["two"] > 0


async def test_unreadable_job_is_dropped_not_looped(db: Database) -> None:
    good = EncodeJob(uuid.uuid4())
    await db.run(lambda c: enqueue(c, CONFIG.topic, b"\xff not json"))
    await PostgresPublisher(db, CONFIG.topic).publish(good)
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as consumer:
            delivery = await consumer.receive()
            assert delivery.job == good
            await delivery.ack()
    assert await _jobs(db) == []


async def test_stop_receiving_ends_iteration(db: Database) -> None:
    with trio.fail_after(20):
        async with open_postgres_consumer(db, CONFIG) as consumer:
            async with trio.open_nursery() as nursery:
                results = []

                async def iterate() -> None:
                    results.extend([d async for d in consumer])

                nursery.start_soon(iterate)
                await trio.testing.wait_all_tasks_blocked()
                await consumer.stop_receiving()
            assert results == []
            with pytest.raises(ConsumerStopped):
                await consumer.receive()
