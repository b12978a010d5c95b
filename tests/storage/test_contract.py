"""The Storage contract, run against every implementation (see conftest `backend`)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest
import trio

from cj.storage import (
    ChecksumMismatch,
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    Storage,
    StorageError,
)
from tests.storage.conftest import Backend, MiB

KEY = "2026/03/02/0b7e4d1c-5a51-4bcb-9a8c-2d0f2f0c9a11.mp3"
DATA = os.urandom(300_000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    async with storage.open_read(key, start, end) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def store(storage: Storage, key: str, data: bytes, piece: int = 64 * 1024) -> None:
    async with storage.open_upload(key) as upload:
        for offset in range(0, len(data), piece):
            await upload.write(data[offset : offset + piece])
        await upload.commit()


async def test_streamed_write_commits_and_reads_back(backend: Backend) -> None:
    storage = backend.storage
    with trio.fail_after(30):
        async with storage.open_upload(KEY) as upload:
            for offset in range(0, len(DATA), 70_000):  # pieces that do not divide evenly
                await upload.write(DATA[offset : offset + 70_000])
            assert upload.bytes_written == len(DATA)
            info = await upload.commit()
        assert (info.key, info.size, info.sha256) == (KEY, len(DATA), sha(DATA))
        assert await read_all(storage, KEY) == DATA
        stat = await storage.stat(KEY)
        assert (stat.key, stat.size, stat.sha256) == (KEY, len(DATA), sha(DATA))
        assert isinstance(stat.modified, datetime) and stat.modified.tzinfo is not None
        assert await storage.exists(KEY)
        assert await backend.debris() == []


async def test_empty_object(backend: Backend) -> None:
    with trio.fail_after(30):
        async with backend.storage.open_upload("empty") as upload:
            info = await upload.commit()
        assert (info.size, info.sha256) == (0, sha(b""))
        assert await read_all(backend.storage, "empty") == b""
        assert (await backend.storage.stat("empty")).size == 0


async def test_nothing_is_visible_before_commit(backend: Backend) -> None:
    storage = backend.storage
    big = os.urandom(6 * MiB)  # past the S3 multipart threshold: parts are already sent
    with trio.fail_after(30):
        async with storage.open_upload(KEY) as upload:
            await upload.write(big)
            assert not await storage.exists(KEY)
            with pytest.raises(ObjectNotFound):
                await storage.stat(KEY)
            with pytest.raises(ObjectNotFound):
                await read_all(storage, KEY)
            await upload.commit()
        assert await storage.exists(KEY)
        assert (await storage.stat(KEY)).sha256 == sha(big)  # S3: recorded after multipart


async def test_error_inside_the_block_discards_the_upload(backend: Backend) -> None:
    storage = backend.storage
    with trio.fail_after(30):
        with pytest.raises(RuntimeError, match="producer died"):
            async with storage.open_upload(KEY) as upload:
                await upload.write(os.urandom(6 * MiB))
                raise RuntimeError("producer died")
        assert not await storage.exists(KEY)
        assert await backend.debris() == []


async def test_cancellation_discards_the_upload(backend: Backend) -> None:
    storage = backend.storage
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with storage.open_upload(KEY) as upload:
                await upload.write(os.urandom(6 * MiB))
                scope.cancel()
                await upload.write(b"never written")
        assert scope.cancelled_caught
        assert not await storage.exists(KEY)
        assert await backend.debris() == []


async def test_leaving_without_commit_discards(backend: Backend) -> None:
    with trio.fail_after(30):
        async with backend.storage.open_upload(KEY) as upload:
            await upload.write(b"forgotten")
        assert not await backend.storage.exists(KEY)
        assert await backend.debris() == []


async def test_upload_is_unusable_after_commit(backend: Backend) -> None:
    with trio.fail_after(30):
        async with backend.storage.open_upload(KEY) as upload:
            await upload.write(b"once")
            await upload.commit()
            with pytest.raises(StorageError, match="already committed"):
                await upload.write(b"twice")
            with pytest.raises(StorageError, match="already committed"):
                await upload.commit()
        assert await read_all(backend.storage, KEY) == b"once"


async def test_commit_replaces_an_existing_object(backend: Backend) -> None:
    with trio.fail_after(30):
        await store(backend.storage, KEY, b"first version, longer")
        await store(backend.storage, KEY, b"second")
        assert await read_all(backend.storage, KEY) == b"second"
        assert (await backend.storage.stat(KEY)).sha256 == sha(b"second")


async def test_expected_sha256_is_verified_before_publishing(backend: Backend) -> None:
    storage = backend.storage
    big = os.urandom(6 * MiB)
    with trio.fail_after(30):
        with pytest.raises(ChecksumMismatch, match="expected"):
            async with storage.open_upload(KEY, expected_sha256=sha(b"other")) as upload:
                await upload.write(big)
                await upload.commit()
        assert not await storage.exists(KEY)
        assert await backend.debris() == []
        async with storage.open_upload(KEY, expected_sha256=sha(big).upper()) as upload:
            await upload.write(big)
            info = await upload.commit()
        assert info.sha256 == sha(big)
        assert (await storage.stat(KEY)).sha256 == sha(big)


async def test_expected_sha256_must_look_like_one(backend: Backend) -> None:
    with trio.fail_after(5), pytest.raises(ValueError, match="64 hexadecimal"):
        async with backend.storage.open_upload(KEY, expected_sha256="abc"):
            pass


async def test_put_file_and_get_file(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    data = os.urandom(7 * MiB + 123)  # S3: above the 5 MiB multipart threshold
    source = tmp_path / "in.wav"
    source.write_bytes(data)
    target_dir = tmp_path / "out"
    target_dir.mkdir()
    target = target_dir / "copy.wav"
    with trio.fail_after(30):
        info = await storage.put_file(KEY, source)
        assert (info.key, info.size, info.sha256) == (KEY, len(data), sha(data))
        assert (await storage.stat(KEY)).sha256 == sha(data)
        got = await storage.get_file(KEY, target)
        assert (got.size, got.sha256) == (len(data), sha(data))
        assert target.read_bytes() == data
        assert [p.name for p in target_dir.iterdir()] == ["copy.wav"]  # no temp left


async def test_get_file_of_a_missing_key_leaves_the_target_alone(
    backend: Backend, tmp_path: Path
) -> None:
    target = tmp_path / "keep.wav"
    target.write_bytes(b"precious")
    with trio.fail_after(30):
        with pytest.raises(ObjectNotFound):
            await backend.storage.get_file("missing", target)
    assert target.read_bytes() == b"precious"
    names = sorted(p.name for p in await trio.Path(tmp_path).iterdir())
    assert [n for n in names if n != "root"] == ["keep.wav"]


async def test_put_file_of_a_missing_local_file_is_the_callers_error(
    backend: Backend, tmp_path: Path
) -> None:
    with trio.fail_after(30), pytest.raises(FileNotFoundError):
        await backend.storage.put_file(KEY, tmp_path / "nope.wav")
    assert not await backend.storage.exists(KEY)


RANGES = [
    pytest.param(0, 10, id="first-bytes"),
    pytest.param(1000, 2000, id="middle"),
    pytest.param(len(DATA) - 10, None, id="suffix"),
    pytest.param(0, None, id="whole"),
    pytest.param(5, 5, id="empty"),
    pytest.param(len(DATA), None, id="at-end-is-empty"),
    pytest.param(len(DATA) - 5, len(DATA) + 100, id="end-clamped"),
    pytest.param(123_456, 123_457, id="one-byte"),
]


@pytest.mark.parametrize(("start", "end"), RANGES)
async def test_ranged_reads(backend: Backend, start: int, end: int | None) -> None:
    with trio.fail_after(30):
        await store(backend.storage, KEY, DATA)
        assert await read_all(backend.storage, KEY, start, end) == DATA[start:end]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param(-1, None, "negative", id="negative"),
        pytest.param(10, 5, "before range start", id="reversed"),
        pytest.param(len(DATA) + 1, None, "beyond the end", id="past-end"),
        pytest.param(len(DATA) + 1, len(DATA) + 1, "beyond the end", id="empty-past-end"),
    ],
)
async def test_invalid_ranges_are_refused(
    backend: Backend, start: int, end: int | None, message: str
) -> None:
    with trio.fail_after(30):
        await store(backend.storage, KEY, DATA)
        with pytest.raises(InvalidRange, match=message):
            await read_all(backend.storage, KEY, start, end)


async def test_range_of_a_missing_key_is_not_found(backend: Backend) -> None:
    with trio.fail_after(30):
        for start, end in [(0, None), (10, 20), (5, 5)]:
            with pytest.raises(ObjectNotFound):
                await read_all(backend.storage, "missing", start, end)


async def test_reading_can_stop_early(backend: Backend) -> None:
    data = os.urandom(5 * MiB)
    with trio.fail_after(30):
        await store(backend.storage, KEY, data, piece=MiB)
        async with backend.storage.open_read(KEY) as chunks:
            async for chunk in chunks:
                assert data.startswith(chunk)
                break
        assert await read_all(backend.storage, KEY) == data  # nothing left half-open


async def test_missing_keys(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    with trio.fail_after(30):
        assert not await storage.exists("no/such/key")
        with pytest.raises(ObjectNotFound, match="no/such/key"):
            await storage.stat("no/such/key")
        with pytest.raises(ObjectNotFound):
            await read_all(storage, "no/such/key")
        with pytest.raises(ObjectNotFound):
            await storage.get_file("no/such/key", tmp_path / "x")


async def test_delete_is_idempotent(backend: Backend) -> None:
    storage = backend.storage
    with trio.fail_after(30):
        await store(storage, KEY, b"to be removed")
        await store(storage, "2026/03/02/neighbour", b"stays")
        await storage.delete(KEY)
        assert not await storage.exists(KEY)
        with pytest.raises(ObjectNotFound):
            await storage.stat(KEY)
        await storage.delete(KEY)  # again: not an error
        await storage.delete("never/was")
        assert await read_all(storage, "2026/03/02/neighbour") == b"stays"


async def test_a_key_prefix_is_not_an_object(backend: Backend) -> None:
    with trio.fail_after(30):
        await store(backend.storage, "a/b/c", b"deep")
        assert not await backend.storage.exists("a/b")
        with pytest.raises(ObjectNotFound):
            await backend.storage.stat("a")
        await backend.storage.delete("a/b")  # a "directory" is not deleted
        assert await backend.storage.exists("a/b/c")


BAD_KEYS = [
    pytest.param("../x", id="dotdot"),
    pytest.param("a/../../x", id="inner-dotdot"),
    pytest.param("/abs", id="absolute"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param(".", id="dot"),
    pytest.param("a/./b", id="inner-dot"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("", id="empty"),
    pytest.param("a\nb", id="newline"),
    pytest.param("x" * 513, id="overlong"),
    pytest.param("x" * 256, id="overlong-segment"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_refused_everywhere(
    backend: Backend, tmp_path: Path, key: str
) -> None:
    storage = backend.storage
    source = tmp_path / "src"
    source.write_bytes(b"payload")
    with trio.fail_after(30):
        before = await backend.all_keys()
        with pytest.raises(InvalidKey):
            async with storage.open_upload(key) as upload:
                await upload.write(b"payload")
                await upload.commit()
        with pytest.raises(InvalidKey):
            await storage.put_file(key, source)
        with pytest.raises(InvalidKey):
            await read_all(storage, key)
        with pytest.raises(InvalidKey):
            await storage.get_file(key, tmp_path / "dst")
        for operation in (storage.stat, storage.exists, storage.delete):
            with pytest.raises(InvalidKey):
                await operation(key)
        # Nothing was written anywhere: not in the root, not beside it.
        assert await backend.all_keys() == before
        assert not (tmp_path / "dst").exists()
        if backend.outside is not None:
            assert sorted(p.name for p in backend.outside.iterdir()) == ["src"]
