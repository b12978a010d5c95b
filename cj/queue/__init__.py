"""The job queue between cj_api and cj_encoder: PostgreSQL (embedded) or NSQ.

`open_publisher` / `open_consumer` pick the implementation from `QueueConfig.kind`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cj.config import QueueConfig
from cj.db import Database
from cj.queue.base import (
    BadJob,
    ConsumerStopped,
    Delivery,
    EncodeJob,
    JobConsumer,
    JobPublisher,
    QueueError,
    QueueUnavailable,
)

__all__ = [
    "BadJob",
    "ConsumerStopped",
    "Delivery",
    "EncodeJob",
    "JobConsumer",
    "JobPublisher",
    "QueueError",
    "QueueUnavailable",
    "open_consumer",
    "open_publisher",
]


@asynccontextmanager
async def open_publisher(
    config: QueueConfig, db: Database, *, client_id: str | None = None
) -> AsyncIterator[JobPublisher]:
    """A publisher for the configured queue (the PostgreSQL one uses `db`)."""
    if config.kind == "postgres":
        from cj.queue.postgres import PostgresPublisher

        yield PostgresPublisher(db, config.topic)
        return
    from cj.queue.nsq import open_nsq_publisher

    async with open_nsq_publisher(config, client_id=client_id) as publisher:
        yield publisher


@asynccontextmanager
async def open_consumer(
    config: QueueConfig, db: Database, *, client_id: str | None = None
) -> AsyncIterator[JobConsumer]:
    """A consumer of the configured queue for the lifetime of the block."""
    if config.kind == "postgres":
        from cj.queue.postgres import open_postgres_consumer

        async with open_postgres_consumer(db, config) as consumer:
            yield consumer
        return
    from cj.queue.nsq import open_nsq_consumer

    async with open_nsq_consumer(config, client_id=client_id) as nsq_consumer:
        yield nsq_consumer
