"""Flood benchmark: one token floods searches; how fast is another token's ordinary search?

    .venv/bin/python bench/flood.py [--calls N] [--flooders F] [--queries Q] [--database-url URL]

Loads N synthetic calls (default 200,000) with COPY, then runs `python -m cj_api` twice
(REST, filesystem storage, the PostgreSQL queue): once with the per-token limits off
(`api.search_*_per_token = 0`), once with their defaults. Each time token B runs Q
ordinary phone searches (100 rows a page, one at a time, ten a second) alone, then again (for at
most --budget-s seconds) while token A's F clients (default 64, one connection each)
search `limit=1000` over 100 years as fast as they can, retrying a 429 at once (a
hostile client ignores Retry-After).

The last line printed is one JSON object: token B's p50/p99 in ms, alone and during the
flood, without and with the limits, and how many of A's requests were answered 200/429.
Target (issue 11): with the limits, B's p99 during the flood stays under 100 ms.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import httpx
import trio

from bench._pg import benchmark_database
from bench.search import load, percentile, subscribers, synthesize
from cj.pgcluster import free_port

FLOODER = "bench-flooder-token-0123456789"
ORDINARY = "bench-ordinary-token-0123456789"
WARMUP = 50
FLOOD_RAMP_S = 3.0
PACE_S = 0.1  # token B: ten searches a second, half its default rate limit


def start_api(url: str, workdir: Path, limits: bool) -> tuple[subprocess.Popen[bytes], int]:
    rest_port = free_port()
    env = {
        **os.environ,
        "CJ_DATABASE_URL": url,
        "CJ_API_GRPC_PORT": str(free_port()),
        "CJ_API_REST_PORT": str(rest_port),
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(workdir / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(workdir / "recordings"),
        "CJ_LOGGING_LEVEL": "warning",
        "CJ_API_WORKERS": "1",  # one event loop: what the per-token limits protect
        "CJ_AUTH_TOKENS": json.dumps(
            [
                {"name": "flooder", "token": FLOODER, "roles": ["reader"]},
                {"name": "ordinary", "token": ORDINARY, "roles": ["reader"]},
            ]
        ),
    }
    if not limits:
        for key in ("CONCURRENCY", "RATE"):
            env[f"CJ_API_SEARCH_{key}_PER_TOKEN"] = "0"
    process = subprocess.Popen([sys.executable, "-m", "cj_api"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # an external process: poll its readiness
        try:
            if httpx.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=1).status_code == 200:
                return process, rest_port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("cj-api did not become ready within 60 s")


async def ordinary_searches(
    base: str, phones: list[str], budget_s: float = float("inf"), pace_s: float = PACE_S
) -> list[float]:
    """Token B's searches one at a time, one every `pace_s` at most (an ordinary client
    stays within its own limits), until done or `budget_s` is spent."""
    timings: list[float] = []
    deadline = time.perf_counter() + budget_s
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {ORDINARY}"}, timeout=60
    ) as http:
        for phone in phones:
            if time.perf_counter() > deadline and len(timings) >= 10:
                break
            began = time.perf_counter()
            (await http.get("/api/v1/calls", params={"phone": phone})).raise_for_status()
            took = time.perf_counter() - began
            timings.append(took * 1000)
            await trio.sleep(max(0.0, pace_s - took))
    return timings


async def flood(base: str, answers: Counter[int]) -> None:
    params = {"from": "1950-01-01T00:00:00Z", "to": "2050-01-01T00:00:00Z", "limit": "1000"}
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {FLOODER}"}, timeout=120
    ) as http:
        while True:
            try:
                answer = await http.get("/api/v1/calls", params=params)
                answers[answer.status_code] += 1
            except httpx.HTTPError:
                answers[0] += 1


async def flood_for(base: str, flooders: int, seconds: float) -> dict[str, int]:
    """The flooding process's work: `flooders` clients for `seconds`; the answers counted."""
    answers: Counter[int] = Counter()
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(flooders):
                nursery.start_soon(flood, base, answers)
    return {str(status): count for status, count in answers.items()}


async def measure(rest_port: int, people: list[str], args: argparse.Namespace) -> dict[str, float]:
    base = f"http://127.0.0.1:{rest_port}"
    rng = random.Random(11)
    phones = [rng.choice(people)[1:] for _ in range(args.queries + WARMUP)]
    await ordinary_searches(base, phones[:WARMUP])
    alone = await ordinary_searches(base, phones[WARMUP:])
    # The flood comes from its own process: in this one, 64 busy clients would slow
    # token B's client down, and we would measure ourselves instead of the server.
    flood_s = FLOOD_RAMP_S + args.budget_s + 5.0
    command = [sys.executable, __file__, "--flood", base, "--flooders", str(args.flooders)]
    command += ["--flood-seconds", str(flood_s)]
    async with trio.open_nursery() as nursery:
        flooding = functools.partial(trio.run_process, command, capture_stdout=True)
        result: list[subprocess.CompletedProcess[bytes]] = []

        async def run_flood() -> None:
            result.append(await flooding())

        nursery.start_soon(run_flood)
        await trio.sleep(FLOOD_RAMP_S)  # let the flood build up
        during = await ordinary_searches(base, phones[WARMUP:], args.budget_s)
    answers = json.loads(result[0].stdout.decode().strip().splitlines()[-1])
    return {
        "alone_p50_ms": round(statistics.median(alone), 1),
        "alone_p99_ms": round(percentile(alone, 99), 1),
        "flood_p50_ms": round(statistics.median(during), 1),
        "flood_p90_ms": round(percentile(during, 90), 1),
        "flood_p99_ms": round(percentile(during, 99), 1),
        "flood_max_ms": round(max(during), 1),
        "flood_searches": len(during),
        "flooder_200_per_s": round(answers.get("200", 0) / flood_s, 1),
        "flooder_429_per_s": round(answers.get("429", 0) / flood_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls preloaded")
    parser.add_argument("--flooders", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--budget-s", type=float, default=30.0, help="time for B's searches during the flood"
    )
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    parser.add_argument("--flood", help=argparse.SUPPRESS)  # the flooding child process
    parser.add_argument("--flood-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(trio.run(flood_for, args.flood, args.flooders, args.flood_seconds)))
        return
    rng = random.Random(7)
    people = subscribers(max(1000, args.calls // 5), rng)
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-flood-"))
    results: dict[str, float] = {}
    try:
        with benchmark_database(args.database_url) as url:
            print(f"loading {args.calls:,} calls …")
            load(url, synthesize(args.calls, rng, people))
            for limits in (False, True):
                process, rest_port = start_api(url, workdir, limits)
                try:
                    figures = trio.run(measure, rest_port, people, args)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                label = "with_limits" if limits else "without_limits"
                print(
                    f"{label:>15}: token B alone p50 {figures['alone_p50_ms']} ms, p99 "
                    f"{figures['alone_p99_ms']} ms; during {args.flooders} flooders p50 "
                    f"{figures['flood_p50_ms']} ms, p99 {figures['flood_p99_ms']} ms "
                    f"(flooder: {figures['flooder_200_per_s']}/s answered 200, "
                    f"{figures['flooder_429_per_s']}/s 429)"
                )
                results.update({f"{label}_{key}": value for key, value in figures.items()})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
