"""Issue 11, item 4, the target: the gRPC memory attack on a real cj-api process.

Prints the figures (and, last, one JSON line). Two attacks, each on 3 connections with
a reader token, while an honest client keeps searching:

- the issue's: 34 streams per connection, each sending 31 MiB of a 32 MiB message
  (refused from its length prefix; the rest is acknowledged and dropped);
- the worst case under the limits: 100 streams per connection, each sending all but
  1 KiB of a message just under the 2 MiB limit, and holding it (bounded by the
  connection window).

The server's RSS (from /proc) may grow by at most 64 MB, and every search is answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, open_channel
from cj.rpc.limits import MAX_REQUEST_MESSAGE_BYTES
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN
from tests.hostile.conftest import remember_output
from tests.hostile.grpc_flood import FloodResult, MiB, flood_connection

pytestmark = pytest.mark.slow

LIMIT_MB = 64
SAMPLE_S = 0.05  # RSS sampling period (a measurement, not a wait)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Api:
    def __init__(self, process: trio.Process, grpc_port: int) -> None:
        self.process = process
        self.grpc_port = grpc_port

    @property
    def rss(self) -> int:
        return rss_bytes(self.process.pid)


async def _start_api(database_url: str, tmp_path: Path, nursery: trio.Nursery) -> Api:
    env = {
        **os.environ,
        "CJ_DATABASE_URL": database_url,
        "CJ_API_GRPC_PORT": "0",
        "CJ_API_REST_PORT": "0",
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
        "CJ_AUTH_TOKENS": json.dumps(
            [
                {"name": "a", "token": AGENT_TOKEN, "roles": ["agent"]},
                {"name": "r", "token": READER_TOKEN, "roles": ["reader"]},
            ]
        ),
        "CJ_LOGGING_FORMAT": "json",
        # This test measures memory; its searcher asks as fast as answers come, which the
        # per-token rate would refuse (tests/hostile/test_limits.py covers the limits).
        "CJ_API_SEARCH_RATE_PER_TOKEN": "0",
        "CJ_API_SEARCH_CONCURRENCY_PER_TOKEN": "0",
        "CJ_API_WORKERS": "1",  # the memory of the one process that serves
    }
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "cj_api"], env=env, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr
    seen = b""
    async for chunk in stderr:
        seen += chunk
        if b'"running"' in seen:
            break
    started = next(json.loads(line) for line in seen.splitlines() if b'"api_started"' in line)
    port = int(str(started["grpc"]).rsplit(":", 1)[1])

    async def drain() -> None:
        rest = b""
        async for chunk in stderr:
            rest += chunk
        remember_output("cj-api process (flood test)", (seen + rest).decode(errors="replace"))

    nursery.start_soon(drain)
    return Api(process, port)


async def _searches(port: int, latencies: list[float], stop: trio.Event) -> None:
    async with open_channel(f"127.0.0.1:{port}", token=READER_TOKEN) as channel:
        client = CallJournalClient(channel)
        while not stop.is_set():
            started = trio.current_time()
            await client.search_by_phone(pb.SearchByPhoneRequest(phone="9002800421"), timeout_s=10)
            latencies.append(trio.current_time() - started)


async def _attack(api: Api, **flood: object) -> dict[str, object]:
    """Run one attack on 3 connections with searches alongside; the figures."""
    baseline = api.rss
    peak = baseline
    latencies: list[float] = []
    results = [FloodResult() for _ in range(3)]
    hold = trio.Event()
    stop_searching = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_searches, api.grpc_port, latencies, stop_searching)
        async with trio.open_nursery() as attackers:
            for result in results:
                attackers.start_soon(
                    lambda r=result: flood_connection(
                        api.grpc_port,
                        READER_TOKEN,
                        r,
                        hold=hold,
                        **flood,  # type: ignore[arg-type]
                    )
                )
            # Sample until the bytes stop moving (every stream done, or no credit left).
            last, still = -1, 0
            while still < 20:  # 1 s without progress
                await trio.sleep(SAMPLE_S)
                peak = max(peak, api.rss)
                sent = sum(r.bytes_sent for r in results)
                still = still + 1 if sent == last else 0
                last = sent
            peak = max(peak, api.rss)
            searches_during = len(latencies)
            hold.set()
        stop_searching.set()
    return {
        "rss_baseline_mb": round(baseline / 1e6, 1),
        "rss_peak_mb": round(peak / 1e6, 1),
        "rss_growth_mb": round((peak - baseline) / 1e6, 1),
        "attack_bytes_sent_mb": round(sum(r.bytes_sent for r in results) / 1e6, 1),
        "streams_answered": sum(r.streams_answered for r in results),
        "streams_reset": sum(r.streams_reset for r in results),
        "searches_during_attack": searches_during,
        "search_max_ms": round(max(latencies, default=0) * 1000, 1),
    }


async def test_the_memory_attack_stays_bounded(database_url: str, tmp_path: Path) -> None:
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            api = await _start_api(database_url, tmp_path, nursery)
            try:
                # Warm up: the first calls load code and open the pool.
                for _ in range(3):
                    await _searches_once(api.grpc_port)
                issue = await _attack(api)
                print("the issue's attack (3 x 34 streams, 31 of 32 MiB):", issue)
                under = await _attack(
                    api,
                    streams=100,
                    declared=MAX_REQUEST_MESSAGE_BYTES,
                    send=MAX_REQUEST_MESSAGE_BYTES - 1024,
                )
                print("under the limit (3 x 100 streams, 2 MiB - 1 KiB held):", under)
            finally:
                api.process.terminate()
                await api.process.wait()
    figures = {f"issue_{k}": v for k, v in issue.items()} | {
        f"under_{k}": v for k, v in under.items()
    }
    print(json.dumps(figures))
    assert issue["streams_answered"] == 3 * 34  # each refused (RESOURCE_EXHAUSTED) at once
    for attack in (issue, under):
        assert float(attack["rss_growth_mb"]) <= LIMIT_MB  # type: ignore[arg-type]
        assert int(attack["searches_during_attack"]) > 0  # type: ignore[call-overload]
    assert float(under["attack_bytes_sent_mb"]) <= 3 * 9 * MiB / 1e6  # type: ignore[arg-type]


async def _searches_once(port: int) -> None:
    async with open_channel(f"127.0.0.1:{port}", token=READER_TOKEN) as channel:
        await CallJournalClient(channel).search_by_phone(
            pb.SearchByPhoneRequest(phone="9002800421"), timeout_s=10
        )
