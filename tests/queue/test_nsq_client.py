"""The Trio NSQ client against the protocol-faithful test peer (and the fake lookupd)."""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from cj.config import QueueConfig
from cj.queue.base import ConsumerStopped, EncodeJob, QueueError, QueueUnavailable
from cj.queue.nsq import (
    NsqConfigError,
    NsqError,
    open_nsq_consumer,
    open_nsq_publisher,
)
from tests.queue.nsq_lookupd_peer import LookupdPeer
from tests.queue.nsq_peer import NsqTestPeer, PeerClient

TOPIC = "cj-encode"
CHANNEL = "cj-encoder"


def config(*addresses: str, **overrides: Any) -> QueueConfig:
    settings: dict[str, Any] = {
        "kind": "nsq",
        "topic": TOPIC,
        "channel": CHANNEL,
        "nsqd_tcp_addresses": addresses,
        "heartbeat_interval_s": 5.0,
        "lease_s": 10.0,
        "max_in_flight": 4,
        "reconnect_max_s": 2.0,
        "lookupd_poll_interval_s": 30.0,
    }
    settings.update(overrides)
    return QueueConfig(**settings)


def job(n: int) -> EncodeJob:
    return EncodeJob(call_uuid=uuid.UUID(int=n))


async def start_peer(nursery: trio.Nursery, **options: Any) -> NsqTestPeer:
    peer = NsqTestPeer(**options)
    await nursery.start(peer.serve)
    return peer


@pytest.fixture
async def peer() -> AsyncIterator[NsqTestPeer]:
    async with trio.open_nursery() as nursery:
        yield await start_peer(nursery)
        nursery.cancel_scope.cancel()


def subscriber(peer: NsqTestPeer, client_id: str | None = None) -> PeerClient:
    clients = [c for c in peer.subscribers(TOPIC, CHANNEL) if client_id in (None, c.client_id)]
    assert len(clients) == 1, clients
    return clients[0]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_publish_consume_ack(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address)
        async with (
            open_nsq_publisher(cfg) as publisher,
            open_nsq_consumer(cfg, client_id="encoder-1") as consumer,
        ):
            await publisher.publish(job(1))
            await publisher.publish_many([job(n) for n in range(2, 9)])
            received = []
            for _ in range(8):
                delivery = await consumer.receive()
                received.append(delivery.job)
                assert delivery.attempts == 1
                await delivery.ack()
            assert received == [job(n) for n in range(1, 9)]
            channel = peer.channel(TOPIC, CHANNEL)
            await peer.wait_until(lambda: channel.finished == 8)
            seen = subscriber(peer)
            assert seen.client_id == "encoder-1"
            assert seen.identify is not None
            assert seen.identify["msg_timeout"] == 10_000
            assert seen.identify["heartbeat_interval"] == 5_000
            assert seen.identify["feature_negotiation"] is True
            assert seen.ready_count == 4
            assert seen.commands[:3] == [b"IDENTIFY", b"SUB", b"RDY"]
        assert (channel.depth, len(channel.in_flight), peer.errors_sent) == (0, 0, [])


