"""The SeaweedFS fixture itself: private servers stop and restart with their data."""

from __future__ import annotations

import os
from collections.abc import Callable

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
        async with storage.open_read("kept") as chunks:
            assert b"".join([c async for c in chunks]) == b"survives a restart"
    await storage.aclose()
