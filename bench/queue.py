"""Job-queue benchmark: encode jobs per second, published and consumed end to end.

    .venv/bin/python bench/queue.py [--jobs N] [--consumers C] [--max-in-flight M]
                                    [--publishers P] [--batch B]
    .venv/bin/python bench/queue.py --nsqd HOST:4150 [--nsqd-http HOST:4151]
                                    [--lookupd HOST:4161] [--skip-postgres]

With --nsqd, the NSQ part runs against that nsqd instead: our client's rates beside
pynsq's Tornado Writer/Reader on the same nsqd in the same run, row by row, and the
publish→delivery median (bench/_nsq_rates.py); consumers find nsqd through --lookupd
when given. pynsq's Reader/Writer need Tornado (the `bench` extra).

NSQ part: the Trio NSQ client (`cj.queue.nsq`) against the NSQ test peer from
tests/queue/nsq_peer.py on 127.0.0.1, in one process — so the figures are the client's
and the peer's Python costs together, an upper bound on what one core does with a
real nsqd, not nsqd's throughput. Two rounds on a fresh peer each: PUB (P concurrent
publishers sharing one pipelined connection) and MPUB (batches of B), each while C
consumers ack everything (a few workers per consumer). Consumers are subscribed before
publishing starts; a round ends when every job has been acked.

PostgreSQL part: the embedded queue (`cj.queue.postgres`) on a private PostgreSQL
cluster with durable settings (or --database-url): N jobs published by P concurrent
publishers (one transaction each), then consumed by C consumers, each its own
connection pool and NOTIFY listener (as separate encoder processes would be), with a
few workers each doing claim + ack. Target: ≥ 1,000 jobs/s publish+consume.

The last line printed is one JSON object with the figures of both parts.
"""
# The imports below follow the sys.path fix-up they depend on (see there).
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name would then
# shadow the standard library's `queue` (which trio and psycopg import): swap the
# folder for the repository root before anything else is imported.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import json
import time
import uuid
from functools import partial
from typing import Any

import trio

from cj.config import LoggingConfig, QueueConfig
from cj.logs import configure_logging
from cj.queue.base import EncodeJob
from cj.queue.nsq import open_nsq_consumer, open_nsq_publisher
from tests.queue.nsq_peer import NsqTestPeer

WORKERS_PER_CONSUMER = 4


async def nsq_round(
    *, jobs: int, consumers: int, max_in_flight: int, publishers: int, batch: int | None
) -> dict[str, float]:
    """One publish+consume round on a fresh peer; `batch=None` means PUB, else MPUB."""
    all_jobs = [EncodeJob(call_uuid=uuid.UUID(int=n)) for n in range(jobs)]
    seen: set[uuid.UUID] = set()
    deliveries = 0
    everything_acked = trio.Event()

    async def consume(name: str, cfg: QueueConfig, *, task_status: trio.TaskStatus[None]) -> None:
        nonlocal deliveries
        async with open_nsq_consumer(cfg, client_id=name) as consumer:
            await consumer.wait_subscribed()
            task_status.started()

            async def work() -> None:
                nonlocal deliveries
                async for delivery in consumer:
                    deliveries += 1
                    seen.add(delivery.job.call_uuid)
                    await delivery.ack()
                    if len(seen) == jobs:
                        everything_acked.set()

            async with trio.open_nursery() as workers:
                for _ in range(WORKERS_PER_CONSUMER):
                    workers.start_soon(work)
                await everything_acked.wait()
                await consumer.stop_receiving()

    async with trio.open_nursery() as nursery:
        peer = NsqTestPeer()
        await nursery.start(peer.serve)
        cfg = QueueConfig(
            kind="nsq",
            nsqd_tcp_addresses=(peer.address,),
            max_in_flight=max_in_flight,
            heartbeat_interval_s=30,
            lease_s=60,
        )
        async with trio.open_nursery() as consuming:
            for n in range(consumers):
                await consuming.start(consume, f"bench-{n}", cfg)
            async with open_nsq_publisher(cfg) as publisher:

                async def publish(share: list[EncodeJob]) -> None:
                    if batch is None:
                        for job in share:
                            await publisher.publish(job)
                    else:
                        for i in range(0, len(share), batch):
                            await publisher.publish_many(share[i : i + batch])

                start = time.perf_counter()
                async with trio.open_nursery() as publishing:
                    for p in range(publishers):
                        publishing.start_soon(publish, all_jobs[p::publishers])
                published = time.perf_counter()
                await everything_acked.wait()
                acked = time.perf_counter()
        nursery.cancel_scope.cancel()
    return {
        "publish_s": published - start,
        "end_to_end_s": acked - start,
        "publish_jobs_per_s": jobs / (published - start),
        "end_to_end_jobs_per_s": jobs / (acked - start),
        "redeliveries": deliveries - jobs,
    }


