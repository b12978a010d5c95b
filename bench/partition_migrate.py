"""Migration to partitioned calls (sql/0006) on a loaded database: how long calls is locked.

    .venv/bin/python bench/partition_migrate.py [--calls N] [--database-url URL]

Migrates a private PostgreSQL (or the empty database given) to the schema before 0006,
COPYs N synthetic calls (default 1,000,000; one in ten with a recording row) into the
plain `calls`, then applies 0006 while a client keeps looking up one call every 50 ms:
the longest lookup is the downtime a live cj-api sees (its requests wait on the lock,
they do not fail). Checks that every call and recording is still there. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import psycopg

from bench._pg import benchmark_database
from cj.db.migrate import default_sql_dir, migrate

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)


def _legacy_sql(directory: Path) -> Path:
    for path in sorted(default_sql_dir().glob("*.sql")):
        if int(path.name[:4]) < 6:
            shutil.copy(path, directory / path.name)
    return directory


def _load(url: str, calls: int, rng: random.Random) -> uuid.UUID:
    probe = uuid.uuid4()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY calls (uuid, source, caller_number, caller_digits_rev, destination_number,"
            " destination_digits_rev, started_at, duration_s, raw) FROM STDIN"
        ) as copy:
            for i in range(calls):
                caller = f"79{rng.randrange(10**9):09d}"
                started = YEAR_START + timedelta(seconds=i * 365 * 86400 // calls)
                copy.write_row(
                    (
                        probe if i == 0 else uuid.uuid4(),
                        "pbx-bench",
                        caller,
                        caller[::-1],
                        "84951234567",
                        "76543215948",
                        started,
                        60,
                        '{"bench": true}',
                    )
                )
        cur.execute(
            """INSERT INTO recordings (call_uuid, status, original_name, original_size,
                                       original_sha256)
               SELECT uuid, 'uploaded', 'a.wav', 1, repeat('a', 64)
                 FROM calls TABLESAMPLE BERNOULLI (10)"""
        )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return probe


def _counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM recordings)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="cj-bench-sql-") as sql_dir:
        legacy = _legacy_sql(Path(sql_dir))
        # benchmark_database migrates fully; CJ_SQL_DIR makes it stop before 0006.
        os.environ["CJ_SQL_DIR"] = str(legacy)
        with benchmark_database(args.database_url, name="migrate") as url:
            del os.environ["CJ_SQL_DIR"]
            print(f"loading {args.calls:,} calls into the unpartitioned schema …")
            probe = _load(url, args.calls, rng)
            before = _counts(url)
            with psycopg.connect(url) as conn:
                size = conn.execute("SELECT pg_total_relation_size('calls')").fetchone()
            stop = threading.Event()
            waits: list[float] = []

            def lookups() -> None:
                with psycopg.connect(url, autocommit=True) as conn:
                    while not stop.is_set():
                        began = time.perf_counter()
                        conn.execute("SELECT source FROM calls WHERE uuid = %s", (probe,))
                        waits.append(time.perf_counter() - began)
                        stop.wait(0.05)

            reader = threading.Thread(target=lookups)
            reader.start()
            time.sleep(1)
            print("applying 0006 (partitioned calls) …")
            began = time.perf_counter()
            applied = migrate(url)
            elapsed = time.perf_counter() - began
            time.sleep(0.5)
            stop.set()
            reader.join()
            after = _counts(url)
            assert [m.version for m in applied] == [6], applied
            assert after == before, (before, after)
            with psycopg.connect(url) as conn:
                parts = conn.execute(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'calls'::regclass"
                ).fetchone()
    figures = {
        "calls": args.calls,
        "recordings": before[1],
        "calls_bytes_before": size[0] if size else None,
        "migration_s": round(elapsed, 1),
        "longest_lookup_s": round(max(waits), 1),
        "partitions": parts[0] if parts else None,
        "rows_kept": after == before,
    }
    print(
        f"0006 took {elapsed:.1f} s on {args.calls:,} calls; the longest lookup meanwhile "
        f"waited {max(waits):.1f} s; every call and recording kept"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
