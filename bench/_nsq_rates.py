"""NSQ rates against a real nsqd: our Trio client and pynsq's Tornado Writer/Reader.

Each row runs on a fresh topic of the same nsqd, ours first then pynsq's, in the same
process (Trio and asyncio one after the other, never together). Rows, in messages/s:

- PUB one at a time: each waits for its OK before the next;
- PUB 16 concurrent: 16 publishes in flight on one connection;
- MPUB of 100 (five times the messages of the other rows: one batch is so quick
  that fewer would make the figure noise). Publishing rows fill topics of at most
  9,000 messages each, so nsqd keeps them in memory (past --mem-queue-size it writes
  and fsyncs to disk, and the row would time the disk);
- consume + FIN at max_in_flight 64 and 2500: the topic is filled first (not timed),
  then a consumer subscribes and FINs every message; timed to the last FIN's OK-less
  send (nsqd's depth checked to be 0 afterwards);
- publish→delivery: one message at a time to a subscribed consumer (max_in_flight 8),
  median and p90 in ms. nsqd holds a consumer's messages up to its output_buffer_timeout:
  ours negotiates 25 ms (`queue.nsq_output_buffer_timeout_ms`), pynsq's Reader asks for
  250 ms unless told otherwise; its figure with 25 ms is printed too.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import trio

from cj.config import QueueConfig
from cj.queue.base import EncodeJob
from cj.queue.nsq import open_nsq_consumer, open_nsq_publisher

_PER_TOPIC = 9_000
ROWS = (
    ("pub_serial", "PUB one at a time"),
    ("pub_16", "PUB 16 concurrent"),
    ("mpub_100", "MPUB of 100"),
    ("consume_64", "consume + FIN, max_in_flight 64"),
    ("consume_2500", "consume + FIN, max_in_flight 2500"),
)


def bodies(n: int) -> list[bytes]:
    return [EncodeJob(call_uuid=uuid.UUID(int=i)).to_bytes() for i in range(n)]


def fresh_topic(row: str, who: str) -> str:
    return f"bench-{row}-{who}-{uuid.uuid4().hex[:8]}"


def delete_topic(http: str, topic: str) -> None:
    httpx.post(f"http://{http}/topic/delete", params={"topic": topic}, timeout=10)


def depth(http: str, topic: str) -> int:
    stats = httpx.get(
        f"http://{http}/stats", params={"format": "json", "topic": topic}, timeout=10
    ).json()
    total = 0
    for found in stats.get("topics", []):
        total += found["depth"] + sum(c["depth"] + c["in_flight_count"] for c in found["channels"])
    return total


# --- ours ------------------------------------------------------------------------------


def _config(nsqd: str, topic: str, lookupd: str | None, **extra: Any) -> QueueConfig:
    return QueueConfig(
        kind="nsq",
        topic=topic,
        channel="bench",
        nsqd_tcp_addresses=(nsqd,),
        lookupd_http_addresses=(lookupd,) if lookupd else (),
        heartbeat_interval_s=30,
        lease_s=60,
        **extra,
    )


async def ours_publish(nsqd: str, topic: str, data: list[bytes], mode: str) -> float:
    async with open_nsq_publisher(_config(nsqd, topic, None)) as publisher:
        await publisher.publish_bytes(data[0])  # connect outside the timing
        start = time.perf_counter()
        if mode == "pub_serial":
            for body in data:
                await publisher.publish_bytes(body)
        elif mode == "pub_16":

            async def share(part: list[bytes]) -> None:
                for body in part:
                    await publisher.publish_bytes(body)

            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(share, data[i::16])
        else:
            for i in range(0, len(data), 100):
                await publisher.publish_many_bytes(data[i : i + 100])
        return len(data) / (time.perf_counter() - start)


async def ours_consume(
    nsqd: str, topic: str, lookupd: str | None, n: int, max_in_flight: int
) -> float:
    cfg = _config(nsqd, topic, lookupd, max_in_flight=max_in_flight)
    async with open_nsq_consumer(cfg, client_id="bench") as consumer:
        start = time.perf_counter()
        done = 0
        async for delivery in consumer:
            await delivery.ack()
            done += 1
            if done == n:
                break
        elapsed = time.perf_counter() - start
    return n / elapsed


async def ours_latency(nsqd: str, topic: str, lookupd: str | None, n: int) -> list[float]:
    cfg = _config(nsqd, topic, lookupd)
    samples = []
    async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
        await publisher.publish(EncodeJob(call_uuid=uuid.uuid4()))
        await (await consumer.receive()).ack()
        for i in range(n):
            start = time.perf_counter()
            await publisher.publish_bytes(EncodeJob(call_uuid=uuid.UUID(int=i)).to_bytes())
            delivery = await consumer.receive()
            samples.append(time.perf_counter() - start)
            await delivery.ack()
    return samples


async def ours_fill(nsqd: str, topic: str, data: list[bytes]) -> None:
    async with open_nsq_publisher(_config(nsqd, topic, None)) as publisher:
        for i in range(0, len(data), 1000):
            await publisher.publish_many_bytes(data[i : i + 1000])


# --- pynsq ---------------------------------------------------------------------------


def pynsq_run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


async def _pynsq_writer(nsqd: str) -> Any:
    import nsq

    writer = nsq.Writer([nsqd])
    while not writer.conns:  # noqa: ASYNC110 (pynsq has no "connected" event)
        await asyncio.sleep(0.01)
    return writer


def _close_writer(writer: Any) -> None:
    for conn in list(writer.conns.values()):
        conn.close()


def _pub(writer: Any, topic: str, body: bytes | list[bytes]) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(_conn: Any, data: Any) -> None:
        if isinstance(data, Exception):
            future.set_exception(data)
        else:
            future.set_result(data)

    if isinstance(body, list):
        writer.mpub(topic, body, callback=done)
    else:
        writer.pub(topic, body, callback=done)
    return future


async def pynsq_publish(nsqd: str, topic: str, data: list[bytes], mode: str) -> float:
    writer = await _pynsq_writer(nsqd)
    try:
        await _pub(writer, topic, data[0])
        start = time.perf_counter()
        if mode == "pub_serial":
            for body in data:
                await _pub(writer, topic, body)
        elif mode == "pub_16":

            async def share(part: list[bytes]) -> None:
                for body in part:
                    await _pub(writer, topic, body)

            await asyncio.gather(*(share(data[i::16]) for i in range(16)))
        else:
            for i in range(0, len(data), 100):
                await _pub(writer, topic, data[i : i + 100])
        return len(data) / (time.perf_counter() - start)
    finally:
        _close_writer(writer)


async def pynsq_consume(
    nsqd: str, topic: str, lookupd: str | None, n: int, max_in_flight: int
) -> float:
    import nsq

    done = asyncio.get_running_loop().create_future()
    count = 0
    start = 0.0

    def handler(message: Any) -> bool:
        nonlocal count, start
        if count == 0:
            start = time.perf_counter()
        count += 1
        if count == n and not done.done():
            done.set_result(time.perf_counter())
        return True  # FIN

    where: dict[str, Any] = (
        {"lookupd_http_addresses": [f"http://{lookupd}"], "lookupd_poll_interval": 1}
        if lookupd
        else {"nsqd_tcp_addresses": [nsqd]}
    )
    began = time.perf_counter()
    reader = nsq.Reader(
        topic=topic,
        channel="bench",
        message_handler=handler,
        max_in_flight=max_in_flight,
        heartbeat_interval=30,
        **where,
    )
    try:
        finished = await done
    finally:
        reader.close()
    del start
    return n / (finished - began)


async def pynsq_latency(
    nsqd: str, topic: str, n: int, output_buffer_timeout: int = 250
) -> list[float]:
    import nsq

    writer = await _pynsq_writer(nsqd)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    def handler(message: Any) -> bool:
        arrived.put_nowait(time.perf_counter())
        return True

    reader = nsq.Reader(
        topic=topic,
        channel="bench",
        message_handler=handler,
        nsqd_tcp_addresses=[nsqd],
        max_in_flight=8,
        output_buffer_timeout=output_buffer_timeout,
    )
    try:
        await _pub(writer, topic, b"warm-up")
        await arrived.get()
        samples = []
        for i in range(n):
            start = time.perf_counter()
            await _pub(writer, topic, EncodeJob(call_uuid=uuid.UUID(int=i)).to_bytes())
            samples.append(await arrived.get() - start)
        return samples
    finally:
        reader.close()
        _close_writer(writer)


# --- the table -----------------------------------------------------------------------


def one_row(
    row: str, who: str, nsqd: str, http: str, lookupd: str | None, data: list[bytes]
) -> float:
    """One row's rate for `who` ("ours" or "pynsq"), on a fresh topic deleted afterwards."""
    topic = fresh_topic(row, who)
    try:
        if row.startswith("consume"):
            mif = int(row.split("_")[1])
            n = len(data)
            trio.run(ours_fill, nsqd, topic, data)
            if who == "ours":
                rate: float = trio.run(ours_consume, nsqd, topic, lookupd, n, mif)
            else:
                rate = pynsq_run(lambda: pynsq_consume(nsqd, topic, lookupd, n, mif))
            left = depth(http, topic)
            if left:
                raise RuntimeError(f"{row} {who}: {left} messages left on nsqd")
            return rate
        # Publishing rows: topics of at most _PER_TOPIC messages, so that everything
        # stays in nsqd's memory queue (--mem-queue-size, 10,000 by default): past it
        # nsqd writes to disk and fsyncs, and the row would time the disk.
        total = len(data) * 5 if row == "mpub_100" else len(data)
        elapsed = 0.0
        done = 0
        while done < total:
            part = data[: min(_PER_TOPIC, total - done)]
            part_topic = fresh_topic(row, who)
            try:
                if who == "ours":
                    rate = trio.run(ours_publish, nsqd, part_topic, part, row)
                else:
                    rate = pynsq_run(lambda: pynsq_publish(nsqd, part_topic, part, row))  # noqa: B023
            finally:
                delete_topic(http, part_topic)
            elapsed += len(part) / rate
            done += len(part)
        return total / elapsed
    finally:
        delete_topic(http, topic)


