"""API benchmark: cj-api in its own process, driven over real sockets.

    .venv/bin/python bench/api.py [--calls N] [--upload-mb M] [--database-url URL]

Starts a private PostgreSQL (unless --database-url), loads N synthetic calls (default
1,000,000) with COPY, starts `python -m cj_api` on free ports with filesystem storage
in a temporary directory and the PostgreSQL queue, then measures from this process:

- AddCall, one at a time, and from 16 concurrent clients (one connection each);
- AddCalls, one stream of 20,000 calls;
- UploadRecording of one M MB WAV (default 100), 64 KiB chunks;
- search by phone through gRPC and through REST (random known subscribers), p50/p99.

The last line printed is one JSON object with the figures. Targets on the 2-core
machine: AddCalls ≥ 3,000 calls/s; upload ≥ 40 MB/s; REST search p99 ≤ 25 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import httpx
import trio

from bench._pg import benchmark_database
from bench.search import load, percentile, subscribers, synthesize
from cj.codec import call_to_pb
from cj.model import Call, Direction
from cj.pgcluster import free_port
from cj.phone import PhoneNumber
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, file_chunks, open_channel

AGENT = "bench-agent-token-0123456789"
READER = "bench-reader-token-0123456789"
CONCURRENT_CLIENTS = 16


def new_call(rng: random.Random) -> Call:
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(86400 * 30))
    return Call(
        uuid=uuid.uuid4(),
        caller=PhoneNumber(f"79{rng.randrange(10**9):09d}"),
        destination=PhoneNumber("84957001020"),
        started_at=started,
        answered_at=started + timedelta(seconds=3),
        ended_at=started + timedelta(seconds=63),
        duration_s=63,
        billsec=60,
        direction=Direction.INBOUND,
        hangup_cause="NORMAL_CLEARING",
        hangup_side="recv_bye",
        sip_code=200,
        raw={"bench": True},
    )


def pcm16_wav_header(data_size: int, rate: int = 8000, channels: int = 1) -> bytes:
    """The 44-byte header of a PCM 16-bit WAV whose data chunk holds `data_size` bytes."""
    block_align = 2 * channels
    return (
        b"RIFF"
        + (36 + data_size).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")  # PCM
        + channels.to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * block_align).to_bytes(4, "little")
        + block_align.to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + data_size.to_bytes(4, "little")
    )


def make_wav(path: Path, megabytes: int) -> None:
    """A PCM16 8 kHz mono WAV of about `megabytes` MB (noise; the API does not decode)."""
    header = pcm16_wav_header(megabytes * 1024 * 1024)
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        f.write(header)
        for _ in range(megabytes):
            f.write(block)


def start_api(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, rest_port = free_port(), free_port()
    env = {
        **os.environ,
        "CJ_DATABASE_URL": url,
        "CJ_DATABASE_POOL_SIZE": "16",
        "CJ_API_GRPC_PORT": str(grpc_port),
        "CJ_API_REST_PORT": str(rest_port),
        "CJ_API_MAX_RECORDING_BYTES": str(4 * 1024**3),
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(workdir / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(workdir / "recordings"),
        "CJ_LOGGING_LEVEL": "warning",
        "CJ_AUTH_TOKENS": json.dumps(
            [
                # Its own name (calls sent without a source) and bench/agent.py's source.
                {
                    "name": "bench-agent",
                    "token": AGENT,
                    "roles": ["agent"],
                    "sources": ["bench-agent", "pbx-bench"],
                },
                {"name": "bench-reader", "token": READER, "roles": ["reader"]},
            ]
        ),
    }
    process = subprocess.Popen([sys.executable, "-m", "cj_api"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # an external process: poll its readiness
        try:
            if httpx.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=1).status_code == 200:
                return process, grpc_port, rest_port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("cj-api did not become ready within 60 s")


async def measure(
    grpc_port: int, rest_port: int, people: list[str], args: argparse.Namespace, wav: Path
) -> dict[str, float]:
    rng = random.Random(11)
    address = f"127.0.0.1:{grpc_port}"
    figures: dict[str, float] = {}
    async with open_channel(address, token=AGENT, default_timeout_s=600) as channel:
        client = CallJournalClient(channel)
        calls = [call_to_pb(new_call(rng), include_raw=True) for _ in range(args.addcall)]
        began = time.perf_counter()
        for call in calls:
            await client.add_call(call)
        figures["addcall_per_s"] = round(len(calls) / (time.perf_counter() - began))
        print(f"AddCall, sequential:       {figures['addcall_per_s']:>8,.0f} calls/s")

        stream = [call_to_pb(new_call(rng), include_raw=True) for _ in range(args.stream)]
        began = time.perf_counter()
        reply = await client.add_calls(stream)
        elapsed = time.perf_counter() - began
        assert reply.inserted == len(stream), reply
        figures["addcalls_stream_per_s"] = round(len(stream) / elapsed)
        print(f"AddCalls, one stream:      {figures['addcalls_stream_per_s']:>8,.0f} calls/s")

        call = new_call(rng)
        await client.add_call(call_to_pb(call))
        digest, size = await trio.to_thread.run_sync(
            lambda: (hashlib.sha256(wav.read_bytes()).hexdigest(), wav.stat().st_size)
        )
        header = pb.UploadHeader(
            call_uuid=str(call.uuid), file_name="big.wav", size=size, sha256=digest
        )
        began = time.perf_counter()
        await client.upload_recording(header, file_chunks(wav))
        figures["upload_mb_per_s"] = round(size / 1e6 / (time.perf_counter() - began), 1)
        print(f"UploadRecording, {size / 1e6:.0f} MB:  {figures['upload_mb_per_s']:>8} MB/s")

    per_client = args.addcall_concurrent // CONCURRENT_CLIENTS
    concurrent = [
        [call_to_pb(new_call(rng), include_raw=True) for _ in range(per_client)]
        for _ in range(CONCURRENT_CLIENTS)
    ]

    async def one_client(batch: list[pb.Call]) -> None:
        async with open_channel(address, token=AGENT, default_timeout_s=60) as ch:
            each = CallJournalClient(ch)
            for message in batch:
                await each.add_call(message)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for batch in concurrent:
            nursery.start_soon(one_client, batch)
    total = per_client * CONCURRENT_CLIENTS
    figures["addcall_concurrent_per_s"] = round(total / (time.perf_counter() - began))
    print(
        f"AddCall, {CONCURRENT_CLIENTS} clients:        "
        f"{figures['addcall_concurrent_per_s']:>8,.0f} calls/s"
    )

    queries = [rng.choice(people)[1:] for _ in range(args.queries)]
    async with open_channel(address, token=READER, default_timeout_s=60) as channel:
        reader = CallJournalClient(channel)
        for phone in queries[:100]:  # warm up
            await reader.search_by_phone(pb.SearchByPhoneRequest(phone=phone))
        timings = []
        for phone in queries:
            began = time.perf_counter()
            await reader.search_by_phone(pb.SearchByPhoneRequest(phone=phone))
            timings.append((time.perf_counter() - began) * 1000)
    figures["grpc_search_p50_ms"] = round(statistics.median(timings), 2)
    figures["grpc_search_p99_ms"] = round(percentile(timings, 99), 2)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{rest_port}", headers={"authorization": f"Bearer {READER}"}
    ) as http:
        for phone in queries[:100]:
            (await http.get("/api/v1/calls", params={"phone": phone})).raise_for_status()
        timings = []
        for phone in queries:
            began = time.perf_counter()
            (await http.get("/api/v1/calls", params={"phone": phone})).raise_for_status()
            timings.append((time.perf_counter() - began) * 1000)
    figures["rest_search_p50_ms"] = round(statistics.median(timings), 2)
    figures["rest_search_p99_ms"] = round(percentile(timings, 99), 2)
    for proto in ("grpc", "rest"):
        print(
            f"search by phone, {proto:>4}:    p50 {figures[f'{proto}_search_p50_ms']:.2f} ms, "
            f"p99 {figures[f'{proto}_search_p99_ms']:.2f} ms"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls preloaded")
    parser.add_argument("--addcall", type=int, default=2000)
    parser.add_argument("--addcall-concurrent", type=int, default=4000)
    parser.add_argument("--stream", type=int, default=20_000)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    rng = random.Random(7)
    people = subscribers(max(1000, args.calls // 5), rng)
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-api-"))
    try:
        with benchmark_database(args.database_url) as url:
            print(f"loading {args.calls:,} calls …")
            load(url, synthesize(args.calls, rng, people))
            wav = workdir / "big.wav"
            make_wav(wav, args.upload_mb)
            process, grpc_port, rest_port = start_api(url, workdir)
            try:
                figures = trio.run(measure, grpc_port, rest_port, people, args, wav)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ordered = {
        key: figures[key]
        for key in (
            "addcall_per_s",
            "addcall_concurrent_per_s",
            "addcalls_stream_per_s",
            "upload_mb_per_s",
            "rest_search_p99_ms",
            "grpc_search_p99_ms",
        )
    }
    print(json.dumps({**ordered, **figures}))


if __name__ == "__main__":
    main()
