"""FilesystemStorage specifics: layout, temp files, quota, sha256 xattr, error mapping."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest
import trio

from cj.config import FilesystemStorageConfig
from cj.storage import (
    FilesystemStorage,
    InvalidKey,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageFull,
    StorageMisconfigured,
    StorageUnavailable,
)
from cj.storage.filesystem import TEMP_DIR, XATTR

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def store(storage: FilesystemStorage, key: str, data: bytes) -> None:
    async with storage.open_upload(key) as upload:
        await upload.write(data)
        await upload.commit()


async def read_all(storage: FilesystemStorage, key: str) -> bytes:
    async with storage.open_read(key) as chunks:
        return b"".join([chunk async for chunk in chunks])


def temp_files(storage: FilesystemStorage) -> list[str]:
    temp = storage.root / TEMP_DIR
    return sorted(p.name for p in temp.iterdir()) if temp.exists() else []


@pytest.mark.parametrize("fsync", [True, False])
async def test_layout_temp_file_then_rename(tmp_path: Path, fsync: bool) -> None:
    storage = FilesystemStorage.from_config(
        "fs", FilesystemStorageConfig(kind="filesystem", path=tmp_path / "root", fsync=fsync)
    )
    key = "2026/03/02/call.mp3"
    with trio.fail_after(10):
        async with storage.open_upload(key) as upload:
            await upload.write(b"abc")
            # While in progress, the bytes sit in <root>/.tmp, never under the key…
            assert len(temp_files(storage)) == 1
            assert not (storage.root / key).exists()
            with pytest.raises(InvalidKey):  # …and no key can name the temp area.
                await storage.exists(TEMP_DIR)
            await upload.commit()
    assert (storage.root / key).read_bytes() == b"abc"
    assert temp_files(storage) == []
    value = os.getxattr(storage.root / key, XATTR).decode()
    assert value.startswith(sha(b"abc") + " 3 ")


async def test_sha256_of_a_file_changed_behind_our_back_is_unknown(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path)
    path = tmp_path / "a" / "b"
    with trio.fail_after(10):
        await store(storage, "a/b", b"original")
        assert (await storage.stat("a/b")).sha256 == sha(b"original")
        stat = path.stat()
        path.write_bytes(b"tampered")  # same size; the mtime moves
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        assert (await storage.stat("a/b")).sha256 is None
        path.write_bytes(b"a file someone else wrote")  # replaced without our xattr
        assert (await storage.stat("a/b")).sha256 is None
        assert await read_all(storage, "a/b") == b"a file someone else wrote"


async def test_quota_refuses_then_accepts_after_freeing(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root", quota_bytes=1000)
    with trio.fail_after(10):
        await store(storage, "old", b"x" * 600)
        with pytest.raises(StorageFull, match="quota of 1000 bytes"):
            await store(storage, "new", b"y" * 500)
        assert not await storage.exists("new")
        assert temp_files(storage) == []
        await storage.delete("old")
        await store(storage, "new", b"y" * 500)
        assert await storage.usage() == 500


async def test_quota_counts_uploads_in_progress(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root", quota_bytes=1000)
    with trio.fail_after(10):
        async with storage.open_upload("first") as first:
            await first.write(b"a" * 600)
            with pytest.raises(StorageFull, match="600 in progress"):
                async with storage.open_upload("second") as second:
                    await second.write(b"b" * 500)
            # `first` is discarded without commit: its reservation goes with it.
        async with storage.open_upload("second") as second:
            await second.write(b"b" * 900)
            await second.commit()
        assert await storage.usage() == 900


async def test_quota_put_file_fails_fast(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root", quota_bytes=1000)
    source = tmp_path / "big"
    source.write_bytes(b"z" * 2000)
    with trio.fail_after(10):
        with pytest.raises(StorageFull):
            await storage.put_file("big", source)
        assert temp_files(storage) == []
        assert not await storage.exists("big")


async def test_quota_counts_files_already_there_but_not_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "2025").mkdir(parents=True)
    (root / "2025" / "old.mp3").write_bytes(b"o" * 700)
    (root / TEMP_DIR).mkdir()
    (root / TEMP_DIR / "crashed.part").write_bytes(b"t" * 5000)  # debris, not objects
    storage = FilesystemStorage("fs", root, quota_bytes=1000)
    with trio.fail_after(10):
        with pytest.raises(StorageFull, match="700 used"):
            await store(storage, "new", b"n" * 400)
        await store(storage, "new", b"n" * 300)
        assert await storage.usage() == 1000


async def test_overwrite_is_counted_once(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root", quota_bytes=1000)
    with trio.fail_after(10):
        await store(storage, "k", b"1" * 400)
        await store(storage, "k", b"2" * 500)
        assert await storage.usage() == 500
        await store(storage, "other", b"3" * 500)  # exactly at the quota is fine


async def test_root_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "root").write_bytes(b"not a directory")
    storage = FilesystemStorage("fs", tmp_path / "root")
    with trio.fail_after(10), pytest.raises(StorageMisconfigured, match="not a directory"):
        await store(storage, "k", b"data")


async def test_keys_colliding_with_directories(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root")
    with trio.fail_after(10):
        await store(storage, "a/b", b"file")
        with pytest.raises(StorageError, match="collides"):
            await store(storage, "a", b"would replace a directory")
        with pytest.raises(StorageError, match="collides"):
            await store(storage, "a/b/c", b"would need a/b to be a directory")
        assert await read_all(storage, "a/b") == b"file"
        assert temp_files(storage) == []


async def test_delete_prunes_empty_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = FilesystemStorage("fs", root)
    with trio.fail_after(10):
        await store(storage, "2026/03/01/a", b"a")
        await store(storage, "2026/03/02/b", b"b")
        await storage.delete("2026/03/01/a")
        assert sorted(p.name for p in (root / "2026" / "03").iterdir()) == ["02"]
        await storage.delete("2026/03/02/b")
        assert sorted(p.name for p in root.iterdir()) == [TEMP_DIR]  # root itself stays
        await store(storage, "2026/03/02/b", b"again")  # and directories come back
        assert await read_all(storage, "2026/03/02/b") == b"again"


async def test_purge_stale_uploads_keeps_recent_ones(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root")
    temp = storage.root / TEMP_DIR
    temp.mkdir(parents=True)
    (temp / "old.part").write_bytes(b"crashed yesterday")
    two_days_ago = time.time() - 2 * 86400
    os.utime(temp / "old.part", (two_days_ago, two_days_ago))
    with trio.fail_after(10):
        async with storage.open_upload("k") as upload:
            await upload.write(b"in progress")
            assert await storage.purge_stale_uploads(older_than_s=86400) == 1
            await upload.commit()
    assert temp_files(storage) == []
    assert await storage.purge_stale_uploads() == 0


async def test_truncated_behind_our_back_while_reading(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path)
    data = os.urandom(3 * MiB)
    with trio.fail_after(10):
        await store(storage, "k", data)
        with pytest.raises(StorageError, match=r"ended .* bytes early"):
            async with storage.open_read("k") as chunks:
                async for _ in chunks:
                    os.truncate(tmp_path / "k", MiB)


async def test_concurrent_uploads_of_one_key(tmp_path: Path) -> None:
    storage = FilesystemStorage("fs", tmp_path / "root")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(store, storage, "same/key", bytes([n]) * 100_000)
        data = await read_all(storage, "same/key")
        assert len(data) == 100_000 and len(set(data)) == 1  # one whole version won
        assert (await storage.stat("same/key")).sha256 == sha(data)
        assert temp_files(storage) == []


@pytest.mark.parametrize(
    ("code", "absent_ok", "expected"),
    [
        (errno.ENOSPC, False, StorageFull),
        (errno.EDQUOT, False, StorageFull),
        (errno.EACCES, False, StorageDenied),
        (errno.EPERM, False, StorageDenied),
        (errno.EROFS, False, StorageDenied),
        (errno.EIO, False, StorageUnavailable),
        (errno.ESTALE, False, StorageUnavailable),
        (errno.ENOENT, False, ObjectNotFound),
        (errno.ENOENT, True, StorageError),
        (errno.ENAMETOOLONG, False, InvalidKey),
        (errno.EINVAL, False, StorageError),
    ],
)
def test_error_translation(
    tmp_path: Path, code: int, absent_ok: bool, expected: type[StorageError]
) -> None:
    storage = FilesystemStorage("fs", tmp_path)
    error = storage.translate_error(
        OSError(code, os.strerror(code)), "write", "k", absent_ok=absent_ok
    )
    assert type(error) is expected
    assert "'fs'" in str(error) and "'k'" in str(error)


def test_negative_quota_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quota_bytes"):
        FilesystemStorage("fs", tmp_path, quota_bytes=-1)


async def test_quota_sees_space_freed_by_another_process(tmp_path: Path) -> None:
    """The API writes, the encoder deletes: the writer's quota must notice the room."""
    writer = FilesystemStorage("temp", tmp_path, quota_bytes=1000)
    writer.quota_rescan_s = 0  # count again at every refusal (default: once a second)
    other = FilesystemStorage("temp", tmp_path)  # another process on the same root
    with trio.fail_after(10):
        for name in ("a", "b"):
            async with writer.open_upload(f"{name}.wav") as upload:
                await upload.write(b"x" * 400)
                await upload.commit()
        with pytest.raises(StorageFull):
            async with writer.open_upload("c.wav") as upload:
                await upload.write(b"x" * 400)
        await other.delete("a.wav")
        async with writer.open_upload("c.wav") as upload:
            await upload.write(b"x" * 400)
            await upload.commit()
    assert await writer.exists("c.wav")
