"""REST benchmark: cj-api in its own process, driven over HTTP/1.1 with httpx.

    .venv/bin/python bench/rest.py [--upload-mb M] [--database-url URL]

Starts a private PostgreSQL (unless --database-url) and `python -m cj_api` with
filesystem storage in a temporary directory (as bench/api.py does), then measures:

- POST /api/v1/calls, one at a time, and from 16 concurrent clients;
- POST /api/v1/calls:batch with 10,000 calls;
- PUT …/recording of one M MB WAV (default 200) streamed from disk, and how much the
  server's RSS grew meanwhile (sampled every 20 ms; backpressure bounds it to a few MB
  whatever the file's size);
- GET …/recording of that file (the WAV while not encoded), and 64 KiB Range requests.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import httpx
import trio

from bench._pg import benchmark_database
from bench.api import AGENT, READER, make_wav, new_call, start_api
from bench.search import percentile
from cj_api.call_codec import call_to_json

CONCURRENT_CLIENTS = 16
CHUNK = 256 * 1024


def rss_bytes(pid: int) -> int:
    """The process's resident set size now (Linux: VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


async def sample_rss(pid: int, peak: list[int], done: trio.Event) -> None:
    """Record the highest RSS seen until `done` (an external process: poll it)."""
    while not done.is_set():
        peak[0] = max(peak[0], rss_bytes(pid))
        with trio.move_on_after(0.02):
            await done.wait()


async def file_body(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(CHUNK):
            yield chunk


async def measure(port: int, pid: int, args: argparse.Namespace, wav: Path) -> dict[str, Any]:
    rng = random.Random(5)
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {}
    agent_headers = {"Authorization": f"Bearer {AGENT}"}
    async with httpx.AsyncClient(base_url=base, headers=agent_headers, timeout=600) as agent:
        bodies = [call_to_json(new_call(rng), include_raw=True) for _ in range(args.single)]
        began = time.perf_counter()
        for body in bodies:
            (await agent.post("/api/v1/calls", json=body)).raise_for_status()
        figures["post_call_per_s"] = round(len(bodies) / (time.perf_counter() - began))
        print(f"POST /calls, sequential:     {figures['post_call_per_s']:>8,} calls/s")

        batch = [call_to_json(new_call(rng), include_raw=True) for _ in range(10_000)]
        began = time.perf_counter()
        answer = await agent.post("/api/v1/calls:batch", json={"calls": batch})
        elapsed = time.perf_counter() - began
        assert answer.json()["inserted"] == len(batch), answer.text
        figures["batch_10k_s"] = round(elapsed, 2)
        figures["batch_calls_per_s"] = round(len(batch) / elapsed)
        print(f"POST /calls:batch, 10,000:   {figures['batch_calls_per_s']:>8,} calls/s")

    per_client = args.concurrent // CONCURRENT_CLIENTS
    groups = [
        [call_to_json(new_call(rng), include_raw=True) for _ in range(per_client)]
        for _ in range(CONCURRENT_CLIENTS)
    ]

    async def one_client(group: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(base_url=base, headers=agent_headers) as client:
            for body in group:
                (await client.post("/api/v1/calls", json=body)).raise_for_status()

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for group in groups:
            nursery.start_soon(one_client, group)
    figures["post_call_concurrent_per_s"] = round(
        per_client * CONCURRENT_CLIENTS / (time.perf_counter() - began)
    )
    print(
        f"POST /calls, {CONCURRENT_CLIENTS} clients:     "
        f"{figures['post_call_concurrent_per_s']:>8,} calls/s"
    )

    call = new_call(rng)
    size, digest = await trio.to_thread.run_sync(
        lambda: (wav.stat().st_size, hashlib.sha256(wav.read_bytes()).hexdigest())
    )
    path = f"/api/v1/calls/{call.uuid}/recording"
    async with httpx.AsyncClient(base_url=base, headers=agent_headers, timeout=600) as agent:
        (await agent.post("/api/v1/calls", json=call_to_json(call))).raise_for_status()
        rss_before = rss_bytes(pid)
        peak, done = [rss_before], trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_rss, pid, peak, done)
            began = time.perf_counter()
            answer = await agent.put(
                path,
                content=file_body(wav),
                headers={
                    "Content-Type": "audio/wav",
                    "Content-Length": str(size),
                    "X-Content-SHA256": digest,
                },
            )
            elapsed = time.perf_counter() - began
            done.set()
        answer.raise_for_status()
        rss_growth = peak[0] - rss_before
    figures["upload_mb_per_s"] = round(size / 1e6 / elapsed, 1)
    figures["upload_peak_rss_growth_mb"] = round(rss_growth / 1e6, 1)
    print(
        f"PUT recording, {size / 1e6:.0f} MB:     {figures['upload_mb_per_s']:>8} MB/s "
        f"(server RSS grew at most {figures['upload_peak_rss_growth_mb']} MB)"
    )

    reader_headers = {"Authorization": f"Bearer {READER}"}
    async with httpx.AsyncClient(base_url=base, headers=reader_headers, timeout=600) as reader:
        received = 0
        began = time.perf_counter()
        async with reader.stream("GET", path) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                received += len(chunk)
        elapsed = time.perf_counter() - began
        assert received == size, (received, size)
        figures["download_mb_per_s"] = round(size / 1e6 / elapsed, 1)
        print(f"GET recording, whole:        {figures['download_mb_per_s']:>8} MB/s")
        timings = []
        for _ in range(args.ranges):
            start = rng.randrange(0, size - 65536)
            began = time.perf_counter()
            part = await reader.get(path, headers={"Range": f"bytes={start}-{start + 65535}"})
            timings.append((time.perf_counter() - began) * 1000)
            assert part.status_code == 206 and len(part.content) == 65536
    figures["range_p50_ms"] = round(statistics.median(timings), 2)
    figures["range_p99_ms"] = round(percentile(timings, 99), 2)
    print(
        f"GET 64 KiB range:            p50 {figures['range_p50_ms']:.2f} ms, "
        f"p99 {figures['range_p99_ms']:.2f} ms"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="sequential POST /calls")
    parser.add_argument("--concurrent", type=int, default=4000, help="POST /calls, 16 clients")
    parser.add_argument("--upload-mb", type=int, default=200)
    parser.add_argument("--ranges", type=int, default=500)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-rest-"))
    try:
        with benchmark_database(args.database_url) as url:
            wav = workdir / "big.wav"
            make_wav(wav, args.upload_mb)
            process, _, rest_port = start_api(url, workdir)
            try:
                figures = trio.run(measure, rest_port, process.pid, args, wav)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