def run(
    nsqd: str, http: str, lookupd: str | None, jobs: int, latency_n: int, repeat: int = 3
) -> dict[str, Any]:
    """Every row for ours and pynsq's; prints the table, returns the figures.

    Each row runs `repeat` times per client, alternating which goes first, and the best
    rate of each is kept: on a shared machine the worst runs measure the neighbours.
    """
    # pynsq logs an IntegrityError for every connection it closes itself: noise here.
    logging.getLogger("nsq").setLevel(logging.CRITICAL)
    data = bodies(jobs)
    figures: dict[str, Any] = {}
    for row, _label in ROWS:
        best = {"ours": 0.0, "pynsq": 0.0}
        for attempt in range(repeat):
            order = ("ours", "pynsq") if attempt % 2 == 0 else ("pynsq", "ours")
            for who in order:
                best[who] = max(best[who], one_row(row, who, nsqd, http, lookupd, data))
        for who, rate in best.items():
            figures[f"{row}_{who}"] = round(rate)
    for who in ("ours", "pynsq", "pynsq_25"):
        topic = fresh_topic("latency", who)
        try:
            if who == "ours":
                samples = trio.run(ours_latency, nsqd, topic, lookupd, latency_n)
            else:
                buffer_ms = 25 if who == "pynsq_25" else 250
                samples = pynsq_run(lambda: pynsq_latency(nsqd, topic, latency_n, buffer_ms))  # noqa: B023
        finally:
            delete_topic(http, topic)
        ordered = sorted(samples)
        figures[f"latency_median_ms_{who}"] = round(statistics.median(ordered) * 1000, 1)
        figures[f"latency_p90_ms_{who}"] = round(ordered[int(len(ordered) * 0.9)] * 1000, 1)
    print(
        f"NSQ against nsqd {nsqd} ({jobs:,} messages of ~{len(data[0])} bytes per row, "
        f"best of {repeat}):"
    )
    print(f"    {'messages/s':<36} {'ours':>10} {'pynsq':>10}")
    for row, label in ROWS:
        print(f"    {label:<36} {figures[row + '_ours']:>10,} {figures[row + '_pynsq']:>10,}")
    print(f"    {'publish→delivery, ms':<36} {'ours':>10} {'pynsq':>10} {'pynsq 25ms':>10}")
    for kind in ("median", "p90"):
        print(
            f"    {kind:<36} "
            f"{figures['latency_' + kind + '_ms_ours']:>10} "
            f"{figures['latency_' + kind + '_ms_pynsq']:>10} "
            f"{figures['latency_' + kind + '_ms_pynsq_25']:>10}"
        )
    return figures
