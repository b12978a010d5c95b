"""The job-queue boundary between cj_api (publishes) and cj_encoder (consumes).

Delivery is at least once: a job whose consumer dies (or does not ack within the
lease) is delivered again. The database is the source of truth; the queue only wakes
the encoder, so a job lost by a broker is recovered by the reconciler.
"""

from __future__ import annotations

import abc
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class QueueError(Exception):
    """Base of queue failures."""


class QueueUnavailable(QueueError):
    """The broker or database is unreachable; retrying later may help."""


class BadJob(QueueError, ValueError):
    """A message body that is not a job we understand."""


@dataclass(frozen=True)
class EncodeJob:
    """Encode the uploaded recording of one call."""

    call_uuid: uuid.UUID

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": "encode", "call_uuid": str(self.call_uuid)}).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> EncodeJob:
        try:
            data: Any = json.loads(body)
            if not isinstance(data, dict) or data.get("kind") != "encode":
                raise ValueError("not an encode job")
            return cls(call_uuid=uuid.UUID(data["call_uuid"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise BadJob(f"unreadable job message: {exc}") from None


class Delivery(abc.ABC):
    """One delivered job. Exactly one of ack/retry should end it."""

    job: EncodeJob
    attempts: int  # deliveries so far, this one included

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done: never deliver again."""

    @abc.abstractmethod
    async def retry(self, delay_s: float) -> None:
        """Give it back, to be delivered again after `delay_s`."""

    @abc.abstractmethod
    async def touch(self) -> None:
        """Still working: extend the lease so it is not redelivered meanwhile."""


class JobPublisher(abc.ABC):
    @abc.abstractmethod
    async def publish(self, job: EncodeJob) -> None:
        """Return once the queue has accepted the job (durably for the PostgreSQL queue)."""

    async def publish_many(self, jobs: Sequence[EncodeJob]) -> None:
        """Publish several jobs; implementations batch them where the broker can."""
        for job in jobs:
            await self.publish(job)

    def transactional(self) -> Callable[[Any, Sequence[EncodeJob]], None] | None:
        """For a queue kept in the database: a function that enqueues jobs inside the
        caller's transaction (given its connection), so that a job exists exactly when
        the row needing it commits. None for brokers, which are published to after."""
        return None


class ConsumerStopped(QueueError):
    """`receive` after `stop_receiving`: no more deliveries will come."""


class JobConsumer(abc.ABC):
    """Deliveries, one at a time: `async for delivery in consumer`."""

    @abc.abstractmethod
    async def receive(self) -> Delivery:
        """The next delivery; raises ConsumerStopped once stopped and drained."""

    @abc.abstractmethod
    async def stop_receiving(self) -> None:
        """Graceful shutdown: take no new jobs; in-flight ones may still be acked."""

    def __aiter__(self) -> JobConsumer:
        return self

    async def __anext__(self) -> Delivery:
        try:
            return await self.receive()
        except ConsumerStopped:
            raise StopAsyncIteration from None
