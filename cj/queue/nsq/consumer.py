"""Consuming encode jobs from an NSQ channel.

One connection per nsqd: the static `queue.nsqd_tcp_addresses`, or — when
`queue.lookupd_http_addresses` is set — the producers nsqlookupd reports for the topic,
polled every `lookupd_poll_interval_s` (±10 % jitter). New producers are connected;
vanished ones are drained and closed. Each connection IDENTIFYs (heartbeat interval,
msg_timeout = `lease_s`, client id), SUBscribes, and gets a share of `max_in_flight` as
its RDY count (at least 1 each). A lost connection is reconnected with exponential
backoff and jitter up to `reconnect_max_s`; nsqd redelivers what was in flight on it
after msg_timeout.

A delivery is settled on the connection that delivered it: ack → FIN, retry(delay) →
REQ with the delay in ms, touch → TOUCH. If that connection is gone, they only log:
nsqd has already put the message back. A body that is not a job is FINished with an
error log (REQ would bring it back forever).

Graceful shutdown: `stop_receiving()` sends RDY 0 everywhere, requeues (REQ 0) what
was received but not handed out, and ends `receive()` with ConsumerStopped; deliveries
already handed out can still be acked. Each connection then waits until nothing is in
flight on it, sends CLS, and closes. Leaving the `async with` block REQs whatever is
still unsettled, so another consumer gets it at once rather than after msg_timeout —
however the block is left: on cancellation the connections' tasks are shielded
(`background_nursery`) until the REQs and CLS are out, within `close_timeout_s`.

A refusal that reconnecting cannot cure (settings nsqd rejects, TLS or AUTH it
requires, a secret or topic/channel its auth server refuses) stops the consumer:
`receive()` and `wait_subscribed()` raise it (NsqConfigError / NsqAuthError, naming the
key and nsqd's limit) instead of a reconnect loop.
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

import httpx
import structlog
import trio

from cj.config import QueueConfig
from cj.queue.base import BadJob, ConsumerStopped, EncodeJob, JobConsumer
from cj.queue.nsq import lookupd, wire
from cj.queue.nsq._nursery import background_nursery
from cj.queue.nsq.connection import NsqConnection, serve_connection
from cj.queue.nsq.errors import (
    NsqConfigError,
    NsqConnectionLost,
    NsqError,
    NsqProtocolError,
)
from cj.queue.nsq.handshake import explain_refusal, options_from_config, to_ms
from cj.queue.nsq.links import Link, NsqDelivery, Producer
from cj.queue.nsq.policy import Backoff, distribute_rdy, is_fatal, jittered
from cj.queue.nsq.publisher import USER_AGENT

log = structlog.get_logger(__name__)

_LOOKUPD_JITTER: Final = 0.1
# receive() hands out at most this many buffered messages before letting others run.
_BATCH: Final = 64
_LOOKUPD_TIMEOUT_S: Final = 10.0


class NsqConsumer(JobConsumer):
    """Receives jobs from the configured topic/channel. Made by `open_nsq_consumer`."""

    def __init__(self, config: QueueConfig, *, client_id: str, close_timeout_s: float) -> None:
        self.topic = wire.validate_topic(config.topic)
        self.channel = wire.validate_channel(config.channel)
        if config.lease_s < 1:
            raise NsqConfigError(
                f"queue.lease_s (NSQ msg_timeout) must be at least 1 (nsqd's minimum), "
                f"got {config.lease_s:g}"
            )
        self._lookupds = tuple(config.lookupd_http_addresses)
        lookupd.check_lookupds(self._lookupds)
        self._static = (
            ()
            if self._lookupds
            else tuple(
                wire.format_address(*wire.parse_address(a, setting="queue.nsqd_tcp_addresses"))
                for a in config.nsqd_tcp_addresses
            )
        )
        if not self._lookupds and not self._static:
            raise NsqConfigError(
                "the NSQ consumer needs queue.nsqd_tcp_addresses or queue.lookupd_http_addresses"
            )
        self._config = config
        self._max_in_flight = config.max_in_flight
        self._msg_timeout_ms = to_ms(config.lease_s)
        self._options = options_from_config(
            config,
            client_id=client_id,
            hostname=socket.gethostname(),
            user_agent=USER_AGENT,
            msg_timeout_ms=self._msg_timeout_ms,
        )
        self._heartbeat_s = self._options.heartbeat_interval_s
        self._close_timeout_s = close_timeout_s
        self._producers: dict[str, Producer] = {}
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Link, wire.MessageFrame]](
            math.inf
        )
        self._rdy_lock = trio.Lock()
        self._unyielded = 0
        self._stopping = False
        self._lookupd_scope = trio.CancelScope()
        self._links_changed = trio.Event()
        self._running = 0
        self._all_done = trio.Event()
        self._nursery: trio.Nursery | None = None
        # A refusal retrying cannot cure (settings, TLS, AUTH): receive() raises it.
        self.failure: NsqConfigError | NsqError | None = None
        self._ever_subscribed = False

    # --- JobConsumer ----------------------------------------------------------------

    async def receive(self) -> NsqDelivery:
        """The next job; ConsumerStopped after `stop_receiving`.

        Messages already read are handed out without a trip through the scheduler (up
        to `_BATCH` in a row): the acks of a whole batch then leave in one write.
        """
        while True:
            try:
                if self._unyielded < _BATCH:
                    try:
                        link, message = self._inbox.receive_nowait()
                        self._unyielded += 1
                    except trio.WouldBlock:
                        self._unyielded = 0
                        link, message = await self._inbox.receive()
                else:
                    self._unyielded = 0
                    link, message = await self._inbox.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                if self.failure is not None:
                    raise self.failure from None
                raise ConsumerStopped("the NSQ consumer is stopped") from None
            if not link.alive:
                # Its connection died while it waited here: nsqd has requeued it, and an
                # ack could not reach nsqd anyway, so don't spend work on it.
                log.debug("nsq_message_dropped", address=link.address, reason="connection gone")
                continue
            try:
                job = EncodeJob.from_bytes(message.body)
            except BadJob as exc:
                log.error(
                    "nsq_bad_message",
                    address=link.address,
                    message_id=message.id.decode(errors="replace"),
                    attempts=message.attempts,
                    body=message.body[:200],
                    error=str(exc),
                )
                await self._settle(link, message.id, wire.finish(message.id), "fin")
                continue
            return NsqDelivery(self, link, message, job)

    async def stop_receiving(self) -> None:
        """RDY 0 everywhere, requeue what nobody received yet, end `receive()`."""
        if self._stopping:
            return
        self._stopping = True
        log.info("nsq_consumer_stopping", topic=self.topic, channel=self.channel)
        self._lookupd_scope.cancel()
        self._inbox_send.close()
        unreceived: list[tuple[Link, wire.MessageFrame]] = []
        while True:
            try:
                unreceived.append(self._inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for producer in list(self._producers.values()):
            self._retire(producer)
            if producer.link is not None:
                await self._set_rdy(producer.link, 0)
        for link, message in unreceived:
            await self._settle(link, message.id, wire.requeue(message.id, 0), "req")

    # --- observability ----------------------------------------------------------------

    @property
    def subscribed_addresses(self) -> list[str]:
        """nsqd addresses with a live subscription, sorted."""
        return sorted(link.address for link in self._links())

    async def wait_subscribed(self, count: int = 1) -> None:
        """Return once at least `count` connections are subscribed.

        Raises the consumer's `failure` if it gave up (a refusal retrying cannot cure).
        """
        while len(self._links()) < count:
            if self.failure is not None:
                raise self.failure
            await self._links_changed.wait()

    # --- internals --------------------------------------------------------------------

    def _links(self) -> list[Link]:
        return [
            p.link
            for p in self._producers.values()
            if p.link is not None and p.link.alive and not p.link.draining
        ]

    def _notify_links_changed(self) -> None:
        self._links_changed.set()
        self._links_changed = trio.Event()

    async def _settle(self, link: Link, message_id: bytes, command: bytes, verb: str) -> None:
        self._settle_nowait(link, message_id, command, verb)
        connection = link.connection
        if connection is not None:
            try:
                await connection.backpressure()  # bounded output: wait for the writer
            except NsqConnectionLost:
                pass  # nsqd redelivers what did not reach it

    def _settle_nowait(self, link: Link, message_id: bytes, command: bytes, verb: str) -> None:
        if not link.settle(message_id):
            log.warning(
                "nsq_already_settled", verb=verb, message_id=message_id.decode(errors="replace")
            )
            return
        if not link.send_nowait(command):
            log.info(
                "nsq_settle_skipped",
                verb=verb,
                address=link.address,
                message_id=message_id.decode(errors="replace"),
                reason="connection gone; nsqd redelivers the message",
            )

    def _on_message(
        self, link: Link, connection: NsqConnection, message: wire.MessageFrame
    ) -> None:
        link.add(message.id)
        if self._stopping or link.draining:
            # Sent before nsqd saw our RDY 0: give it straight back.
            self._settle_nowait(link, message.id, wire.requeue(message.id, 0), "req")
            return
        self._inbox_send.send_nowait((link, message))

    async def _set_rdy(self, link: Link, count: int) -> None:
        if link.rdy == count:
            return
        link.rdy = count  # before sending, so a concurrent caller does not repeat it
        await link.send(wire.ready(count))

    async def _rebalance(self) -> None:
        async with self._rdy_lock:  # concurrent rebalances would interleave RDY values
            if self._stopping:
                return
            links = sorted(self._links(), key=lambda link: link.address)
            for link, count in zip(
                links, distribute_rdy(self._max_in_flight, len(links)), strict=True
            ):
                assert link.connection is not None
                await self._set_rdy(link, min(count, link.connection.negotiated.max_rdy_count))

    def _want(self, address: str) -> None:
        producer = self._producers.get(address)
        if producer is not None:
            producer.retired = False
            return
        assert self._nursery is not None
        producer = self._producers[address] = Producer(address)
        self._running += 1
        self._nursery.start_soon(self._maintain, producer)

    def _retire(self, producer: Producer) -> None:
        producer.retired = True
        link = producer.link
        if link is not None and link.alive:
            link.draining = True
            link.drain_requested.set()
        else:
            producer.scope.cancel()

    async def _maintain(self, producer: Producer) -> None:
        """Keep one subscribed connection to `producer` until it is retired."""
        backoff = Backoff(max_s=self._config.reconnect_max_s, immediate_first=True)
        try:
            with producer.scope:
                while not producer.retired and not self._stopping:
                    started = trio.current_time()
                    try:
                        await self._subscribe_and_serve(producer)
                    except (NsqConnectionLost, NsqError, NsqConfigError) as exc:
                        if self._is_fatal(exc):
                            assert not isinstance(exc, NsqConnectionLost)
                            await self._give_up(producer, exc)
                            break
                        log.warning(
                            "nsq_subscribe_failed", address=producer.address, error=str(exc)
                        )
                    else:
                        # Reset only after a connection that held: one that nsqd drops
                        # right after SUB must not turn into a reconnect loop.
                        if trio.current_time() - started >= self._heartbeat_s:
                            backoff.reset()
                    if producer.retired or self._stopping:
                        break
                    delay = backoff.next_delay()
                    log.info("nsq_reconnecting", address=producer.address, in_s=round(delay, 3))
                    await trio.sleep(delay)
        finally:
            if self._producers.get(producer.address) is producer and producer.retired:
                del self._producers[producer.address]
            self._running -= 1
            if self._running == 0:
                self._all_done.set()

    def _is_fatal(self, error: Exception) -> bool:
        return is_fatal(error, ever_subscribed=self._ever_subscribed)

    async def _give_up(self, producer: Producer, error: NsqConfigError | NsqError) -> None:
        log.error(
            "nsq_consumer_failed",
            address=producer.address,
            topic=self.topic,
            channel=self.channel,
            error=str(error),
        )
        if self.failure is None:
            self.failure = error
        producer.retired = True
        self._notify_links_changed()
        await self.stop_receiving()

    async def _subscribe_and_serve(self, producer: Producer) -> None:
        """Connect, SUB and serve until the connection ends; raise if SUB never happened."""
        link = Link(producer.address)
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            # Failures are carried out of the nursery by hand: raised inside its body
            # they would come out wrapped in an ExceptionGroup.
            try:
                await self._subscribe(nursery, link)
            except (NsqConnectionLost, NsqError, NsqConfigError) as exc:
                failure = exc
                nursery.cancel_scope.cancel()
            else:
                producer.link = link
                nursery.start_soon(self._drain_when_asked, link)
                await self._rebalance()
                self._notify_links_changed()
                assert link.connection is not None
                await link.connection.wait_closed()
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if producer.link is link:
            producer.link = None
        self._notify_links_changed()
        if not link.draining:
            assert link.connection is not None
            log.warning(
                "nsq_connection_lost",
                address=producer.address,
                in_flight=len(link.in_flight),
                error=str(link.connection.error),
            )
            await self._rebalance()

    async def _subscribe(self, nursery: trio.Nursery, link: Link) -> None:
        connection: NsqConnection = await nursery.start(
            partial(
                serve_connection,
                link.address,
                self._options,
                on_message=partial(self._on_message, link),
            )
        )
        link.connection = connection
        negotiated = connection.negotiated
        self._check_negotiated(link.address, negotiated)
        if negotiated.msg_timeout_ms not in (None, self._msg_timeout_ms):
            log.warning(
                "nsq_msg_timeout_differs",
                address=link.address,
                asked_ms=self._msg_timeout_ms,
                got_ms=negotiated.msg_timeout_ms,
            )
        try:
            answer = await connection.request(wire.subscribe(self.topic, self.channel))
        except NsqError as exc:
            raise explain_refusal(
                exc,
                command="SUB",
                topic=self.topic,
                channel=self.channel,
                identity=connection.identity,
            ) from exc
        if answer != wire.OK:
            raise NsqProtocolError(f"nsqd at {link.address} answered SUB with {answer[:80]!r}")
        self._ever_subscribed = True
        log.info(
            "nsq_subscribed",
            address=link.address,
            topic=self.topic,
            channel=self.channel,
            nsqd_version=negotiated.version,
            tls=negotiated.tls_v1,
            auth_identity=connection.identity,
            output_buffer_timeout_ms=negotiated.output_buffer_timeout_ms,
        )

    def _check_negotiated(self, address: str, negotiated: wire.Negotiated) -> None:
        """Log where nsqd's IDENTIFY answer differs from what the settings asked for."""
        if negotiated.max_rdy_count < self._max_in_flight:
            log.warning(
                "nsq_max_in_flight_capped",
                address=address,
                setting="queue.max_in_flight",
                configured=self._max_in_flight,
                nsqd_max_rdy_count=negotiated.max_rdy_count,
            )
        asked_buffer = self._config.nsq_output_buffer_timeout_ms
        got_buffer = negotiated.output_buffer_timeout_ms
        if got_buffer is not None and got_buffer != asked_buffer:
            log.warning(
                "nsq_output_buffer_timeout_differs",
                address=address,
                setting="queue.nsq_output_buffer_timeout_ms",
                asked_ms=asked_buffer,
                got_ms=got_buffer,
            )

    async def _drain_when_asked(self, link: Link) -> None:
        await link.drain_requested.wait()
        await self._set_rdy(link, 0)
        await self._rebalance()  # the others take over this one's share
        # Past msg_timeout nsqd has requeued whatever is still unsettled here, so
        # waiting longer for it would only delay the close.
        with trio.move_on_after(self._msg_timeout_ms / 1000):
            await link.wait_idle()
        connection = link.connection
        assert connection is not None
        try:
            with trio.move_on_after(self._close_timeout_s):
                answer = await connection.request(wire.CLS)
                if answer != wire.CLOSE_WAIT:
                    log.warning(
                        "nsq_unexpected_cls_answer", address=link.address, answer=answer[:80]
                    )
        except (NsqConnectionLost, NsqError) as exc:
            log.info("nsq_cls_failed", address=link.address, error=str(exc))
        await connection.aclose()
        log.info("nsq_connection_closed", address=link.address)

    async def _poll_lookupd(self) -> None:
        with self._lookupd_scope:
            async with httpx.AsyncClient(timeout=_LOOKUPD_TIMEOUT_S) as client:
                while True:
                    found = await lookupd.discover(client, self._lookupds, self.topic)
                    if found is not None and not self._stopping:
                        for address in sorted(found):
                            self._want(address)
                        for producer in list(self._producers.values()):
                            if producer.address not in found and not producer.retired:
                                log.info("nsq_producer_vanished", address=producer.address)
                                self._retire(producer)
                    interval = self._config.lookupd_poll_interval_s
                    await trio.sleep(jittered(interval, _LOOKUPD_JITTER))

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for address in self._static:
            self._want(address)
        if self._lookupds:
            nursery.start_soon(self._poll_lookupd)

    async def _aclose(self) -> None:
        """Stop, give back everything unsettled, wait for the connections to close."""
        await self.stop_receiving()
        for producer in list(self._producers.values()):
            link = producer.link
            if link is None:
                continue
            for message_id in list(link.in_flight):
                await self._settle(link, message_id, wire.requeue(message_id, 0), "req")
        if self._running:
            await self._all_done.wait()


@asynccontextmanager
async def open_nsq_consumer(
    config: QueueConfig,
    *,
    client_id: str | None = None,
    close_timeout_s: float = 5.0,
) -> AsyncIterator[NsqConsumer]:
    """An NsqConsumer subscribed (in the background) for the `async with` block.

    Connecting happens in the background and is retried forever, so the block starts
    at once; `await consumer.wait_subscribed()` if you need a subscription first. On
    leaving, unsettled deliveries are requeued and connections closed with CLS, within
    `close_timeout_s` (even when the block is left by cancellation).
    """
    consumer = NsqConsumer(
        config,
        client_id=client_id or socket.gethostname().split(".")[0],
        close_timeout_s=close_timeout_s,
    )
    async with background_nursery() as nursery:
        await consumer._start(nursery)
        try:
            yield consumer
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(close_timeout_s):
                await consumer._aclose()