async def test_retry_redelivers_after_the_delay_not_before(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await publisher.publish(job(1))
            first = await consumer.receive()
            await first.retry(7.5)
            requeued_at = trio.current_time()
            second = await consumer.receive()
            waited = trio.current_time() - requeued_at
            assert waited == pytest.approx(7.5, abs=0.01)
            assert (second.job, second.attempts) == (job(1), 2)
            await second.ack()
            channel = peer.channel(TOPIC, CHANNEL)
            await peer.wait_until(lambda: channel.finished == 1)
            assert channel.requeued == 1


async def test_touch_extends_the_lease(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address, lease_s=10.0)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await publisher.publish(job(1))
            delivery = await consumer.receive()
            for _ in range(3):  # 24 s of work, well past the 10 s lease
                await trio.sleep(8)
                await delivery.touch()
            await delivery.ack()
            channel = peer.channel(TOPIC, CHANNEL)
            await peer.wait_until(lambda: channel.finished == 1)
            assert channel.timed_out == 0
            assert "E_FIN_FAILED" not in peer.errors_sent


async def test_unfinished_message_comes_back_after_msg_timeout_when_the_connection_dies(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(120):
        cfg = config(peer.address, lease_s=10.0)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await publisher.publish(job(1))
            lost = await consumer.receive()
            dropped_at = trio.current_time()
            assert peer.drop_clients(lambda c: c.state == "subscribed") == 1
            await lost.ack()  # its connection is gone: a logged no-op
            again = await consumer.receive()
            assert (again.job, again.attempts) == (job(1), 2)
            assert trio.current_time() - dropped_at == pytest.approx(10.0, abs=0.5)
            channel = peer.channel(TOPIC, CHANNEL)
            assert (channel.finished, channel.timed_out) == (0, 1)
            await again.ack()
            await peer.wait_until(lambda: channel.finished == 1)
            assert "E_FIN_FAILED" not in peer.errors_sent


async def test_heartbeats_are_answered_with_nop(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(120):
        cfg = config(peer.address, heartbeat_interval_s=1.0)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await publisher.publish(job(1))  # opens the publisher's connection
            await consumer.wait_subscribed()
            clients = list(peer.clients)
            await trio.sleep(30)  # the peer drops a client after 2 s without a command
            assert peer.clients == clients and len(clients) == 2
            for client in clients:
                assert client.heartbeats_sent >= 29
                assert client.nops >= client.heartbeats_sent - 1
            assert peer.connections == 2


async def test_publisher_reconnects_and_retries(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with open_nsq_publisher(config(peer.address)) as publisher:
            await publisher.publish(job(1))
            peer.drop_clients()
            await publisher.publish(job(2))  # its connection was dropped: reconnects
            peer.lose_publish_answers(store=False)
            await publisher.publish(job(3))  # lost before storing: retried, stored once
            peer.lose_publish_answers(store=True)
            await publisher.publish(job(4))  # stored, OK lost: retried, stored twice
            assert peer.published == 5
            assert peer.connections == 4
            pending = list(peer.topics[TOPIC].pending)
            assert [EncodeJob.from_bytes(m.body) for m in pending] == [
                job(1),
                job(2),
                job(3),
                job(4),
                job(4),
            ]


async def test_publisher_fails_over_and_gives_up_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        dead = f"127.0.0.1:{free_port()}"
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            async with open_nsq_publisher(config(dead, peer.address)) as publisher:
                for n in range(4):
                    await publisher.publish(job(n))
            assert peer.published == 4
            nursery.cancel_scope.cancel()
        async with open_nsq_publisher(config(dead), give_up_after_s=20) as publisher:
            start = trio.current_time()
            with pytest.raises(QueueUnavailable, match="within 20s"):
                await publisher.publish(job(1))
            assert trio.current_time() - start <= 20


async def test_consumer_resubscribes_after_the_peer_drops_it(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await consumer.wait_subscribed()
            first = subscriber(peer)
            peer.drop_clients(lambda c: c is first)
            await peer.wait_until(lambda: [c for c in peer.subscribers(TOPIC, CHANNEL)] != [])
            assert subscriber(peer) is not first
            await publisher.publish(job(7))
            delivery = await consumer.receive()
            assert delivery.job == job(7)
            await delivery.ack()
            assert subscriber(peer).ready_count == 4


async def test_lookupd_discovery_and_repolling(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            one = await start_peer(nursery)
            two = await start_peer(nursery)
            lookupd = LookupdPeer()
            await nursery.start(lookupd.serve)
            lookupd.producers[TOPIC] = [one.address]
            cfg = config(
                lookupd_http_addresses=(lookupd.address,),
                lookupd_poll_interval_s=30.0,
                max_in_flight=4,
            )
            async with open_nsq_consumer(cfg) as consumer:
                await consumer.wait_subscribed(1)
                assert consumer.subscribed_addresses == [one.address]
                await one.wait_until(lambda: subscriber(one).ready_count == 4)

                lookupd.producers[TOPIC] = [one.address, two.address]
                lookupd.legacy = True  # pre-1.0 answers are read too
                await consumer.wait_subscribed(2)
                assert sorted(consumer.subscribed_addresses) == sorted([one.address, two.address])
                await one.wait_until(lambda: subscriber(one).ready_count == 2)
                await two.wait_until(lambda: subscriber(two).ready_count == 2)
                one.put(TOPIC, job(1).to_bytes())
                two.put(TOPIC, job(2).to_bytes())
                deliveries = [await consumer.receive() for _ in range(2)]
                assert {d.job for d in deliveries} == {job(1), job(2)}
                for delivery in deliveries:
                    await delivery.ack()

                lookupd.failing = True  # a failed poll must not drop anyone
                polls = lookupd.requests
                await lookupd.wait_for_requests(polls + 2)
                assert len(consumer.subscribed_addresses) == 2

                lookupd.failing = False
                lookupd.producers[TOPIC] = [two.address]  # `one` vanished: drained, closed
                leaving = subscriber(one)
                await one.wait_until(lambda: not one.subscribers(TOPIC, CHANNEL))
                assert consumer.subscribed_addresses == [two.address]
                assert [c for c in leaving.commands if c != b"NOP"][-2:] == [b"RDY", b"CLS"]
                await two.wait_until(lambda: subscriber(two).ready_count == 4)
            nursery.cancel_scope.cancel()


async def test_graceful_shutdown(peer: NsqTestPeer, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address, max_in_flight=4)
        channel = peer.channel(TOPIC, CHANNEL)
        async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
            await publisher.publish_many([job(n) for n in range(10)])
            held = [await consumer.receive() for _ in range(2)]
            await peer.wait_until(lambda: len(channel.in_flight) == 4)  # 2 more buffered
            seen = subscriber(peer)
            await consumer.stop_receiving()
            await peer.wait_until(lambda: seen.ready_count == 0 and len(channel.in_flight) == 2)
            with pytest.raises(ConsumerStopped):
                await consumer.receive()
            assert [d async for d in consumer] == []
            await trio.sleep(5)
            assert channel.delivered == 4  # no new deliveries after RDY 0
            for delivery in held:  # in-flight work still finishes
                await delivery.ack()
            await peer.wait_until(lambda: seen.closed)
            commands = [c for c in seen.commands if c != b"NOP"]
            assert commands[-6:] == [b"RDY", b"REQ", b"REQ", b"FIN", b"FIN", b"CLS"]
        assert (channel.finished, channel.depth, channel.requeued) == (2, 8, 2)
        assert peer.errors_sent == []


async def test_two_consumers_one_killed_midway_lose_nothing(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    total = 1200
    processed: list[EncodeJob] = []
    cfg = config(peer.address, max_in_flight=16, lease_s=10.0)

    async def run(name: str, kill_after: int | None) -> None:
        with trio.CancelScope() as killed:
            async with open_nsq_consumer(cfg, client_id=name) as consumer:
                done = 0
                async for delivery in consumer:
                    if done == kill_after:
                        # Crash while holding this one and the buffered ones: the
                        # connection dies first, so no FIN or REQ can reach the peer.
                        peer.drop_clients(lambda c: c.client_id == name)
                        killed.cancel()
                        await trio.sleep_forever()
                    processed.append(delivery.job)
                    await delivery.ack()
                    done += 1
                    await trio.sleep(0.01)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", 200)
            nursery.start_soon(run, "b", None)
            async with open_nsq_publisher(cfg) as publisher:
                await publisher.publish_many([job(n) for n in range(total)])
            expected = {job(n) for n in range(total)}
            await peer.wait_until(lambda: expected <= set(processed))
            nursery.cancel_scope.cancel()
    assert set(processed) == expected
    channel = peer.channel(TOPIC, CHANNEL)
    assert channel.timed_out > 0  # the killed consumer's messages came back
    # Every message FINished at least once; a FIN still in the killed consumer's socket
    # may be lost with it, and that message then processed (and FINished) again.
    assert total <= channel.finished <= len(processed)


async def test_bad_names_and_settings_are_clear_errors() -> None:
    cfg = config("127.0.0.1:4150")
    # The schema already refuses such names in files; this checks the client's own guard.
    object.__setattr__(cfg, "topic", "bad topic")
    with pytest.raises(NsqConfigError, match=r"invalid NSQ topic name 'bad topic'"):
        async with open_nsq_publisher(cfg):
            pass
    with pytest.raises(NsqConfigError, match=r"queue\.heartbeat_interval_s must be at least 1"):
        async with open_nsq_consumer(config("127.0.0.1:4150", heartbeat_interval_s=0.5)):
            pass
    with pytest.raises(NsqConfigError, match=r"queue\.nsqd_tcp_addresses: 'nsqd'"):
        async with open_nsq_consumer(config("nsqd")):
            pass
    with pytest.raises(NsqConfigError, match=r"needs queue\.nsqd_tcp_addresses or"):
        async with open_nsq_consumer(config()):
            pass


async def test_error_frames_surface_with_their_code(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, max_msg_size=1000, max_msg_timeout_s=60)
            async with open_nsq_publisher(config(peer.address)) as publisher:
                peer.fail_publishes("E_BAD_MESSAGE")
                with pytest.raises(NsqError) as refused:
                    await publisher.publish(job(1))
                assert isinstance(refused.value, QueueError)
                assert refused.value.code == "E_BAD_MESSAGE"
                with pytest.raises(NsqError, match="E_BAD_MESSAGE: PUB message too big 2000"):
                    await publisher.publish_bytes(b"x" * 2000)
                peer.fail_publishes("E_PUB_FAILED", count=2)  # retryable: nsqd was exiting
                await publisher.publish(job(2))
                assert peer.published == 1

            # A lease above nsqd's max_msg_timeout: IDENTIFY is refused, and the consumer
            # stops with an error naming the key and nsqd's limit (no reconnect loop).
            async with open_nsq_consumer(config(peer.address, lease_s=120)) as consumer:
                limit = r"queue.lease_s: .* refused 120 s: .*--max-msg-timeout \(it is 60 s"
                with pytest.raises(NsqConfigError, match=limit):
                    await consumer.receive()
                with pytest.raises(NsqConfigError):
                    await consumer.wait_subscribed()
                assert consumer.subscribed_addresses == []
                assert peer.errors_sent.count("E_BAD_BODY") == 1
            nursery.cancel_scope.cancel()


async def test_unreadable_message_is_finished_not_redelivered(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        cfg = config(peer.address)
        garbage = peer.put(TOPIC, b"\x00not a job")
        peer.put(TOPIC, job(5).to_bytes())
        async with open_nsq_consumer(cfg) as consumer:
            delivery = await consumer.receive()  # the garbage was FINished on the way
            assert delivery.job == job(5)
            await delivery.ack()
            channel = peer.channel(TOPIC, CHANNEL)
            await peer.wait_until(lambda: channel.finished == 2)
            assert channel.finished_ids[0] == garbage
            assert (channel.requeued, channel.depth) == (0, 0)


async def test_answers_the_client_cannot_follow(autojump_clock: trio.testing.MockClock) -> None:
    """A server that wants AUTH, and one that sends garbage after IDENTIFY."""
    auth_json = b'{"auth_required": true}'
    answers = {
        "auth": struct.pack(">ll", len(auth_json) + 4, 0) + auth_json,
        "garbage": struct.pack(">ll", 6, 9) + b"??",  # frame type 9 does not exist
    }

    async def fake_nsqd(kind: str, stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)  # magic + IDENTIFY
            await stream.send_all(answers[kind])
            await stream.receive_some(65536)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ports = {}
            for kind in answers:
                handler = partial(fake_nsqd, kind)
                listeners = await nursery.start(trio.serve_tcp, handler, 0)
                ports[kind] = listeners[0].socket.getsockname()[1]
            auth = config(f"127.0.0.1:{ports['auth']}")
            async with open_nsq_publisher(auth) as publisher:
                with pytest.raises(NsqConfigError, match="requires AUTH"):
                    await publisher.publish(job(1))
            garbage = config(f"127.0.0.1:{ports['garbage']}")
            async with open_nsq_publisher(garbage, give_up_after_s=5) as publisher:
                with pytest.raises(QueueUnavailable, match="unknown NSQ frame type 9"):
                    await publisher.publish(job(1))
            nursery.cancel_scope.cancel()
