"""Export benchmark: cj-api in its own process streams 1,000 recordings as one ZIP.

    .venv/bin/python bench/export.py [--recordings N] [--seconds S] [--database-url URL]

Starts a private PostgreSQL (unless --database-url) and `python -m cj_api` with
filesystem storage in a temporary directory (bench/api.py's `start_api`), adds N calls
over REST, stores for each a small MP3 (made once by our encoder from a generated
signal) through the real filesystem storage and marks it stored as the encoder would,
plus N/50 private calls; then downloads GET /api/v1/calls:export of them all and
reports the time, the throughput and how much cj-api's RSS grew meanwhile (target:
64 MB at most), and checks the ZIP (every member's CRC, the manifest).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import httpx
import numpy as np
import psycopg
import soundfile
import trio
from psycopg.rows import dict_row

from bench._pg import benchmark_database
from bench.api import AGENT, READER, new_call, start_api
from bench.rest import rss_bytes, sample_rss
from cj.audio.encode import encode_wav_to_mp3
from cj.config import LoggingConfig
from cj.db.recordings import create_recording, mark_stored
from cj.logs import configure_logging
from cj.storage import FilesystemStorage
from cj_api.call_codec import call_to_json

TARGET_RSS_GROWTH_MB = 64
CHUNK = 256 * 1024


def make_mp3(workdir: Path, seconds: float) -> bytes:
    """A real MP3 of a sweep, `seconds` long, by our own encoder (32 kbps stereo)."""
    t = np.arange(round(8000 * seconds)) / 8000
    signal = 0.4 * np.sin(2 * np.pi * (300 + 900 * t / seconds) * t)
    wav = workdir / "signal.wav"
    soundfile.write(wav, signal, 8000, subtype="PCM_16")
    mp3 = workdir / "signal.mp3"
    encode_wav_to_mp3(wav, mp3)
    return mp3.read_bytes()


async def store(url: str, workdir: Path, uuids: list[Any], mp3: bytes, seconds: float) -> None:
    """Each call gets the MP3 in the real filesystem storage and the rows the encoder
    leaves (original WAV referenced, recording stored)."""
    storage = FilesystemStorage("recordings", workdir / "recordings", fsync=False)
    digest = hashlib.sha256(mp3).hexdigest()
    for call_uuid in uuids:
        async with storage.open_upload(f"bench/{call_uuid}.mp3") as upload:
            await upload.write(mp3)
            await upload.commit()

    def rows() -> None:
        with psycopg.connect(url, row_factory=dict_row) as conn:
            for call_uuid in uuids:
                wav_sha = hashlib.sha256(call_uuid.bytes).hexdigest()
                create_recording(
                    conn, call_uuid, original_name="call.wav", size=1, sha256=wav_sha,
                    storage="temp", key=f"wav/{call_uuid}.wav",
                )  # fmt: skip
                mark_stored(
                    conn, call_uuid, storage="recordings", key=f"bench/{call_uuid}.mp3",
                    size=len(mp3), sha256=digest, content_type="audio/mpeg",
                    duration_ms=round(seconds * 1000), sample_rate=8000, channels=2,
                )  # fmt: skip

    await trio.to_thread.run_sync(rows)


async def measure(url: str, port: int, pid: int, args: argparse.Namespace, workdir: Path) -> Any:
    rng = random.Random(15)
    base = f"http://127.0.0.1:{port}"
    start = datetime(2026, 12, 1, tzinfo=UTC)
    calls = []
    for index in range(args.recordings + args.recordings // 50):
        call = new_call(rng)
        private = index >= args.recordings
        fields = {**call.__dict__, "started_at": start + timedelta(seconds=index)}
        fields.update(answered_at=None, ended_at=None, private=private)
        calls.append(type(call)(**fields))
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {AGENT}"}, timeout=600
    ) as agent:
        body = {"calls": [call_to_json(call, include_raw=True) for call in calls]}
        (await agent.post("/api/v1/calls:batch", json=body)).raise_for_status()
    mp3 = await trio.to_thread.run_sync(make_mp3, workdir, args.seconds)
    await store(url, workdir, [call.uuid for call in calls], mp3, args.seconds)
    print(f"{len(calls)} calls, {args.recordings} public, MP3 of {len(mp3) / 1024:.0f} KiB each")

    params = {
        "from": start.isoformat(),
        "to": (start + timedelta(seconds=len(calls))).isoformat(),
    }
    output = workdir / "export.zip"
    baseline = rss_bytes(pid)
    peak = [baseline]
    done = trio.Event()
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_rss, pid, peak, done)
        began = time.perf_counter()
        async with (
            httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {READER}"}, timeout=600
            ) as reader,
            reader.stream("GET", "/api/v1/calls:export", params=params) as answer,
        ):
            answer.raise_for_status()
            async with await trio.open_file(output, "wb") as out:
                async for chunk in answer.aiter_bytes(CHUNK):
                    await out.write(chunk)
                    received += len(chunk)
        elapsed = time.perf_counter() - began
        done.set()

    def check() -> dict[str, Any]:
        with zipfile.ZipFile(output) as archive:
            bad = archive.testzip()
            assert bad is None, f"bad CRC in {bad}"
            manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
            assert len(archive.namelist()) == args.recordings + 2
        return manifest

    manifest = await trio.to_thread.run_sync(check)
    counts = manifest["counts"]
    assert counts["included"] == args.recordings, counts
    assert counts["withheld-private"] == len(calls) - args.recordings, counts
    growth_mb = (peak[0] - baseline) / 1024 / 1024
    figures = {
        "benchmark": "export",
        "recordings": args.recordings,
        "withheld_private": counts["withheld-private"],
        "zip_mb": round(received / 1e6, 1),
        "seconds": round(elapsed, 2),
        "mb_per_s": round(received / 1e6 / elapsed, 1),
        "recordings_per_s": round(args.recordings / elapsed),
        "rss_baseline_mb": round(baseline / 1024 / 1024, 1),
        "rss_growth_mb": round(growth_mb, 1),
        "rss_target_mb": TARGET_RSS_GROWTH_MB,
        "rss_ok": growth_mb <= TARGET_RSS_GROWTH_MB,
    }
    print(
        f"export of {args.recordings} recordings ({figures['zip_mb']} MB ZIP): "
        f"{elapsed:.2f} s, {figures['mb_per_s']} MB/s, {figures['recordings_per_s']} "
        "recordings/s"
    )
    print(
        f"cj-api RSS: {figures['rss_baseline_mb']} MB before, grew by {growth_mb:.1f} MB "
        f"(target ≤ {TARGET_RSS_GROWTH_MB} MB: {'met' if figures['rss_ok'] else 'NOT met'})"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each MP3")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    configure_logging(LoggingConfig(level="warning"))
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-export-"))
    try:
        with benchmark_database(args.database_url) as url:
            process, _, rest_port = start_api(url, workdir)
            try:
                figures = trio.run(measure, url, rest_port, process.pid, args, workdir)
            finally:
                process.terminate()
                process.wait(30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
