"""Per-token limits: what one admission costs, in this process's memory and in the table
the workers share (cj_api.limits_table), alone and while other processes use it too.

    .venv/bin/python bench/limits.py [--requests N] [--contenders C]

Each measure runs `TokenLimits.admit` (the concurrency check, a bucket take, the slot
held and released: what a search costs) N times (default 200,000) and reports the
median of five rounds, in microseconds per request:

- `memory_us`: api.workers = 1 (the in-memory state);
- `shared_us`: the shared table, one process;
- `contended_us`: the shared table while C other processes (default 1) admit requests
  of the same token in a loop (the lock is then really taken in turns).

The last line printed is one JSON object with those figures and `shared_over_memory`.
Target: far below a millisecond per request (a search itself takes milliseconds).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from cj_api.limits import Limit, TokenLimits
from cj_api.limits_table import LimitTable

# Never refused: a huge burst and rate, a concurrency the loop never reaches.
LIMIT = Limit(concurrency=1000, rate_per_s=1e12, burst=1_000_000_000)
ROUNDS = 5


def per_request_us(limits: TokenLimits, requests: int) -> float:
    rounds = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        for _ in range(requests):
            with limits.admit("reader", 1.0):
                pass
        rounds.append((time.perf_counter() - began) / requests * 1e6)
    return statistics.median(rounds)


def contend(path: str, worker: int, stop: multiprocessing.synchronize.Event) -> None:
    limits = TokenLimits("search", LIMIT, table=LimitTable.open(Path(path), worker))
    while not stop.is_set():
        for _ in range(1000):
            with limits.admit("reader", 1.0):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--contenders", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cj-bench-limits-") as scratch:
        path = Path(scratch) / "limits"
        LimitTable.create(path, workers=1 + args.contenders, capacity=16)
        memory = per_request_us(TokenLimits("search", LIMIT), args.requests)
        shared_limits = TokenLimits("search", LIMIT, table=LimitTable.open(path, 0))
        shared = per_request_us(shared_limits, args.requests)
        stop = multiprocessing.Event()
        others = [
            multiprocessing.Process(target=contend, args=(str(path), 1 + n, stop))
            for n in range(args.contenders)
        ]
        for process in others:
            process.start()
        time.sleep(0.5)  # the contenders are in their loops
        contended = per_request_us(shared_limits, args.requests)
        stop.set()
        for process in others:
            process.join()
        left = shared_limits.active("reader")
    figures = {
        "requests": args.requests,
        "contenders": args.contenders,
        "memory_us": round(memory, 2),
        "shared_us": round(shared, 2),
        "contended_us": round(contended, 2),
        "shared_over_memory": round(shared / memory, 2),
        "slots_left_held": left,
    }
    print(f"in memory (api.workers = 1):        {memory:7.2f} us per request")
    print(f"shared table, one process:          {shared:7.2f} us per request")
    print(f"shared table, {args.contenders} other process(es): {contended:7.2f} us per request")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
