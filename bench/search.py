"""Search benchmark: load N synthetic calls with COPY, then time the searches beside
the raw SQL they run.

    .venv/bin/python bench/search.py [--calls N] [--order time|random] [--queries Q]
                                     [--recent] [--database-url URL]

Without --database-url (or CJ_BENCH_DATABASE_URL) a private PostgreSQL cluster is
started from the machine's binaries in a temporary directory (durable settings, 1 GiB
shared buffers) and removed afterwards. Calls are generated and COPied in chunks of
100,000 (10,000,000 fit in a few hundred MB), in time order (`--order time`, as PBXs
write them) or scattered over the year (`random`, the default); the year is 2025, or
the 365 days up to now with `--recent` (a live PBX: the newest calls are this month's).
Queries, 100 rows a page, warm cache: `phone`, phone-suffix searches for random known
subscribers (10 digits; a few calls each, a page never fills); `office`, the same for
the 50 office numbers (thousands of calls each: the newest months fill the page);
`interval`, one-hour interval searches at random places in the year.

Each search is timed in three shapes, each through `cj.db` as the API runs it and as
raw SQL (the same statement and parameters on a plain psycopg pool with the API's
connection settings, fetched as tuples, no Trio):

- `rows`: `search_calls`, rows to dataclasses (exports, the CLI);
- `json`: `cj.db.wire.search_json`, PostgreSQL writes the REST answer;
- `pb`: `cj.db.wire.search_rows`, flat tuples for gRPC's messages.

`cj.db` runs a search over widening windows of time (cj.db.windows); `single` is the
same fetcher with `windowed=False` (one statement over all months: the baseline), and
raw SQL runs that single statement. The last line printed is one JSON object with the
figures, the db-layer/raw ratios (target: ≤ 1.2 at p50) and windowed/single ratios.
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
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import psycopg
import psycopg_pool
import trio
from psycopg.rows import tuple_row
from pydantic import SecretStr

from bench._pg import benchmark_database
from cj.config import DatabaseConfig
from cj.db import Connection, open_database, windows
from cj.db.calls import SearchQuery, search_calls, search_statement
from cj.db.pool import connection_kwargs
from cj.db.wire import JsonPage, RowsPage, json_statement, rows_statement, search_json, search_rows

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 86400
COPY_COLUMNS = (
    "uuid, source, caller_number, caller_digits_rev, caller_name, destination_number, "
    "destination_digits_rev, direction, started_at, answered_at, ended_at, duration_s, "
    "billsec, hangup_cause, hangup_side, sip_code, private, raw"
)


def subscribers(count: int, rng: random.Random) -> list[str]:
    return [f"79{rng.randrange(10**9):09d}" for _ in range(count)]


CHUNK_ROWS = 100_000


def synthesize(
    calls: int,
    rng: random.Random,
    people: list[str],
    order: str = "random",
    chunk_rows: int = CHUNK_ROWS,
    offices: list[str] | None = None,
) -> Iterator[bytes]:
    """COPY text-format rows, `chunk_rows` to a chunk, generated as they are COPied (so
    10,000,000 never sit in memory at once). `order="time"`: started_at ascends through
    the year, as a PBX writes its calls; `"random"`: scattered over it."""
    if order not in ("time", "random"):
        raise ValueError(f"order must be time or random, not {order!r}")
    offices = offices or office_numbers(rng)
    extensions = [str(1000 + i) for i in range(200)]
    for first in range(0, calls, chunk_rows):
        count = min(chunk_rows, calls - first)
        if order == "time":  # this chunk's slice of the year, ascending
            low = YEAR_SECONDS * first // calls
            high = max(low + 1, YEAR_SECONDS * (first + count) // calls)
            offsets = sorted(rng.randrange(low, high) for _ in range(count))
        else:
            offsets = [rng.randrange(YEAR_SECONDS) for _ in range(count)]
        rows = []
        for offset in offsets:
            person = rng.choice(people)
            if rng.random() < 0.3:  # the same subscriber written the trunk way
                person = "8" + person[1:]
            inbound = rng.random() < 0.6
            other = rng.choice(offices if rng.random() < 0.7 else extensions)
            caller, destination = (person, other) if inbound else (other, person)
            started = YEAR_START + timedelta(seconds=offset)
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
            rows.append("\t".join(fields))
        yield ("\n".join(rows) + "\n").encode()


def load(url: str, chunks: Iterable[bytes]) -> float:
    """COPY the rows in (each chunk: whole text-format lines) and VACUUM ANALYZE; return
    rows per second from the first chunk to the commit (index maintenance included, and
    so is generating the chunks, which overlaps with PostgreSQL's work)."""
    rows = 0
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
            for chunk in chunks:
                copy.write(chunk)
                rows += chunk.count(b"\n")
        conn.commit()
    elapsed = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE calls")
    return rows / elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def timed(run: Callable[[], Any], count: int) -> list[float]:
    """Milliseconds of `count` calls of `run`, one after another."""
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        run()
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def summary(timings: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(percentile(timings, 99), 3),
    }


def raw_pool(url: str, size: int) -> psycopg_pool.ConnectionPool[Any]:
    """A plain psycopg pool with the API's connection settings (cj.db.pool)."""
    config = DatabaseConfig(url=SecretStr(url), pool_size=size)
    kwargs = {k: v for k, v in connection_kwargs(config).items() if v is not None}
    return psycopg_pool.ConnectionPool(url, min_size=1, max_size=size, kwargs=kwargs, open=True)


def time_raw_sql(
    pool: psycopg_pool.ConnectionPool[Any], statements: list[tuple[str, dict[str, Any]]]
) -> list[float]:
    """Milliseconds of each statement run alone: take a pooled connection, execute,
    fetch every row as tuples, give it back (autocommit off: one transaction, as
    `Database.run`)."""
    timings = []
    for sql, params in statements:
        began = time.perf_counter()
        with pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params).fetchall()
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def page_size(page: Any) -> int:
    if isinstance(page, JsonPage):
        return page.count
    return len(page.rows if isinstance(page, RowsPage) else page.records)