def bench_nsq(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "nsq_jobs": args.jobs,
        "nsq_consumers": args.consumers,
        "nsq_max_in_flight": args.max_in_flight,
    }
    for label, batch in (("pub", None), ("mpub", args.batch)):
        round_ = partial(
            nsq_round,
            jobs=args.jobs,
            consumers=args.consumers,
            max_in_flight=args.max_in_flight,
            publishers=args.publishers,
            batch=batch,
        )
        result = trio.run(round_)
        how = (
            f"PUB, {args.publishers} concurrent publishers"
            if batch is None
            else f"MPUB batches of {batch}"
        )
        print(f"NSQ {label} ({how}), {args.jobs:,} jobs, {args.consumers} consumers:")
        print(
            f"    published in {result['publish_s']:.2f} s "
            f"({result['publish_jobs_per_s']:,.0f} jobs/s); all acked in "
            f"{result['end_to_end_s']:.2f} s ({result['end_to_end_jobs_per_s']:,.0f} jobs/s "
            f"publish+consume); redeliveries {result['redeliveries']}"
        )
        figures[f"nsq_{label}_publish_jobs_per_s"] = round(result["publish_jobs_per_s"])
        figures[f"nsq_{label}_end_to_end_jobs_per_s"] = round(result["end_to_end_jobs_per_s"])
        figures[f"nsq_{label}_redeliveries"] = result["redeliveries"]
    return figures


def bench_postgres(args: argparse.Namespace) -> dict[str, Any]:
    """PostgreSQL-queue figures: publish rate and publish+consume rate."""
    from bench._pg import benchmark_database

    figures: dict[str, Any] = {"pg_jobs": args.pg_jobs}
    with benchmark_database(args.database_url) as url:
        for label, batch in (("pub", None), ("batch", args.batch)):
            publish, total = trio.run(postgres_round, url, args, batch)
            mode = "one job per transaction" if batch is None else f"batches of {batch}"
            print(
                f"postgres queue, {mode}: publish {publish:,.0f} jobs/s, "
                f"publish+consume {total:,.0f} jobs/s "
                f"({args.consumers} consumers x {WORKERS_PER_CONSUMER} workers)"
            )
            figures[f"pg_{label}_publish_per_s"] = round(publish)
            figures[f"pg_{label}_jobs_per_s"] = round(total)
    return figures


async def postgres_round(
    url: str, args: argparse.Namespace, batch: int | None
) -> tuple[float, float]:
    """Publish+consume `--pg-jobs` jobs; returns (publish rate, end-to-end rate)."""
    from pydantic import SecretStr

    from cj.config import DatabaseConfig
    from cj.db import open_database
    from cj.queue.postgres import PostgresPublisher, open_postgres_consumer

    jobs = args.pg_jobs
    config = QueueConfig(kind="postgres", lease_s=300, poll_interval_s=1)
    database = DatabaseConfig(url=SecretStr(url), pool_size=max(args.publishers, 8))
    remaining = jobs
    done = trio.Event()

    async def consume(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal remaining
        async with open_database(database) as db, open_postgres_consumer(db, config) as consumer:
            task_status.started()

            async def worker() -> None:
                nonlocal remaining
                async for delivery in consumer:
                    await delivery.ack()
                    remaining -= 1
                    if remaining == 0:
                        done.set()

            async with trio.open_nursery() as workers:
                for _ in range(WORKERS_PER_CONSUMER):
                    workers.start_soon(worker)
                await done.wait()
                await consumer.stop_receiving()

    async with open_database(database) as db:
        publisher = PostgresPublisher(db, config.topic)
        all_jobs = [EncodeJob(uuid.uuid4()) for _ in range(jobs)]
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for consumer_index in range(args.consumers):
                await nursery.start(consume)
                del consumer_index

            async def publish(share: list[EncodeJob]) -> None:
                if batch is None:
                    for job in share:
                        await publisher.publish(job)
                else:
                    for start in range(0, len(share), batch):
                        await publisher.publish_many(share[start : start + batch])

            async with trio.open_nursery() as publishers:
                for index in range(args.publishers):
                    publishers.start_soon(publish, all_jobs[index :: args.publishers])
            published = time.perf_counter()
            await done.wait()
        finished = time.perf_counter()
    await trio.to_thread.run_sync(_truncate_jobs, url)
    return jobs / (published - began), jobs / (finished - began)


def _truncate_jobs(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--publishers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pg-jobs", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="use this database, not a private one")
    parser.add_argument("--skip-nsq", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--nsqd", default=None, help="host:port of a real nsqd (TCP)")
    parser.add_argument("--nsqd-http", default=None, help="its HTTP host:port (default: TCP+1)")
    parser.add_argument("--lookupd", default=None, help="host:port of nsqlookupd's HTTP")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="--nsqd rows: best of this many")
    args = parser.parse_args()
    configure_logging(LoggingConfig(level="warning"))
    figures: dict[str, Any] = {}
    if args.skip_nsq:
        pass
    elif args.nsqd:
        from bench import _nsq_rates

        host, _, port = args.nsqd.rpartition(":")
        http = args.nsqd_http or f"{host}:{int(port) + 1}"
        figures.update(
            _nsq_rates.run(
                args.nsqd, http, args.lookupd, args.jobs, args.latency_samples, args.repeat
            )
        )
    else:
        figures.update(bench_nsq(args))
    if not args.skip_postgres:
        figures.update(bench_postgres(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
