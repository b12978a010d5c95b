"""Storage benchmark: MB/s to put and get one large object, filesystem vs SeaweedFS (S3).

    .venv/bin/python bench/storage.py [--size-mb 100] [--repeat 3]

For each backend, through `cj.storage` exactly as the daemons use it:
- put (stream): `open_upload` fed 1 MiB writes (what UploadRecording does), then commit;
- put_file: a local file (the encoder's path; S3: boto3's multipart transfer manager);
- get (stream): `open_read` of the whole object, chunks consumed and dropped;
- get_file: copy to a local file, sha256 verified.
The filesystem storage fsyncs (the production setting) on the machine's temp directory;
its reads come from the page cache, as they would right after a write. SeaweedFS is a
private `weed mini` on 127.0.0.1 (the tests' fixture code), started and stopped here, with
the default 8 MiB parts and 8 threads. Figures are medians over --repeat runs. The last
line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, whose queue.py would shadow the standard
# library's `queue` (which trio imports): put the project root there instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402 - after the sys.path fix above

from cj.config import LoggingConfig  # noqa: E402
from cj.logs import configure_logging  # noqa: E402
from cj.storage import FilesystemStorage, S3Storage, Storage  # noqa: E402
from tests.fixtures.seaweed import SeaweedFS  # noqa: E402

MiB = 1024 * 1024


async def put_stream(storage: Storage, key: str, data: bytes) -> None:
    view = memoryview(data)
    async with storage.open_upload(key) as upload:
        for offset in range(0, len(data), MiB):
            await upload.write(bytes(view[offset : offset + MiB]))
        await upload.commit()


async def get_stream(storage: Storage, key: str) -> int:
    total = 0
    async with storage.open_read(key) as chunks:
        async for chunk in chunks:
            total += len(chunk)
    return total


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await action()
    return time.perf_counter() - began


async def measure(
    storage: Storage, data: bytes, source: Path, work: Path, repeat: int
) -> dict[str, float]:
    size_mb = len(data) / MiB
    runs: dict[str, list[float]] = {"put": [], "put_file": [], "get": [], "get_file": []}
    for n in range(repeat):
        key, file_key = f"bench/{n}/stream.bin", f"bench/{n}/file.bin"
        target = work / f"copy-{n}.bin"
        runs["put"].append(await timed(partial(put_stream, storage, key, data)))
        runs["put_file"].append(await timed(partial(storage.put_file, file_key, source)))
        runs["get"].append(await timed(partial(get_stream, storage, key)))
        runs["get_file"].append(await timed(partial(storage.get_file, file_key, target)))
        target.unlink()
        await storage.delete(key)
        await storage.delete(file_key)
    return {name: size_mb / statistics.median(seconds) for name, seconds in runs.items()}


async def run(size_mb: int, repeat: int) -> dict[str, float]:
    data = os.urandom(size_mb * MiB)
    results: dict[str, float] = {"size_mb": float(size_mb)}
    with tempfile.TemporaryDirectory(prefix="cj-bench-storage-") as temp:
        work = Path(temp)
        source = work / "source.bin"
        source.write_bytes(data)

        fs = FilesystemStorage("bench-fs", work / "fs-root", fsync=True)
        for name, value in (await measure(fs, data, source, work, repeat)).items():
            results[f"fs_{name}_mb_s"] = value

        seaweed = SeaweedFS(work / "seaweedfs")
        await trio.to_thread.run_sync(seaweed.start)
        try:
            assert seaweed.startup_s is not None
            results["seaweedfs_startup_s"] = seaweed.startup_s
            bucket = await trio.to_thread.run_sync(seaweed.make_bucket, "bench")
            config = seaweed.storage_config(bucket)
            s3 = await trio.to_thread.run_sync(S3Storage, "bench-s3", config)
            try:
                for name, value in (await measure(s3, data, source, work, repeat)).items():
                    results[f"s3_{name}_mb_s"] = value
            finally:
                await s3.aclose()
        finally:
            await trio.to_thread.run_sync(lambda: seaweed.stop(kill=True))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="object size (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    if args.size_mb <= 0 or args.repeat <= 0:
        parser.error("--size-mb and --repeat must be positive")
    configure_logging(LoggingConfig(level="warning"))
    results = trio.run(run, args.size_mb, args.repeat)
    print(f"storage benchmark: one {args.size_mb} MB object, median of {args.repeat} runs")
    print(f"{'':12}{'put (stream)':>16}{'put_file':>16}{'get (stream)':>16}{'get_file':>16}")
    for prefix, label in (("fs", "filesystem"), ("s3", "SeaweedFS")):
        figures = [results[f"{prefix}_{op}_mb_s"] for op in ("put", "put_file", "get", "get_file")]
        print(f"{label:12}" + "".join(f"{v:>11.0f} MB/s" for v in figures))
    print(f"SeaweedFS start-up: {results['seaweedfs_startup_s']:.2f} s")
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
