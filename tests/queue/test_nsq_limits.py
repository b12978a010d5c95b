"""NSQ limits negotiated with nsqd, MPUB split to its body size, and leaving by cancel."""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing

from cj.queue.nsq import NsqConfigError, open_nsq_consumer, open_nsq_publisher
from tests.queue.test_nsq_client import CHANNEL, TOPIC, config, job, start_peer, subscriber


async def test_cancelled_consumer_requeues_its_in_flight_messages_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            for n in range(6):
                peer.put(TOPIC, job(n).to_bytes())
            cfg = config(peer.address, max_in_flight=4, lease_s=300.0)
            channel = peer.channel(TOPIC, CHANNEL)
            with trio.CancelScope() as scope:
                async with open_nsq_consumer(cfg) as consumer:
                    held = [await consumer.receive(), await consumer.receive()]
                    await peer.wait_until(lambda: len(channel.in_flight) == 4)
                    seen = subscriber(peer)
                    cancelled_at = trio.current_time()
                    scope.cancel()
                    await trio.sleep_forever()
            assert scope.cancelled_caught and held
            # REQ for all four (two handed out, two buffered) and CLS reached the peer
            # before the socket closed: nothing waits for the 300 s msg_timeout.
            await peer.wait_until(lambda: seen.closed)
            assert trio.current_time() - cancelled_at < 5
            assert len(channel.in_flight) == 0
            assert channel.requeued == 4 and channel.depth == 6
            commands = [c for c in seen.commands if c != b"NOP"]
            assert commands[-6:] == [b"RDY", b"REQ", b"REQ", b"REQ", b"REQ", b"CLS"]
            assert peer.errors_sent == []
            nursery.cancel_scope.cancel()


async def test_cancel_during_cleanup_of_a_frozen_nsqd_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The REQs and CLS cannot hang the exit: close_timeout_s bounds it."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            peer.put(TOPIC, job(1).to_bytes())
            with trio.CancelScope() as scope:
                async with open_nsq_consumer(config(peer.address), close_timeout_s=3) as c:
                    await c.receive()
                    peer.freeze = True  # reads nothing more, answers nothing
                    started = trio.current_time()
                    scope.cancel()
            assert trio.current_time() - started <= 3.5
            nursery.cancel_scope.cancel()


async def test_settings_nsqd_refuses_stop_with_the_key_and_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, min_output_buffer_timeout_ms=50)
            hb = config(peer.address, heartbeat_interval_s=61)
            async with open_nsq_consumer(hb) as consumer:
                with pytest.raises(
                    NsqConfigError,
                    match=r"queue.heartbeat_interval_s: .*61 s is outside nsqd's range: 1 s to "
                    r"its --max-heartbeat-interval .*IDENTIFY heartbeat interval \(61000\)",
                ):
                    await consumer.receive()
            buffered = config(peer.address, nsq_output_buffer_timeout_ms=30)
            async with open_nsq_publisher(buffered) as publisher:
                with pytest.raises(
                    NsqConfigError,
                    match=r"queue.nsq_output_buffer_timeout_ms: .*30 ms is outside",
                ):
                    await publisher.publish(job(1))
            assert peer.errors_sent == ["E_BAD_BODY", "E_BAD_BODY"]
            nursery.cancel_scope.cancel()


async def test_negotiated_limits_are_asked_for_and_checked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, max_rdy_count=3)
            cfg = config(peer.address, max_in_flight=8)
            async with open_nsq_consumer(cfg) as consumer:
                await consumer.wait_subscribed()
                seen = subscriber(peer)
                await peer.wait_until(lambda: seen.ready_count == 3)  # capped at max_rdy_count
                assert seen.identify is not None
                assert seen.identify["output_buffer_timeout"] == 25  # the job-queue default
                assert seen.output_buffer_timeout_ms == 25
            nursery.cancel_scope.cancel()
    capped = [e for e in logs if e["event"] == "nsq_max_in_flight_capped"]
    assert capped[0]["setting"] == "queue.max_in_flight"
    assert capped[0]["nsqd_max_rdy_count"] == 3
    assert peer.errors_sent == []


async def test_mpub_is_split_to_fit_nsqds_body_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = [job(n) for n in range(100)]  # ~7,900 bytes as one MPUB
    with trio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, max_body_size=2000)
            # Configured right: split before sending, nsqd never refuses.
            async with open_nsq_publisher(
                config(peer.address, nsq_max_body_bytes=2000)
            ) as publisher:
                await publisher.publish_many(jobs)
            assert (peer.published, peer.errors_sent) == (100, [])
            # Configured too big (nsqd's default assumed): the refusal teaches the limit.
            async with open_nsq_publisher(config(peer.address)) as publisher:
                await publisher.publish_many(jobs)
                assert publisher.max_body_bytes == 2000
                await publisher.publish_many(jobs)
            assert peer.published == 300
            assert peer.errors_sent == ["E_BAD_BODY"]
            nursery.cancel_scope.cancel()
    lowered = [e for e in logs if e["event"] == "nsq_max_body_lowered"]
    assert [(e["setting"], e["nsqd_max_body_size"]) for e in lowered] == [
        ("queue.nsq_max_body_bytes", 2000)
    ]
    channel = peer.channel(TOPIC, CHANNEL)
    assert channel.depth == 300
