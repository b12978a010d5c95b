"""The consumer's bookkeeping: one subscribed connection (`Link`) per nsqd (`Producer`),
and the deliveries settled on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from cj.queue.base import Delivery, EncodeJob
from cj.queue.nsq import wire
from cj.queue.nsq.connection import NsqConnection
from cj.queue.nsq.errors import NsqConnectionLost

if TYPE_CHECKING:
    from cj.queue.nsq.consumer import NsqConsumer

log = structlog.get_logger(__name__)


class Link:
    """One subscribed connection and the messages in flight on it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connection: NsqConnection | None = None
        self.in_flight: set[bytes] = set()
        self.rdy = 0
        self.draining = False
        self.drain_requested = trio.Event()
        self._idle = trio.Event()
        self._idle.set()

    @property
    def alive(self) -> bool:
        return self.connection is not None and not self.connection.closed

    def add(self, message_id: bytes) -> None:
        self.in_flight.add(message_id)
        if self._idle.is_set():
            self._idle = trio.Event()

    def settle(self, message_id: bytes) -> bool:
        """Forget `message_id`; False if it was not in flight here."""
        if message_id not in self.in_flight:
            return False
        self.in_flight.discard(message_id)
        if not self.in_flight:
            self._idle.set()
        return True

    async def wait_idle(self) -> None:
        while self.in_flight:
            await self._idle.wait()

    def send_nowait(self, command: bytes) -> bool:
        """Queue on the connection if it is up; False if it is not."""
        connection = self.connection
        if connection is None or connection.error is not None:
            return False
        connection.send_nowait(command)
        return True

    async def send(self, command: bytes) -> bool:
        """`send_nowait`, then wait if the connection's output is over its high mark."""
        if not self.send_nowait(command):
            return False
        assert self.connection is not None
        try:
            await self.connection.backpressure()
        except NsqConnectionLost:
            pass  # queued before the failure: nsqd redelivers if it was lost
        return True


class Producer:
    """The consumer's bookkeeping for one nsqd address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.retired = False
        self.link: Link | None = None
        self.scope = trio.CancelScope()


class NsqDelivery(Delivery):
    """One message delivered by nsqd, settled on the connection that delivered it."""

    def __init__(
        self, consumer: NsqConsumer, link: Link, message: wire.MessageFrame, job: EncodeJob
    ) -> None:
        self.job = job
        self.attempts = message.attempts
        self.message_id = message.id
        self.timestamp_ns = message.timestamp_ns
        self._consumer = consumer
        self._link = link

    def __repr__(self) -> str:
        return f"<NsqDelivery {self.message_id.decode(errors='replace')} attempts={self.attempts}>"

    async def ack(self) -> None:
        """FIN: nsqd forgets the message."""
        await self._consumer._settle(
            self._link, self.message_id, wire.finish(self.message_id), "fin"
        )

    async def retry(self, delay_s: float) -> None:
        """REQ with `delay_s` (whole ms, at most nsqd's default max of 1 h)."""
        command = wire.requeue(self.message_id, delay_s)
        await self._consumer._settle(self._link, self.message_id, command, "req")

    async def touch(self) -> None:
        """TOUCH: nsqd restarts this message's msg_timeout."""
        if self.message_id not in self._link.in_flight:
            log.warning("nsq_touch_settled", message_id=self.message_id.decode(errors="replace"))
            return
        if not await self._link.send(wire.touch(self.message_id)):
            log.info(
                "nsq_touch_skipped",
                address=self._link.address,
                message_id=self.message_id.decode(errors="replace"),
                reason="connection gone; nsqd redelivers the message",
            )
