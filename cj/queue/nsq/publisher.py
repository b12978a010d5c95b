"""Publishing encode jobs to nsqd: PUB / MPUB, wait for `OK`, fail over, retry.

Publishes rotate round-robin over `queue.nsqd_tcp_addresses`; each address keeps one
lazily opened connection that concurrent publishes share (pipelined: nsqd answers in
order). A publish whose connection fails, or that nsqd refuses with E_PUB_FAILED /
E_MPUB_FAILED (topic exiting), is retried on the next address, and after every address
failed, again after a backoff, until `give_up_after_s` — then QueueUnavailable. So a
job is published at least once: an `OK` lost with its connection means the retry may
publish it twice, which consumers tolerate (DESIGN §6: re-encoding is idempotent).
Errors that retrying cannot fix (E_BAD_TOPIC, E_BAD_MESSAGE, …) raise NsqError at once.
"""

from __future__ import annotations

import itertools
import math
import re
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import structlog
import trio

from cj.config import QueueConfig
from cj.queue.base import EncodeJob, JobPublisher, QueueError, QueueUnavailable
from cj.queue.nsq import wire
from cj.queue.nsq._nursery import background_nursery
from cj.queue.nsq.connection import NsqConnection, serve_connection
from cj.queue.nsq.errors import NsqConfigError, NsqConnectionLost, NsqError, NsqProtocolError
from cj.queue.nsq.handshake import explain_refusal, options_from_config
from cj.queue.nsq.policy import Backoff

log = structlog.get_logger(__name__)

USER_AGENT: Final = "calljournal-nsq/0.1"
# nsqd's answers to a publish that failed on its side and may succeed if repeated.
_RETRYABLE: Final = frozenset({"E_PUB_FAILED", "E_MPUB_FAILED"})
# nsqd's refusal of an MPUB over its --max-body-size (protocol_v2.go).
_BODY_TOO_BIG: Final = re.compile(r"MPUB body too big (\d+) > (\d+)")


@dataclass(eq=False)
class _Target:
    """One nsqd address: its shared connection and its reconnect schedule."""

    address: str
    backoff: Backoff
    retry_at: float = -math.inf
    connection: NsqConnection | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)


