"""The SeaweedFS fixture itself: private servers stop and restart with their data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from cj.storage import S3Storage, StorageUnavailable
from tests.fixtures.seaweed import START_TIMEOUT_S, SeaweedFS, weed_binary


def test_binary_comes_from_the_wheel() -> None:
    path = weed_binary()
    assert path.is_file() and os.access(path, os.X_OK)


async def test_private_server_stops_and_restarts_with_its_data(
    seaweedfs: SeaweedFS, seaweedfs_factory: Callable[[], SeaweedFS]
) -> None:
    private = await trio.to_thread.run_sync(seaweedfs_factory)
    assert private.startup_s is not None and private.startup_s < START_TIMEOUT_S
    assert private.endpoint_url != seaweedfs.endpoint_url
    bucket = await trio.to_thread.run_sync(private.make_bucket)
    config = private.storage_config(bucket, max_attempts=1, connect_timeout_s=1.0)
    storage = await trio.to_thread.run_sync(S3Storage, "private", config)
    endpoint = private.endpoint_url
    with trio.fail_after(60):
        async with storage.open_upload("kept") as upload:
            await upload.write(b"survives a restart")
            await upload.commit()

        await trio.to_thread.run_sync(private.stop)
        assert not private.running
        assert seaweedfs.running  # the shared server is not disturbed
        with pytest.raises(StorageUnavailable):
            await storage.stat("kept")

        await trio.to_thread.run_sync(private.start)
        assert private.endpoint_url == endpoint  # same ports: clients keep working
        assert private.pid is not None
        async with storage.open_read("kept") as chunks:
            assert b"".join([c async for c in chunks]) == b"survives a restart"
    await storage.aclose()


ROOT = Path(__file__).resolve().parents[2]
ORPHAN = """
import sys
from pathlib import Path
from tests.fixtures.seaweed import SeaweedFS
server = SeaweedFS(Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
sys.stdin.read()  # until killed
"""


async def test_a_killed_session_leaves_no_server_behind(tmp_path: Path) -> None:
    """Even SIGKILL of the test process (no atexit, no finalizers) stops its server."""
    root = ROOT
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", ORPHAN, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, "the session process died before starting SeaweedFS"
            line += chunk
        pidfd = os.pidfd_open(int(line))  # the server is alive (or this raises)
        try:
            process.kill()
            await process.wait()
            # A pidfd becomes readable when its process exits: no polling, no sleeps.
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()
