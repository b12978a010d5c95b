"""MemoryStorage's fault injection (its contract is in test_contract)."""

from __future__ import annotations

import pytest
import trio

from cj.storage import MemoryStorage, ObjectNotFound, StorageFull, StorageUnavailable


async def store(storage: MemoryStorage, key: str, data: bytes) -> None:
    async with storage.open_upload(key) as upload:
        await upload.write(data)
        await upload.commit()


async def test_failures_a_given_number_of_times() -> None:
    storage = MemoryStorage("temp")
    storage.fail(StorageUnavailable, ops={"commit"}, times=2)
    with trio.fail_after(5):
        for _ in range(2):
            with pytest.raises(StorageUnavailable, match="injected StorageUnavailable on commit"):
                await store(storage, "k", b"data")
            assert not await storage.exists("k")
        await store(storage, "k", b"data")  # the third attempt goes through
        assert storage.objects["k"].data == b"data"


async def test_failures_until_healed_with_a_chosen_error() -> None:
    storage = MemoryStorage("perm")
    await store(storage, "k", b"data")
    storage.fail(StorageUnavailable("S3 is down for maintenance"))
    with trio.fail_after(5):
        for _ in range(3):
            with pytest.raises(StorageUnavailable, match="down for maintenance"):
                await storage.stat("k")
        storage.heal()
        assert (await storage.stat("k")).size == 4


async def test_failure_in_the_middle_of_a_read() -> None:
    storage = MemoryStorage("temp", chunk_bytes=4)
    await store(storage, "k", b"0123456789")
    storage.fail(StorageUnavailable, ops={"read_chunk"}, times=1)
    got: list[bytes] = []
    with trio.fail_after(5), pytest.raises(StorageUnavailable):
        async with storage.open_read("k") as chunks:
            async for chunk in chunks:
                got.append(chunk)
    assert got == []
    assert ("read", "k") in storage.calls


async def test_quota() -> None:
    storage = MemoryStorage("temp", quota_bytes=10)
    with trio.fail_after(5):
        await store(storage, "a", b"123456")
        with pytest.raises(StorageFull):
            await store(storage, "b", b"12345")
        await storage.delete("a")
        await store(storage, "b", b"12345")
        with pytest.raises(ObjectNotFound):
            await storage.stat("a")


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown storage operations \\['upload'\\]"):
        MemoryStorage().fail(StorageUnavailable, ops={"upload"})
    with pytest.raises(ValueError, match="times must be positive"):
        MemoryStorage().fail(StorageUnavailable, times=0)
