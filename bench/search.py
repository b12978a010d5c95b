"""Search benchmark: load N synthetic calls with COPY, then time the two searches.

    .venv/bin/python bench/search.py [--calls N] [--queries Q] [--database-url URL]

Without --database-url (or CJ_BENCH_DATABASE_URL) a private PostgreSQL cluster is
started from the machine's binaries in a temporary directory (durable settings, 1 GiB
shared buffers) and removed afterwards. Queries go through `cj.db` exactly as the API
runs them: phone-suffix searches for random known subscribers (10 digits) and
one-hour interval searches at random places in the year, 100 rows a page, warm cache.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import psycopg
import trio
from pydantic import SecretStr

from bench._pg import benchmark_database
from cj.config import DatabaseConfig
from cj.db import open_database
from cj.db.calls import SearchQuery, search_calls

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 86400
COPY_COLUMNS = (
    "uuid, source, caller_number, caller_digits_rev, caller_name, destination_number, "
    "destination_digits_rev, direction, started_at, answered_at, ended_at, duration_s, "
    "billsec, hangup_cause, hangup_side, sip_code, private, raw"
)


def subscribers(count: int, rng: random.Random) -> list[str]:
    return [f"79{rng.randrange(10**9):09d}" for _ in range(count)]


def synthesize(calls: int, rng: random.Random, people: list[str]) -> list[bytes]:
    """COPY text-format rows, generated before the clock starts (we time the database)."""
    offices = [f"8495{rng.randrange(10**7):07d}" for _ in range(50)]
    extensions = [str(1000 + i) for i in range(200)]
    rows = []
    for _ in range(calls):
        person = rng.choice(people)
        if rng.random() < 0.3:  # the same subscriber written the trunk way
            person = "8" + person[1:]
        inbound = rng.random() < 0.6
        other = rng.choice(offices if rng.random() < 0.7 else extensions)
        caller, destination = (person, other) if inbound else (other, person)
        started = YEAR_START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
        duration = rng.randrange(1, 900)
        answered = rng.random() < 0.8
        fields = (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "pbx-bench",
            caller,
            caller[::-1],
            "",
            destination,
            destination[::-1],
            "inbound" if inbound else "outbound",
            started.isoformat(),
            (started + timedelta(seconds=3)).isoformat() if answered else "\\N",
            (started + timedelta(seconds=duration + 3)).isoformat(),
            str(duration + 3),
            str(duration if answered else 0),
            "NORMAL_CLEARING",
            "recv_bye",
            "200" if answered else "487",
            "t" if rng.random() < 0.05 else "f",
            '{"bench": true}',
        )
        rows.append(("\t".join(fields) + "\n").encode())
    return rows


def load(url: str, rows: list[bytes]) -> float:
    """COPY the rows in; return rows per second (index maintenance included)."""
    began = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # calls is partitioned by month (sql/0006): the year's partitions first, so COPY
        # does not fill the default partition.
        cur.execute(
            "SELECT cj_calls_create_partition(m) FROM generate_series("
            "%s::timestamptz, %s::timestamptz, '1 month') AS m",
            (YEAR_START, YEAR_START + timedelta(seconds=YEAR_SECONDS)),
        )
        with cur.copy(f"COPY calls ({COPY_COLUMNS}) FROM STDIN") as copy:
            for i in range(0, len(rows), 10_000):
                copy.write(b"".join(rows[i : i + 10_000]))
        conn.commit()
    elapsed = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE calls")
    return len(rows) / elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


async def measure(
    url: str, queries: int, rng: random.Random, people: list[str]
) -> dict[str, float]:
    config = DatabaseConfig(url=SecretStr(url), pool_size=4)
    results: dict[str, float] = {}
    async with open_database(config) as db:

        def phone_query() -> SearchQuery:
            return SearchQuery(phone=rng.choice(people)[1:], limit=100)

        def interval_query() -> SearchQuery:
            start = YEAR_START + timedelta(seconds=rng.randrange(YEAR_SECONDS - 3600))
            return SearchQuery(start=start, end=start + timedelta(hours=1), limit=100)

        for name, make in (("phone", phone_query), ("interval", interval_query)):
            for _ in range(200):  # warm the cache and the pool
                query = make()
                await db.run(lambda conn, q=query: search_calls(conn, q))
            timings = []
            rows = 0
            for _ in range(queries):
                query = make()
                began = time.perf_counter()
                page = await db.run(lambda conn, q=query: search_calls(conn, q))
                timings.append((time.perf_counter() - began) * 1000)
                rows += len(page.records)
            results[f"{name}_p50_ms"] = round(statistics.median(timings), 3)
            results[f"{name}_p99_ms"] = round(percentile(timings, 99), 3)
            print(
                f"{name:>8} search: p50 {results[f'{name}_p50_ms']:.2f} ms, "
                f"p99 {results[f'{name}_p99_ms']:.2f} ms, "
                f"{rows / queries:.1f} rows/query over {queries} queries"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    people = subscribers(max(1000, args.calls // 5), rng)

    with benchmark_database(args.database_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE calls CASCADE")
        rows = synthesize(args.calls, rng, people)
        print(f"loading {args.calls:,} calls with COPY …")
        rate = load(url, rows)
        del rows
        print(f"    load: {rate:,.0f} rows/s (COPY, indexes maintained)")
        figures = trio.run(measure, url, args.queries, rng, people)
    print(json.dumps({"calls": args.calls, "load_rows_per_s": round(rate), **figures}))


if __name__ == "__main__":
    main()
