"""The embedded job queue: a `jobs` table in PostgreSQL.

A consumer claims one job at a time with `FOR UPDATE SKIP LOCKED`, which also sets a
lease: the job's `available_at` moves `lease_s` into the future and a fresh
`lease_token` marks the holder. Ack deletes the job, retry moves `available_at` by
the delay, touch pushes the lease further. A consumer that dies simply stops
renewing, and the job becomes available again when its lease runs out.

Waiting consumers are woken by `LISTEN/NOTIFY` on a dedicated connection; if that
connection is down they still poll every `poll_interval_s`, so a lost notification
only delays work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import structlog
import trio

from cj.config import QueueConfig
from cj.db import Connection, Database, DatabaseError
from cj.queue.base import (
    BadJob,
    ConsumerStopped,
    Delivery,
    EncodeJob,
    JobConsumer,
    JobPublisher,
    QueueUnavailable,
)

log = structlog.get_logger(__name__)


def notify_channel(topic: str) -> str:
    return f"cj_jobs_{topic}".replace("-", "_").replace(".", "_")[:63]


def enqueue(conn: Connection, topic: str, body: bytes, delay_s: float = 0.0) -> None:
    """Insert a job (in the caller's transaction) and notify listeners on commit."""
    enqueue_many(conn, topic, [body], delay_s)


def enqueue_many(
    conn: Connection, topic: str, bodies: Sequence[bytes], delay_s: float = 0.0
) -> None:
    """Insert jobs in one statement; one notification wakes the consumers."""
    conn.execute(
        """INSERT INTO jobs (topic, body, available_at)
           SELECT %s, body, now() + make_interval(secs => %s) FROM unnest(%s::bytea[]) AS body""",
        (topic, delay_s, list(bodies)),
    )
    conn.execute("SELECT pg_notify(%s, '')", (notify_channel(topic),))


def _relaxed(conn: Connection) -> None:
    """Claims and acks need not wait for the WAL flush: if the server crashes and loses
    one, the job is merely delivered again (at-least-once holds). Publishes do wait."""
    conn.execute("SET LOCAL synchronous_commit TO off")


def _claim(conn: Connection, topic: str, lease_s: float) -> dict[str, Any] | None:
    _relaxed(conn)
    return conn.execute(
        """WITH next AS (
               SELECT id FROM jobs
                WHERE topic = %s AND available_at <= now()
                ORDER BY available_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED)
           UPDATE jobs j
              SET attempts = j.attempts + 1,
                  available_at = now() + make_interval(secs => %s),
                  lease_token = gen_random_uuid()
             FROM next
            WHERE j.id = next.id
        RETURNING j.id, j.body, j.attempts, j.lease_token""",
        (topic, lease_s),
    ).fetchone()


def _delete_job(job_id: int) -> Callable[[Connection], object]:
    return lambda conn: conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))


class PostgresPublisher(JobPublisher):
    def __init__(self, db: Database, topic: str) -> None:
        self._db = db
        self._topic = topic

    async def publish(self, job: EncodeJob) -> None:
        await self.publish_many([job])

    def transactional(self) -> Callable[[Connection, Sequence[EncodeJob]], None]:
        topic = self._topic
        return lambda conn, jobs: enqueue_many(conn, topic, [job.to_bytes() for job in jobs])

    async def publish_many(self, jobs: Sequence[EncodeJob]) -> None:
        bodies = [job.to_bytes() for job in jobs]
        try:
            await self._db.run(lambda conn: enqueue_many(conn, self._topic, bodies))
        except DatabaseError as exc:
            raise QueueUnavailable(f"cannot enqueue jobs: {exc}") from exc


