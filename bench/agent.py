"""Agent benchmark: `cj-agent backfill` end to end into PostgreSQL through cj-api.

    .venv/bin/python bench/agent.py [--calls 100000] [--recordings 500] [--jobs 4]
                                    [--reference-mb 100] [--database-url URL]

Starts a private PostgreSQL cluster (unless --database-url) and `python -m cj_api` in
its own process (filesystem storage in a temporary directory, PostgreSQL queue), then
measures from this process, through the same code as `cj-agent backfill`:

- metadata only: an archive of N compact CDRs (one flat directory) → calls/s, from the
  walk to the last AddCalls acknowledgement (CheckCalls included);
- recordings: M calls, each with a 1-minute 8 kHz mono PCM16 WAV (960 KB) → MB/s;
- references on the same server: the same WAVs uploaded directly with the plain client
  (`--jobs` at once, no agent code), and one `--reference-mb` MB UploadRecording as
  bench/api.py measures it (64 KiB chunks, one client) — "the upload rate of the API
  benchmark" on this machine. Small files pay the server's fixed per-upload cost
  (fsyncs, three transactions) that one big file does not;
- the watcher: peak traced memory and time of one pass over the N waiting CDRs
  (the daemon's polling, with its default bounds);
- the daemon itself: `--spool` CDRs waiting in its directory, drained (calls/s);
- the daemon's recordings: `--recordings` CDRs with their WAVs waiting in its spool,
  uploaded and deleted (MB/s).

The recording figures are taken `--rounds` times, each round measuring the reference
upload again right before, and the ratios reported are the medians of the per-round
ratios (the machine is shared: a ratio within one round is what can be compared).
`--only recordings` skips the metadata parts.

Targets: ≥ 2,000 calls/s metadata-only; recordings (backfill and daemon) ≥ 80 % of the
reference upload rate. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import structlog
import trio
from pydantic import SecretStr

from bench._pg import benchmark_database
from bench.api import AGENT, make_wav, pcm16_wav_header, start_api
from cj.cdr import CdrOptions, parse_cdr
from cj.codec import call_to_pb
from cj.config import AgentConfig, AgentSettings, AgentSourceConfig
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, file_chunks, open_channel
from cj_agent import serve
from cj_agent.backfill import BackfillPlan, BackfillSummary, FailureReport, run_backfill
from cj_agent.systemd import Notifier
from cj_agent.uploader import ServerLink
from cj_agent.watch import SettleTracker, compile_patterns, scan_directory

EPOCH = 1772432104  # 2026-03-02 06:15:04 UTC
MINUTE_WAV_BYTES = 60 * 8000 * 2  # 1 minute, 8 kHz, 16-bit mono


def compact_cdr(call_uuid: str, i: int, recording: str | None) -> bytes:
    start = EPOCH + i
    document = {
        "uuid": call_uuid,
        "clid": f"79{i % 10**9:09d}",
        "clna": "",
        "dest": "84957001020",
        "dirc": "inc",
        "stti": "",
        "durs": 64,
        "bils": 58,
        "recd": recording is not None,
        "recs": 58 if recording else 0,
        "rnam": recording or "",
        "rtag": "public",
        "epos": start,
        "epoa": start + 6,
        "epoe": start + 64,
        "wbye": "recv_bye",
        "hang": "NORMAL_CLEARING",
        "code": "200",
    }
    return json.dumps(document).encode()


def minute_wav(seed: int, noise: bytes) -> bytes:
    header = pcm16_wav_header(MINUTE_WAV_BYTES)
    body = seed.to_bytes(8, "little") + noise[: MINUTE_WAV_BYTES - 8]
    return header + body


def write_metadata_archive(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        call_uuid = str(uuid.uuid4())
        (root / f"{call_uuid}.json").write_bytes(compact_cdr(call_uuid, i, None))


def write_recordings_archive(root: Path, count: int) -> int:
    (root / "cdr").mkdir(parents=True)
    (root / "recordings").mkdir()
    noise = os.urandom(MINUTE_WAV_BYTES)
    total = 0
    for i in range(count):
        call_uuid = str(uuid.uuid4())
        name = f"{call_uuid}.wav"
        data = minute_wav(i, noise)
        (root / "recordings" / name).write_bytes(data)
        (root / "cdr" / f"{call_uuid}.json").write_bytes(compact_cdr(call_uuid, i, name))
        total += len(data)
    return total


async def backfill(address: str, root: Path, jobs: int, report: Path) -> BackfillSummary:
    link = ServerLink.for_config(
        address, token=AGENT, tls=False, tls_ca_file=None, request_timeout_s=600, concurrency=jobs
    )
    plan = BackfillPlan(
        paths=(root,),
        options=CdrOptions(timezone="Europe/Moscow", source="pbx-bench"),
        jobs=jobs,
        request_timeout_s=600,
    )
    return await run_backfill(plan, link, report=FailureReport(report))


async def reference_upload(address: str, wav: Path) -> float:
    """MB/s of one UploadRecording exactly as bench/api.py measures it."""
    async with open_channel(address, token=AGENT, default_timeout_s=600) as channel:
        client = CallJournalClient(channel)
        call_uuid = str(uuid.uuid4())
        await client.add_call(_reference_call(call_uuid))
        digest, size = await trio.to_thread.run_sync(
            lambda: (hashlib.sha256(wav.read_bytes()).hexdigest(), wav.stat().st_size)
        )
        header = pb.UploadHeader(call_uuid=call_uuid, file_name="big.wav", size=size, sha256=digest)
        began = time.perf_counter()
        await client.upload_recording(header, file_chunks(wav))
        return size / 1e6 / (time.perf_counter() - began)


async def direct_uploads(address: str, files: list[Path], concurrency: int) -> float:
    """MB/s of uploading `files` with the plain client (no agent code), `concurrency` at
    once, for new calls: what the server allows for files of this size."""
    async with open_channel(address, token=AGENT, default_timeout_s=600) as channel:
        client = CallJournalClient(channel)
        items = []
        for path in files:
            call_uuid = str(uuid.uuid4())
            await client.add_call(_reference_call(call_uuid))
            data = path.read_bytes()
            items.append((call_uuid, path, len(data), hashlib.sha256(data).hexdigest()))
        limiter = trio.CapacityLimiter(concurrency)

        async def upload(call_uuid: str, path: Path, size: int, digest: str) -> None:
            async with limiter:
                header = pb.UploadHeader(
                    call_uuid=call_uuid, file_name=path.name, size=size, sha256=digest
                )
                await client.upload_recording(header, file_chunks(path))

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(upload, *item)
        return sum(item[2] for item in items) / 1e6 / (time.perf_counter() - began)


def _reference_call(call_uuid: str) -> pb.Call:
    return call_to_pb(parse_cdr(compact_cdr(call_uuid, 0, None)))


def watcher_pass(directory: Path, *, traced: bool) -> tuple[int, float]:
    """(peak traced bytes, seconds per pass) of the daemon's polling over `directory`,
    with its default bounds: observe, settle, hand out a batch."""
    config = AgentConfig()
    tracker = SettleTracker(config.settle_s, config.max_tracked_files)
    pattern = compile_patterns(("*.json",))
    if traced:
        tracemalloc.start()
    began = time.perf_counter()
    for now in (0.0, 1.0, 3.0):
        result = scan_directory(directory, pattern, tracker, now, limit=config.max_tracked_files)
    elapsed = (time.perf_counter() - began) / 3
    peak = 0
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(result.ready) == config.max_tracked_files
    return peak, elapsed


async def drain_recordings(address: str, root: Path, count: int) -> float:
    """Seconds for the agent daemon to upload `count` calls with recordings waiting in
    its spool (`root`/cdr, `root`/recordings) and delete both files of each."""
    source = AgentSourceConfig(
        name="pbx-bench",
        cdr_dir=root / "cdr",
        recordings_dir=root / "recordings",
        timezone="Europe/Moscow",
    )
    settings = AgentSettings(
        agent=AgentConfig(
            server=address, token=SecretStr(AGENT), sources=(source,), settle_s=0.5, poll_min_s=0.1
        )
    )
    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        agent = await nursery.start(functools.partial(serve, settings, notifier=Notifier(None)))
        await agent.stats.wait_until(
            lambda s: s.recordings_uploaded >= count and s.files_done >= 2 * count
        )
        nursery.cancel_scope.cancel()
    return time.perf_counter() - began


def recording_rounds(
    address: str, workdir: Path, wav: Path, count: int, jobs: int, rounds: int
) -> dict[str, float]:
    """Reference, backfill and daemon recordings, `rounds` times; medians of the ratios."""
    reference: list[float] = []
    backfilled: list[float] = []
    drained: list[float] = []
    for n in range(rounds):
        archive = workdir / f"recordings-{n}"
        total = write_recordings_archive(archive, count)
        reference.append(trio.run(reference_upload, address, wav))
        began = time.perf_counter()
        summary = trio.run(backfill, address, archive, jobs, workdir / f"rr{n}.jsonl")
        backfilled.append(total / 1e6 / (time.perf_counter() - began))
        assert summary.recordings_uploaded == count and summary.bytes_uploaded == total, summary
        shutil.rmtree(archive)
        spool = workdir / f"spool-recordings-{n}"
        write_recordings_archive(spool, count)
        drained.append(total / 1e6 / trio.run(drain_recordings, address, spool, count))
        print(
            f"round {n + 1}: reference {reference[-1]:.1f} MB/s, backfill {backfilled[-1]:.1f} "
            f"MB/s ({backfilled[-1] / reference[-1]:.0%}), daemon {drained[-1]:.1f} MB/s "
            f"({drained[-1] / reference[-1]:.0%}), {count} one-minute recordings each"
        )
        shutil.rmtree(spool, ignore_errors=True)
    return {
        "rounds_reference_mb_per_s": round(statistics.median(reference), 1),
        "rounds_backfill_mb_per_s": round(statistics.median(backfilled), 1),
        "rounds_daemon_mb_per_s": round(statistics.median(drained), 1),
        "backfill_vs_reference": round(
            statistics.median(b / r for b, r in zip(backfilled, reference, strict=True)), 2
        ),
        "daemon_vs_reference": round(
            statistics.median(d / r for d, r in zip(drained, reference, strict=True)), 2
        ),
    }


async def drain_spool(address: str, spool: Path, count: int) -> float:
    """Seconds for the agent daemon to upload and delete `count` CDRs waiting in `spool`."""
    source = AgentSourceConfig(
        name="pbx-bench", cdr_dir=spool, recordings_dir=spool, timezone="Europe/Moscow"
    )
    settings = AgentSettings(
        agent=AgentConfig(
            server=address,
            token=SecretStr(AGENT),
            sources=(source,),
            settle_s=0.5,
            poll_min_s=0.1,
        )
    )
    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        agent = await nursery.start(functools.partial(serve, settings, notifier=Notifier(None)))
        await agent.stats.wait_until(lambda s: s.files_done >= count)
        nursery.cancel_scope.cancel()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--recordings", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--spool", type=int, default=10_000, help="CDRs for the daemon")
    parser.add_argument("--reference-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="of the recording figures")
    parser.add_argument("--only", choices=("all", "recordings"), default="all")
    parser.add_argument("--database-url", default=os.environ.get("CJ_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.only == "recordings":
        only_recordings(args)
        return
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-agent-"))
    figures: dict[str, float] = {}
    try:
        print(f"writing {args.calls:,} CDRs and {args.recordings} one-minute recordings …")
        metadata = workdir / "metadata"
        write_metadata_archive(metadata, args.calls)
        recordings = workdir / "recordings-archive"
        recording_bytes = write_recordings_archive(recordings, args.recordings)
        wav = workdir / "reference.wav"
        make_wav(wav, args.reference_mb)

        _, scan_s = watcher_pass(metadata, traced=False)
        peak, _ = watcher_pass(metadata, traced=True)
        figures["watch_pass_ms"] = round(scan_s * 1000, 1)
        figures["watch_peak_kib"] = round(peak / 1024)
        print(
            f"watcher, {args.calls:,} files waiting: one pass {figures['watch_pass_ms']} ms, "
            f"peak traced memory {figures['watch_peak_kib']:,} KiB"
        )
        spool = workdir / "spool"
        write_metadata_archive(spool, args.spool)

        with benchmark_database(args.database_url) as url:
            process, grpc_port, _ = start_api(url, workdir)
            address = f"127.0.0.1:{grpc_port}"
            try:
                began = time.perf_counter()
                summary = trio.run(backfill, address, metadata, args.jobs, workdir / "r1.jsonl")
                elapsed = time.perf_counter() - began
                assert summary.calls_added == args.calls and summary.failed == 0, summary
                figures["backfill_calls_per_s"] = round(args.calls / elapsed)
                print(
                    f"backfill, {args.calls:,} metadata-only calls: {elapsed:.1f} s, "
                    f"{figures['backfill_calls_per_s']:,} calls/s"
                )

                began = time.perf_counter()
                again = trio.run(backfill, address, metadata, args.jobs, workdir / "r2.jsonl")
                elapsed = time.perf_counter() - began
                assert again.already_present == args.calls and again.calls_added == 0, again
                figures["backfill_rerun_calls_per_s"] = round(args.calls / elapsed)
                print(
                    f"re-run (all present, CheckCalls only): "
                    f"{figures['backfill_rerun_calls_per_s']:,} calls/s"
                )

                began = time.perf_counter()
                summary = trio.run(backfill, address, recordings, args.jobs, workdir / "r3.jsonl")
                elapsed = time.perf_counter() - began
                assert summary.recordings_uploaded == args.recordings, summary
                assert summary.bytes_uploaded == recording_bytes, summary
                figures["backfill_recordings_mb_per_s"] = round(recording_bytes / 1e6 / elapsed, 1)
                print(
                    f"backfill, {args.recordings} calls with 1-minute recordings "
                    f"({recording_bytes / 1e6:.0f} MB): {elapsed:.1f} s, "
                    f"{figures['backfill_recordings_mb_per_s']} MB/s"
                )

                files = sorted((recordings / "recordings").iterdir())
                direct = trio.run(direct_uploads, address, files, args.jobs)
                figures["direct_upload_mb_per_s"] = round(direct, 1)
                figures["recordings_vs_direct"] = round(
                    figures["backfill_recordings_mb_per_s"] / direct, 2
                )
                print(
                    f"the same files uploaded directly ({args.jobs} at once, no agent code): "
                    f"{figures['direct_upload_mb_per_s']} MB/s → backfill at "
                    f"{figures['recordings_vs_direct']:.0%} of it"
                )

                elapsed = trio.run(drain_spool, address, spool, args.spool)
                figures["agent_drain_calls_per_s"] = round(args.spool / elapsed)
                rate = figures["agent_drain_calls_per_s"]
                print(
                    f"agent daemon, {args.spool:,} CDRs waiting in its spool (batched AddCalls, "
                    f"settle 0.5 s): {elapsed:.1f} s, {rate:,} calls/s"
                )

                reference = trio.run(reference_upload, address, wav)
                figures["reference_upload_mb_per_s"] = round(reference, 1)
                figures["recordings_vs_reference"] = round(
                    figures["backfill_recordings_mb_per_s"] / reference, 2
                )
                print(
                    f"reference UploadRecording, {args.reference_mb} MB (as bench/api.py): "
                    f"{figures['reference_upload_mb_per_s']} MB/s → backfill at "
                    f"{figures['recordings_vs_reference']:.0%} of it"
                )
                figures.update(
                    recording_rounds(address, workdir, wav, args.recordings, args.jobs, args.rounds)
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    first = ("backfill_vs_reference", "daemon_vs_reference", "backfill_calls_per_s")
    print(json.dumps({**{key: figures[key] for key in first}, **figures}))


def only_recordings(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings
    workdir = Path(tempfile.mkdtemp(prefix="cj-bench-agent-"))
    try:
        wav = workdir / "reference.wav"
        make_wav(wav, args.reference_mb)
        with benchmark_database(args.database_url) as url:
            process, grpc_port, _ = start_api(url, workdir)
            try:
                figures = recording_rounds(
                    f"127.0.0.1:{grpc_port}", workdir, wav, args.recordings, args.jobs, args.rounds
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"median of {args.rounds} rounds: backfill at {figures['backfill_vs_reference']:.0%} "
        f"and the daemon at {figures['daemon_vs_reference']:.0%} of one big upload (target 80%)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
