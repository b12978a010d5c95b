"""Named storages from configuration: roles, lookups, switching the write target."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cj.config import FilesystemStorageConfig, StorageBackendConfig, StorageConfig
from cj.storage import (
    FilesystemStorage,
    MemoryStorage,
    S3Storage,
    StorageError,
    Storages,
    UnknownStorage,
    make_storage,
    open_storages,
)
from tests.fixtures.seaweed import SeaweedFS


async def store(storages: Storages, key: str, data: bytes) -> str:
    """What the encoder does: write to `permanent` and remember its name."""
    async with storages.permanent.open_upload(key) as upload:
        await upload.write(data)
        await upload.commit()
    return storages.permanent.name


async def read_all(storages: Storages, name: str, key: str) -> bytes:
    async with storages.get(name).open_read(key) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def test_switching_permanent_keeps_older_recordings_readable(
    tmp_path: Path, seaweedfs: SeaweedFS, contract_bucket: str
) -> None:
    backends: dict[str, StorageBackendConfig] = {
        "temp": FilesystemStorageConfig(kind="filesystem", path=tmp_path / "temp"),
        "disk": FilesystemStorageConfig(kind="filesystem", path=tmp_path / "disk"),
        "s3": seaweedfs.storage_config(contract_bucket, prefix="registry-test"),
    }
    before = StorageConfig(backends=backends, temporary="temp", permanent="disk")
    after = StorageConfig(backends=backends, temporary="temp", permanent="s3")
    with trio.fail_after(30):
        async with open_storages(before) as storages:
            assert isinstance(storages.temporary, FilesystemStorage)
            assert storages.temporary.name == "temp"
            old_row = (await store(storages, "2025/old.mp3", b"old"), "2025/old.mp3")
        async with open_storages(after) as storages:
            assert isinstance(storages.permanent, S3Storage)
            new_row = (await store(storages, "2026/new.mp3", b"new"), "2026/new.mp3")
            assert old_row[0] == "disk" and new_row[0] == "s3"
            assert await read_all(storages, *old_row) == b"old"
            assert await read_all(storages, *new_row) == b"new"
            assert not await storages.get("disk").exists("2026/new.mp3")
            assert sorted(storages) == ["disk", "s3", "temp"]
            assert "disk" in storages and "retired" not in storages


async def test_unknown_storage_names_are_reported() -> None:
    storages = Storages(
        {"temp": MemoryStorage("temp"), "perm": MemoryStorage("perm")},
        temporary="temp",
        permanent="perm",
    )
    with pytest.raises(UnknownStorage) as caught:
        storages.get("retired")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, StorageError)
    assert str(caught.value) == "storage 'retired' is not configured (configured: perm, temp)"
    with pytest.raises(KeyError):
        storages["retired"]
    with pytest.raises(UnknownStorage, match="'nope'"):
        Storages({"temp": MemoryStorage("temp")}, temporary="temp", permanent="nope")
    await storages.aclose()


def test_make_storage_builds_each_kind(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    fs = make_storage("a", FilesystemStorageConfig(kind="filesystem", path=tmp_path, quota_bytes=5))
    assert isinstance(fs, FilesystemStorage)
    assert (fs.name, fs.root, fs.quota_bytes) == ("a", tmp_path, 5)
    s3 = make_storage("b", seaweedfs.storage_config("some-bucket", prefix="x"))
    assert isinstance(s3, S3Storage)
    assert (s3.name, s3.bucket, s3.prefix) == ("b", "some-bucket", "x/")
    with pytest.raises(TypeError, match="unsupported backend"):
        make_storage("c", object())  # type: ignore[arg-type]
