"""CDR parsing throughput: how many documents per second one core turns into Calls.

Run: .venv/bin/python bench/cdr_parse.py [--seconds 2]
Inputs: the compact and FreeSWITCH samples, and a FreeSWITCH document padded with 600
URL-encoded channel variables (~47 KB), the size of a busy production channel.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from cj.cdr import CdrOptions, parse_cdr

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "cdr" / "samples"
OPTIONS = CdrOptions(timezone="Europe/Moscow")


def measure(seconds: float, work: Callable[[], object]) -> float:
    """Calls per second of `work`, measured for about `seconds`."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            work()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def big_freeswitch() -> bytes:
    document = json.loads(
        (SAMPLES / "freeswitch" / "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.cdr.json").read_bytes()
    )
    for i in range(600):
        document["variables"][f"rtp_var_{i}"] = (
            f"v%3D0%0D%0Ao%3DFreeSWITCH%20{i}%20IN%20IP4%20192.0.2.{i % 250}"
        )
    return json.dumps(document).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per input")
    args = parser.parse_args()
    inputs = {
        "compact": (SAMPLES / "compact" / "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.json").read_bytes(),
        "freeswitch": (
            SAMPLES / "freeswitch" / "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.cdr.json"
        ).read_bytes(),
        "freeswitch_big": big_freeswitch(),
    }
    results: dict[str, dict[str, float]] = {}
    for name, data in inputs.items():
        rate = measure(args.seconds, lambda data=data: parse_cdr(data, OPTIONS))  # type: ignore[misc]
        results[name] = {
            "bytes": len(data),
            "docs_per_s": round(rate),
            "us_per_doc": round(1e6 / rate, 1),
            "mb_per_s": round(rate * len(data) / 1e6, 1),
        }
        print(
            f"{name:>15}: {len(data):>7} bytes  {rate:>9.0f} docs/s  "
            f"{1e6 / rate:>8.1f} µs/doc  {rate * len(data) / 1e6:>6.1f} MB/s"
        )
    print(json.dumps({"benchmark": "cdr_parse", "results": results}))


if __name__ == "__main__":
    main()
