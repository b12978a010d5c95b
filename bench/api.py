"""API benchmark: cj-api in its own process, driven over real sockets.

    .venv/bin/python bench/api.py [--calls N] [--upload-mb M] [--database-url URL]
                                  [--api-src DIR --api-sql rows]

Starts a private PostgreSQL (unless --database-url), loads N synthetic calls (default
1,000,000) with COPY, starts `python -m cj_api` on free ports with filesystem storage
in a temporary directory and the PostgreSQL queue, and the empty servers of
`bench._baseline` in a process of their own, then measures from this process:

- AddCall, one at a time, and from 16 concurrent clients (one connection each);
- AddCalls, one stream of 20,000 calls, beside a raw COPY of 20,000 such calls;
- UploadRecording of one M MB WAV (default 100; 0 skips it), 64 KiB chunks;
- interval (one hour, 100 rows) and phone searches through REST and gRPC, each beside
  the raw SQL the API runs for it and the empty route of its stack
  (`bench._api_search`), p50/p99, with the ratios REST/raw, gRPC/raw and fixed
  cost/empty route.

`--api-src DIR` runs cj-api from another checkout (e.g. main, for a before/after in one
run); `--api-sql rows` says that checkout's searches ran `search_calls`' SQL.

The last line printed is one JSON object with the figures, its "ratios" first. Targets
on the 2-core machine: AddCalls ≥ 3,000 calls/s and ≥ 30% of raw COPY; upload ≥ 40 MB/s;
interval search REST and gRPC ≤ 1.5× raw SQL at p50, ≤ 2× at p99; phone search ≤ 2×;
fixed cost ≤ 1.2× the empty route.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
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
import psycopg
import trio
from psycopg.types.json import Jsonb

from bench._api_search import measure_searches
from bench._baseline import start_baseline
from bench._pg import benchmark_database
from bench.search import load, subscribers, synthesize
from cj.codec import call_from_pb, call_to_pb
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


def start_api(
    url: str, workdir: Path, api_src: Path | None = None
) -> tuple[subprocess.Popen[bytes], int, int]:
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
        # One process: the figures are one worker's cost (CJ_API_WORKERS=auto to see all).
        "CJ_API_WORKERS": os.environ.get("CJ_API_WORKERS", "1"),
        # One benchmark client searching as fast as it can is no flood (0: no limit).
        "CJ_API_SEARCH_RATE_PER_TOKEN": "0",
        "CJ_API_SEARCH_CONCURRENCY_PER_TOKEN": "0",
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
    if api_src is not None:  # `-m` puts the working directory first on sys.path
        env["PYTHONPATH"] = str(api_src)
    process = subprocess.Popen([sys.executable, "-m", "cj_api"], env=env, cwd=api_src)
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


COPY_CALL_COLUMNS = (
    "uuid, source, caller_number, caller_digits_rev, caller_name, destination_number, "
    "destination_digits_rev, direction, started_at, answered_at, ended_at, duration_s, "
    "billsec, hangup_cause, hangup_side, sip_code, private, recording_name, raw"
)


def copy_rate(url: str, messages: list[pb.Call]) -> float:
    """Calls per second of a plain COPY of calls like `messages` (fresh uuids, so they
    insert as the stream's did), psycopg adapting the values, commit included."""
    calls = [call_from_pb(message) for message in messages]
    rows = [
        (
            uuid.uuid4(),
            "bench-agent",
            c.caller.raw,
            c.caller.reversed_digits,
            c.caller_name,
            c.destination.raw,
            c.destination.reversed_digits,
            c.direction.value,
            c.started_at,
            c.answered_at,
            c.ended_at,
            c.duration_s,
            c.billsec,
            c.hangup_cause,
            c.hangup_side,
            c.sip_code,
            c.private,
            c.recording_name,
            Jsonb(dict(c.raw)),
        )
        for c in calls
    ]
    began = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY calls ({COPY_CALL_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
    return len(rows) / (time.perf_counter() - began)


async def measure(
    url: str,
    grpc_port: int,
    rest_port: int,
    people: list[str],
    args: argparse.Namespace,
    wav: Path,
    baseline_ports: tuple[int, int],
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

        figures["raw_copy_per_s"] = round(await trio.to_thread.run_sync(copy_rate, url, stream))
        figures["addcalls_over_copy"] = round(
            figures["addcalls_stream_per_s"] / figures["raw_copy_per_s"], 2
        )
        print(
            f"raw COPY of such calls:    {figures['raw_copy_per_s']:>8,.0f} calls/s "
            f"(AddCalls: {figures['addcalls_over_copy']:.2f}× COPY)"
        )
        if args.upload_mb > 0:
            await measure_upload(client, new_call(rng), wav, figures)

    per_client = args.addcall_concurrent // CONCURRENT_CLIENTS
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

    figures.update(
        await measure_searches(
            url,
            grpc_port,
            rest_port,
            baseline_ports,
            people,
            READER,
            args.queries,
            args.api_sql,
        )
    )
    return figures


async def measure_upload(
    client: CallJournalClient, call: Call, wav: Path, figures: dict[str, float]
) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls preloaded")
    parser.add_argument("--addcall", type=int, default=2000)
    parser.add_argument("--addcall-concurrent", type=int, default=4000)
    parser.add_argument("--stream", type=int, default=20_000)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    parser.add_argument("--api-src", type=Path, help="run cj-api from this checkout")
    parser.add_argument(
        "--no-load", action="store_true", help="--database-url already holds the --calls"
    )
    parser.add_argument(
        "--api-sql", choices=("wire", "rows"), default="wire", help="what its searches run"
    )
    args = parser.parse_args()
    rng = random.Random(7)
    people = subscribers(max(1000, args.calls // 5), rng)
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-api-"))
    try:
        with benchmark_database(args.database_url) as url:
            if args.no_load:  # the calls of an earlier run with the same --calls (and seed)
                print("using the calls already in the database")
            else:
                print(f"loading {args.calls:,} calls …")
                load(url, synthesize(args.calls, rng, people))
            wav = workdir / "big.wav"
            if args.upload_mb > 0:
                make_wav(wav, args.upload_mb)
            process, grpc_port, rest_port = start_api(url, workdir, args.api_src)
            baseline, *baseline_ports = start_baseline()
            try:
                figures = trio.run(
                    measure, url, grpc_port, rest_port, people, args, wav, tuple(baseline_ports)
                )
            finally:
                for each in (process, baseline):
                    each.terminate()
                    each.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = {key: value for key, value in figures.items() if "_over_" in key}
    print(json.dumps({"calls": args.calls, "ratios": ratios, **figures}))


if __name__ == "__main__":
    main()
