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
from cj.queue.nsq.connection import NsqConnection, serve_connection, to_ms
from cj.queue.nsq.errors import NsqConfigError, NsqConnectionLost, NsqError, NsqProtocolError
from cj.queue.nsq.policy import Backoff

log = structlog.get_logger(__name__)

USER_AGENT: Final = "calljournal-nsq/0.1"
# nsqd's answers to a publish that failed on its side and may succeed if repeated.
_RETRYABLE: Final = frozenset({"E_PUB_FAILED", "E_MPUB_FAILED"})


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
        check_heartbeat(config)
        self._targets = [
            _Target(
                address=wire.format_address(
                    *wire.parse_address(address, setting="queue.nsqd_tcp_addresses")
                ),
                backoff=Backoff(max_s=config.reconnect_max_s, immediate_first=True),
            )
            for address in config.nsqd_tcp_addresses
        ]
        self._heartbeat_s = to_ms(config.heartbeat_interval_s) / 1000
        self._identify = wire.identify(
            client_id=client_id,
            hostname=socket.gethostname(),
            user_agent=USER_AGENT,
            heartbeat_interval_ms=to_ms(config.heartbeat_interval_s),
            msg_timeout_ms=None,
        )
        self._nursery = nursery
        self._give_up_after_s = give_up_after_s
        self._connect_timeout_s = connect_timeout_s
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
        """MPUB raw message bodies; each batch is atomic on nsqd's side."""
        for batch in wire.mpub_batches(bodies):
            await self._deliver(wire.mpub(self.topic, batch))

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
                try:
                    connection = await self._connection(target)
                    answer = await connection.request(command)
                except NsqConnectionLost as exc:
                    last_error = exc
                except NsqError as exc:
                    if exc.code not in _RETRYABLE:
                        raise
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
        async with target.lock:  # one connect per address, however many publishes wait
            if target.connection is None or target.connection.closed:
                target.connection = None
                target.connection = await self._nursery.start(
                    partial(
                        serve_connection,
                        target.address,
                        identify=self._identify,
                        heartbeat_interval_s=self._heartbeat_s,
                        connect_timeout_s=self._connect_timeout_s,
                    )
                )
            return target.connection

    def _close(self) -> None:
        self._closed = True


def check_heartbeat(config: QueueConfig) -> None:
    """NsqConfigError unless the heartbeat interval is one nsqd accepts (>= 1 s)."""
    if config.heartbeat_interval_s < 1:
        raise NsqConfigError(
            f"queue.heartbeat_interval_s must be at least 1 (nsqd's minimum), "
            f"got {config.heartbeat_interval_s:g}"
        )


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