class PostgresDelivery(Delivery):
    def __init__(
        self,
        db: Database,
        job: EncodeJob,
        job_id: int,
        attempts: int,
        lease_token: uuid.UUID,
        lease_s: float,
    ) -> None:
        self.job = job
        self.attempts = attempts
        self._db = db
        self._id = job_id
        self._token = lease_token
        self._lease_s = lease_s

    async def ack(self) -> None:
        await self._settle(
            "DELETE FROM jobs WHERE id = %s AND lease_token = %s RETURNING 1",
            (self._id, self._token),
            "ack",
        )

    async def retry(self, delay_s: float) -> None:
        await self._settle(
            """UPDATE jobs SET available_at = now() + make_interval(secs => %s),
                              lease_token = NULL
                WHERE id = %s AND lease_token = %s RETURNING 1""",
            (max(0.0, delay_s), self._id, self._token),
            "retry",
        )

    async def touch(self) -> None:
        await self._settle(
            """UPDATE jobs SET available_at = now() + make_interval(secs => %s)
                WHERE id = %s AND lease_token = %s RETURNING 1""",
            (self._lease_s, self._id, self._token),
            "touch",
        )

    async def _settle(self, sql: str, params: tuple[object, ...], action: str) -> None:
        def settle(conn: Connection) -> object:
            _relaxed(conn)
            return conn.execute(sql, params).fetchone()

        try:
            row = await self._db.run(settle)
        except DatabaseError as exc:
            raise QueueUnavailable(f"cannot {action} job {self._id}: {exc}") from exc
        if row is None:
            # The lease expired and someone else holds the job now; they will finish it.
            log.warning("job_lease_lost", job_id=self._id, action=action)


class PostgresConsumer(JobConsumer):
    """Claims jobs on demand: each `receive()` takes exactly one job."""

    def __init__(self, db: Database, config: QueueConfig) -> None:
        self._db = db
        self._config = config
        self._wakeup = trio.Event()
        self._stopped = False

    async def receive(self) -> Delivery:
        while True:
            if self._stopped:
                raise ConsumerStopped
            wakeup = self._wakeup
            try:
                row = await self._db.run(
                    lambda conn: _claim(conn, self._config.topic, self._config.lease_s)
                )
            except DatabaseError as exc:
                log.warning("job_claim_failed", error=str(exc))
                row = None
            if row is None:
                with trio.move_on_after(await self._until_next_due()):
                    await wakeup.wait()
                continue
            try:
                job = EncodeJob.from_bytes(bytes(row["body"]))
            except BadJob as exc:
                # Garbage would be claimed forever; drop it loudly.
                log.error("job_unreadable_dropped", job_id=row["id"], error=str(exc))
                job_id = row["id"]
                await self._db.run(_delete_job(job_id))
                continue
            return PostgresDelivery(
                self._db, job, row["id"], row["attempts"], row["lease_token"], self._config.lease_s
            )

    async def _until_next_due(self) -> float:
        """Seconds until the earliest delayed or leased job is due (at most the poll interval)."""
        try:
            row = await self._db.run(
                lambda conn: conn.execute(
                    "SELECT extract(epoch FROM min(available_at) - now())::float8 AS due_in"
                    " FROM jobs WHERE topic = %s",
                    (self._config.topic,),
                ).fetchone()
            )
        except DatabaseError:
            return self._config.poll_interval_s
        due_in = row["due_in"] if row is not None else None
        if due_in is None:
            return self._config.poll_interval_s
        return min(self._config.poll_interval_s, max(0.0, float(due_in)) + 0.005)

    async def stop_receiving(self) -> None:
        self._stopped = True
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

    async def listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake waiting receivers on NOTIFY; reconnects forever. Run in a nursery."""
        channel = notify_channel(self._config.topic)
        delay = 0.5
        started = False
        while True:
            try:
                conn = await trio.to_thread.run_sync(
                    lambda: psycopg.connect(self._db.conninfo, autocommit=True)
                )
            except psycopg.Error as exc:
                log.warning("job_listen_connect_failed", error=str(exc), retry_in_s=delay)
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(delay)
                delay = min(delay * 2, self._config.poll_interval_s)
                continue
            try:
                await trio.to_thread.run_sync(conn.execute, f'LISTEN "{channel}"')
                delay = 0.5
                self.wake()  # anything that arrived while we were not listening
                if not started:
                    task_status.started()
                    started = True
                while True:
                    await trio.lowlevel.wait_readable(conn.fileno())
                    conn.pgconn.consume_input()
                    if conn.pgconn.notifies() is not None:
                        while conn.pgconn.notifies() is not None:
                            pass
                        self.wake()
                    if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                        raise psycopg.OperationalError("listen connection lost")
            except psycopg.Error as exc:
                log.warning("job_listen_lost", error=str(exc))
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(conn.close)


@asynccontextmanager
async def open_postgres_consumer(
    db: Database, config: QueueConfig
) -> AsyncIterator[PostgresConsumer]:
    """A consumer whose NOTIFY listener runs for the lifetime of the block."""
    consumer = PostgresConsumer(db, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(consumer.listen)
        try:
            yield consumer
        finally:
            await consumer.stop_receiving()
            nursery.cancel_scope.cancel()