class NsqPublisher(JobPublisher):
    """Publishes jobs to the configured topic. Made by `open_nsq_publisher`."""

    def __init__(
        self,
        config: QueueConfig,
        nursery: trio.Nursery,
        *,
        client_id: str,
        give_up_after_s: float | None,
        connect_timeout_s: float,
    ) -> None:
        self.topic = wire.validate_topic(config.topic)
        if not config.nsqd_tcp_addresses:
            raise NsqConfigError("queue.nsqd_tcp_addresses: the NSQ publisher needs at least one")
        self._targets = [
            _Target(
                address=wire.format_address(
                    *wire.parse_address(address, setting="queue.nsqd_tcp_addresses")
                ),
                backoff=Backoff(max_s=config.reconnect_max_s, immediate_first=True),
            )
            for address in config.nsqd_tcp_addresses
        ]
        self._options = options_from_config(
            config,
            client_id=client_id,
            hostname=socket.gethostname(),
            user_agent=USER_AGENT,
            msg_timeout_ms=None,
            connect_timeout_s=connect_timeout_s,
        )
        # Lowered when an nsqd says its --max-body-size is smaller.
        self.max_body_bytes = config.nsq_max_body_bytes
        self._nursery = nursery
        self._give_up_after_s = give_up_after_s
        self._turn = itertools.count()
        self._closed = False

    async def publish(self, job: EncodeJob) -> None:
        """PUB one job; return when nsqd has answered OK."""
        await self.publish_bytes(job.to_bytes())

    async def publish_many(self, jobs: Sequence[EncodeJob]) -> None:
        """MPUB the jobs (in batches that fit nsqd's default max body size)."""
        await self.publish_many_bytes([job.to_bytes() for job in jobs])

    async def publish_bytes(self, body: bytes) -> None:
        """PUB one raw message body (not necessarily a job) to the topic."""
        await self._deliver(wire.pub(self.topic, body))

    async def publish_many_bytes(self, bodies: Sequence[bytes]) -> None:
        """MPUB raw message bodies, in batches that fit nsqd's body size limit.

        Each batch is atomic on nsqd's side. If nsqd refuses a batch as too big (its
        --max-body-size is below queue.nsq_max_body_bytes), the limit it names is
        adopted, logged, and the rest is split again.
        """
        remaining = bodies
        while remaining:
            if 4 + 4 * len(remaining) + sum(map(len, remaining)) <= self.max_body_bytes:
                batch = remaining  # the usual case: all in one
            else:
                batch = next(wire.mpub_batches(remaining, self.max_body_bytes))
            try:
                await self._deliver(wire.mpub(self.topic, batch))
            except NsqError as exc:
                limit = self._smaller_body_limit(exc)
                if limit is None:
                    raise
                log.warning(
                    "nsq_max_body_lowered",
                    address=exc.address,
                    setting="queue.nsq_max_body_bytes",
                    configured=self.max_body_bytes,
                    nsqd_max_body_size=limit,
                )
                self.max_body_bytes = limit
                continue
            remaining = remaining[len(batch) :]

    def _smaller_body_limit(self, error: NsqError) -> int | None:
        match = _BODY_TOO_BIG.search(error.description) if error.code == "E_BAD_BODY" else None
        if match is None:
            return None
        limit = int(match[2])
        if limit >= self.max_body_bytes:
            return None  # our own split was wrong: do not loop
        if limit < 8:  # not even one message fits
            raise NsqConfigError(
                f"nsqd at {error.address} has --max-body-size {limit}: no MPUB fits"
            ) from error
        return limit

    async def _deliver(self, command: bytes) -> None:
        if self._closed:
            raise QueueError("the NSQ publisher is closed")
        deadline = (
            math.inf
            if self._give_up_after_s is None
            else trio.current_time() + self._give_up_after_s
        )
        last_error: Exception | None = None
        while True:
            start = next(self._turn)
            for i in range(len(self._targets)):
                target = self._targets[(start + i) % len(self._targets)]
                if target.retry_at > trio.current_time():
                    continue
                connection: NsqConnection | None = None
                try:
                    connection = await self._connection(target)
                    answer = await connection.request(command)
                except NsqConnectionLost as exc:
                    last_error = exc
                except NsqError as exc:
                    if exc.code not in _RETRYABLE:
                        identity = None if connection is None else connection.identity
                        raise explain_refusal(
                            exc,
                            command=command.split(b" ", 1)[0].decode(),
                            topic=self.topic,
                            channel=None,
                            identity=identity,
                        ) from exc
                    last_error = exc
                else:
                    if answer != wire.OK:
                        raise NsqProtocolError(
                            f"nsqd at {target.address} answered a publish with {answer[:80]!r}"
                        )
                    target.backoff.reset()
                    return
                delay = target.backoff.next_delay()
                target.retry_at = trio.current_time() + delay
                log.warning(
                    "nsq_publish_failed",
                    address=target.address,
                    error=str(last_error),
                    retry_in_s=round(delay, 3),
                )
            wake = min(target.retry_at for target in self._targets)
            if wake > deadline:
                raise QueueUnavailable(
                    f"could not publish to NSQ topic {self.topic!r} within "
                    f"{self._give_up_after_s:g}s: {last_error}"
                )
            await trio.sleep_until(wake)

    async def _connection(self, target: _Target) -> NsqConnection:
        connection = target.connection
        if connection is not None and connection.error is None:
            return connection  # the common case: no lock, no checkpoint
        async with target.lock:  # one connect per address, however many publishes wait
            if target.connection is None or target.connection.closed:
                target.connection = None
                target.connection = await self._nursery.start(
                    partial(serve_connection, target.address, self._options)
                )
            return target.connection

    def _close(self) -> None:
        self._closed = True


@asynccontextmanager
async def open_nsq_publisher(
    config: QueueConfig,
    *,
    client_id: str | None = None,
    give_up_after_s: float | None = 30.0,
    connect_timeout_s: float = 10.0,
) -> AsyncIterator[NsqPublisher]:
    """An NsqPublisher whose connections live until the `async with` block ends.

    `give_up_after_s` bounds how long one publish keeps retrying while no nsqd takes it
    (None: forever). Connections open on the first publish, so the caller starts even
    while nsqd is down.
    """
    async with background_nursery() as nursery:
        publisher = NsqPublisher(
            config,
            nursery,
            client_id=client_id or socket.gethostname().split(".")[0],
            give_up_after_s=give_up_after_s,
            connect_timeout_s=connect_timeout_s,
        )
        try:
            yield publisher
        finally:
            # Publisher connections need no goodbye (CLS is for subscribers); the
            # nursery's cancellation closes their sockets.
            publisher._close()