def phone_queries(rng: random.Random, people: list[str], count: int) -> list[SearchQuery]:
    return [SearchQuery(phone=rng.choice(people)[1:], limit=100) for _ in range(count)]


def office_numbers(rng: random.Random) -> list[str]:
    return [f"8495{rng.randrange(10**7):07d}" for _ in range(50)]


def interval_queries(rng: random.Random, count: int) -> list[SearchQuery]:
    queries = []
    for _ in range(count):
        start = YEAR_START + timedelta(seconds=rng.randrange(YEAR_SECONDS - 3600))
        queries.append(SearchQuery(start=start, end=start + timedelta(hours=1), limit=100))
    return queries


SHAPES: dict[str, tuple[Callable[[SearchQuery], tuple[str, dict[str, Any]]], Any]] = {
    "rows": (search_statement, search_calls),
    "json": (json_statement, search_json),
    "pb": (rows_statement, search_rows),
}


async def measure(
    url: str, queries: int, rng: random.Random, people: list[str], offices: list[str]
) -> dict[str, float]:
    """Each kind × shape: raw SQL, then the same queries through `cj.db` (pool of 4),
    windowed and single."""
    config = DatabaseConfig(url=SecretStr(url), pool_size=4)
    results: dict[str, float] = {}
    kinds = {
        "phone": phone_queries(rng, people, queries),
        "office": [SearchQuery(phone=rng.choice(offices)[1:]) for _ in range(queries)],
        "interval": interval_queries(rng, queries),
    }
    warm = {
        "phone": phone_queries(rng, people, 200),
        "office": [SearchQuery(phone=rng.choice(offices)[1:]) for _ in range(200)],
        "interval": interval_queries(rng, 200),
    }
    pool = raw_pool(url, 4)
    try:
        async with open_database(config) as db:
            for kind, batch in kinds.items():
                for shape, (statement, fetch) in SHAPES.items():
                    # Interleaved, query by query, so that both see the same noise.
                    raw_timings: list[float] = []
                    layer_timings: list[float] = []
                    single_timings: list[float] = []
                    rows = 0
                    for query in warm[kind] + batch:
                        raw_timings += time_raw_sql(pool, [statement(query)])
                        for windowed, timings in ((True, layer_timings), (False, single_timings)):

                            def run(
                                conn: Connection,
                                q: SearchQuery = query,
                                f: Any = fetch,
                                w: bool = windowed,
                            ) -> Any:
                                return f(conn, q, windowed=w)

                            began = time.perf_counter()
                            page = await db.run(run)
                            timings.append((time.perf_counter() - began) * 1000)
                            rows += page_size(page) if windowed else 0
                    raw = summary(raw_timings[len(warm[kind]) :])
                    layer = summary(layer_timings[len(warm[kind]) :])
                    single = summary(single_timings[len(warm[kind]) :])
                    prefix = f"{kind}_{shape}"
                    for name, value in raw.items():
                        results[f"{prefix}_raw_{name}"] = value
                    for name, value in layer.items():
                        results[f"{prefix}_db_{name}"] = value
                    for name, value in single.items():
                        results[f"{prefix}_single_{name}"] = value
                    windows = round(layer["p50_ms"] / single["p50_ms"], 2)
                    results[f"{prefix}_windowed_over_single_p50"] = windows
                    ratio = round(layer["p50_ms"] / raw["p50_ms"], 2)
                    results[f"{prefix}_db_over_raw_p50"] = ratio
                    results[f"{prefix}_db_over_raw_p99"] = round(layer["p99_ms"] / raw["p99_ms"], 2)
                    print(
                        f"{kind:>8} {shape:>4}: raw SQL p50 {raw['p50_ms']:6.2f} ms "
                        f"p99 {raw['p99_ms']:6.2f} | cj.db p50 {layer['p50_ms']:6.2f} ms "
                        f"p99 {layer['p99_ms']:6.2f} | single p50 {single['p50_ms']:6.2f} ms "
                        f"p99 {single['p99_ms']:6.2f} | db/raw {ratio:.2f}×, "
                        f"windowed/single {windows:.2f}× p50, "
                        f"{rows / len(layer_timings):.1f} rows/query"
                    )
    finally:
        pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--order", choices=("time", "random"), default="random")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--recent", action="store_true", help="the calls' year ends now (default: 2025)"
    )
    parser.add_argument(
        "--steps",
        default=",".join(map(str, windows.STEPS)),
        help="months back where cj.db.windows cuts its windows (default: %(default)s)",
    )
    args = parser.parse_args()
    windows.STEPS = tuple(int(months) for months in args.steps.split(","))
    if args.recent:
        global YEAR_START
        YEAR_START = datetime.now(UTC) - timedelta(seconds=YEAR_SECONDS)
    rng = random.Random(args.seed)
    people = subscribers(max(1000, args.calls // 5), rng)
    offices = office_numbers(rng)

    with benchmark_database(args.database_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE calls CASCADE")
        print(f"loading {args.calls:,} calls with COPY, in {args.order} order …")
        rate = load(url, synthesize(args.calls, rng, people, args.order, offices=offices))
        print(f"    load: {rate:,.0f} rows/s (COPY, indexes maintained, generation included)")
        figures = trio.run(measure, url, args.queries, rng, people, offices)
    ratios = {key: value for key, value in figures.items() if "_over_" in key}
    print(
        json.dumps(
            {
                "calls": args.calls,
                "order": args.order,
                "recent": args.recent,
                "steps": list(windows.STEPS),
                "load_rows_per_s": round(rate),
                "ratios": ratios,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
