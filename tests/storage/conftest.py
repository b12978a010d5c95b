"""One contract, three storages: each test taking `backend` runs against the filesystem,
SeaweedFS over S3, and the in-memory storage."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from cj.storage import FilesystemStorage, MemoryStorage, S3Storage, Storage
from cj.storage.filesystem import TEMP_DIR
from tests.fixtures.seaweed import SeaweedFS

MiB = 1024 * 1024


@dataclass
class Backend:
    """A storage under test plus ways to look behind its back."""

    kind: str
    storage: Storage
    outside: Path | None = None  # filesystem: the directory holding the root
    seaweed: SeaweedFS | None = None
    bucket: str | None = None

    async def debris(self) -> list[str]:
        """Traces of unfinished writes: temp files, open multipart uploads."""
        storage = self.storage
        if isinstance(storage, FilesystemStorage):
            temp = storage.root / TEMP_DIR
            return sorted(p.name for p in temp.iterdir()) if temp.exists() else []
        if isinstance(storage, S3Storage):
            assert self.seaweed is not None
            client = self.seaweed.client()
            response = await trio.to_thread.run_sync(
                partial(client.list_multipart_uploads, Bucket=storage.bucket, Prefix=storage.prefix)
            )
            return [u["Key"] for u in response.get("Uploads", [])]
        return []

    async def all_keys(self) -> list[str]:
        """Every object name the backend holds, as the backend spells it."""
        storage = self.storage
        if isinstance(storage, FilesystemStorage):
            assert self.outside is not None
            return sorted(
                str(p.relative_to(self.outside)) for p in self.outside.rglob("*") if p.is_file()
            )
        if isinstance(storage, S3Storage):
            assert self.seaweed is not None
            client = self.seaweed.client()
            response = await trio.to_thread.run_sync(
                partial(client.list_objects_v2, Bucket=storage.bucket)
            )
            return sorted(o["Key"] for o in response.get("Contents", []))
        assert isinstance(storage, MemoryStorage)
        return sorted(storage.objects)


@pytest.fixture(scope="session")
def contract_bucket(seaweedfs: SeaweedFS) -> str:
    """One bucket for all contract tests (each gets its own prefix): a new bucket costs
    SeaweedFS a volume allocation on first write."""
    return seaweedfs.make_bucket("contract")


def s3_storage(seaweed: SeaweedFS, bucket: str, **overrides: object) -> S3Storage:
    """A small-part S3Storage under a fresh prefix, so multipart starts at 5 MiB."""
    fields: dict[str, object] = {
        "prefix": f"t-{secrets.token_hex(4)}",
        "multipart_threshold_bytes": 5 * MiB,
        "multipart_chunk_bytes": 5 * MiB,
    }
    fields.update(overrides)
    return S3Storage("s3", seaweed.storage_config(bucket, **fields))


@pytest.fixture(params=["filesystem", "s3", "memory"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "s3":
        request.getfixturevalue("contract_bucket")  # start SeaweedFS only when needed
    return kind


@pytest.fixture
async def backend(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Backend]:
    if backend_kind == "filesystem":
        storage: Storage = FilesystemStorage("fs", tmp_path / "root")
        found = Backend(backend_kind, storage, outside=tmp_path)
    elif backend_kind == "s3":
        seaweed: SeaweedFS = request.getfixturevalue("seaweedfs")  # already set up
        bucket: str = request.getfixturevalue("contract_bucket")
        storage = await trio.to_thread.run_sync(partial(s3_storage, seaweed, bucket))
        found = Backend(backend_kind, storage, seaweed=seaweed, bucket=bucket)
    else:
        found = Backend(backend_kind, MemoryStorage("memory"))
    try:
        yield found
    finally:
        await found.storage.aclose()
