"""An in-process Storage for testing the daemons, with failures on demand.

It keeps the contract of the real storages (atomic commit, ranges, sha256, quota) so
daemon tests can use it instead of a real store, and makes any operation raise a chosen
StorageError for a while to exercise retry paths:

    store = MemoryStorage("temp")
    store.fail(StorageUnavailable, ops={"put_file", "commit"}, times=2)
    ...
    store.heal()
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import trio

from cj.storage._local import EmptyChunks, write_local_file
from cj.storage.base import (
    ChecksumMismatch,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    StorageFull,
    Upload,
    check_range,
    check_sha256,
    resolve_range,
    validate_key,
)

OPERATIONS = frozenset(
    {"open_upload", "write", "commit", "put_file", "read", "read_chunk", "get_file", "stat",
     "exists", "delete"}
)  # fmt: skip


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    sha256: str
    modified: datetime


@dataclass
class _Fault:
    error: StorageError | type[StorageError]
    ops: frozenset[str]
    times: int | None  # None: until heal()


class MemoryStorage(Storage):
    """Objects in a dict. Every operation is a Trio checkpoint, like the real ones."""

    def __init__(
        self, name: str = "memory", *, quota_bytes: int = 0, chunk_bytes: int = 64 * 1024
    ) -> None:
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        self.name = name
        self.quota_bytes = quota_bytes
        self.chunk_bytes = chunk_bytes
        self._objects: dict[str, StoredObject] = {}
        self._reserved = 0
        self._faults: list[_Fault] = []
        self._limiter = trio.CapacityLimiter(4)  # for get_file's local writes
        self.calls: list[tuple[str, str]] = []  # (operation, key), for assertions

    # --- test controls ----------------------------------------------------------------

    def fail(
        self,
        error: StorageError | type[StorageError],
        *,
        ops: Iterable[str] | None = None,
        times: int | None = None,
    ) -> None:
        """Make `ops` (default: all OPERATIONS) raise `error` `times` times, or until heal()."""
        chosen = OPERATIONS if ops is None else frozenset(ops)
        unknown = chosen - OPERATIONS
        if unknown:
            raise ValueError(
                f"unknown storage operations {sorted(unknown)}; known: {sorted(OPERATIONS)}"
            )
        if times is not None and times <= 0:
            raise ValueError("times must be positive (or None for 'until heal()')")
        self._faults.append(_Fault(error, chosen, times))

    def heal(self) -> None:
        """Stop injecting failures."""
        self._faults.clear()

    @property
    def objects(self) -> Mapping[str, StoredObject]:
        """A read-only view of what is stored."""
        return MappingProxyType(self._objects)

    @property
    def used_bytes(self) -> int:
        return sum(len(o.data) for o in self._objects.values())

    def _check(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        for fault in self._faults:
            if op not in fault.ops:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
            error = fault.error
            if isinstance(error, StorageError):
                # A fresh instance each time, so tracebacks do not pile up on one object.
                raise type(error)(*error.args)
            raise error(f"storage {self.name!r}: injected {error.__name__} on {op} {key!r}")

    def _check_quota(self, more: int, key: str) -> None:
        if self.quota_bytes and self.used_bytes + self._reserved + more > self.quota_bytes:
            raise StorageFull(
                f"storage {self.name!r}: writing {key!r} would exceed the quota of "
                f"{self.quota_bytes} bytes"
            )

    def _store(self, key: str, data: bytes) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredObject(data, digest, datetime.now(UTC))
        self._objects[key] = stored
        return ObjectInfo(key, len(data), digest, stored.modified)

    def _get(self, key: str) -> StoredObject:
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFound(f"storage {self.name!r}: no object {key!r}") from None

    # --- the Storage interface --------------------------------------------------------

    @asynccontextmanager
    async def open_upload(
        self, key: str, *, expected_sha256: str | None = None
    ) -> AsyncIterator[Upload]:
        validate_key(key)
        expected = None if expected_sha256 is None else check_sha256(expected_sha256)
        await trio.lowlevel.checkpoint()
        self._check("open_upload", key)
        upload = _MemoryUpload(self, key, expected)
        try:
            yield upload
        finally:
            self._reserved -= upload.bytes_written
            upload.closed = True

    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        validate_key(key)
        data = await trio.to_thread.run_sync(path.read_bytes)
        self._check("put_file", key)
        self._check_quota(len(data), key)
        return self._store(key, data)

    @asynccontextmanager
    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        validate_key(key)
        check_range(start, end)
        await trio.lowlevel.checkpoint()
        self._check("read", key)
        data = self._get(key).data
        first, stop = resolve_range(start, end, len(data))
        if first == stop:
            yield EmptyChunks()
        else:
            yield _MemoryChunks(self, key, memoryview(data)[first:stop])

    async def get_file(self, key: str, path: Path) -> ObjectInfo:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        self._check("get_file", key)
        stored = self._get(key)
        size, digest = await write_local_file(
            _MemoryChunks(self, key, memoryview(stored.data)),
            path,
            expected_sha256=stored.sha256,
            what=f"storage {self.name!r}: {key!r}",
            limiter=self._limiter,
        )
        return ObjectInfo(key, size, digest, stored.modified)

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        self._check("stat", key)
        stored = self._get(key)
        return ObjectInfo(key, len(stored.data), stored.sha256, stored.modified)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        self._check("exists", key)
        return key in self._objects

    async def delete(self, key: str) -> None:
        validate_key(key)
        await trio.lowlevel.checkpoint()
        self._check("delete", key)
        self._objects.pop(key, None)


class _MemoryUpload(Upload):
    def __init__(self, storage: MemoryStorage, key: str, expected: str | None) -> None:
        self._storage = storage
        self._key = key
        self._expected = expected
        self._parts: list[bytes] = []
        self._written = 0
        self.committed = False
        self.closed = False

    @property
    def bytes_written(self) -> int:
        return self._written

    def _usable(self) -> None:
        if self.committed:
            raise StorageError(f"upload of {self._key!r} is already committed")
        if self.closed:
            raise StorageError(f"upload of {self._key!r} is closed")

    async def write(self, data: bytes) -> None:
        self._usable()
        await trio.lowlevel.checkpoint()
        self._storage._check("write", self._key)
        self._storage._check_quota(len(data), self._key)
        self._parts.append(bytes(data))
        self._written += len(data)
        self._storage._reserved += len(data)

    async def commit(self) -> ObjectInfo:
        self._usable()
        await trio.lowlevel.checkpoint()
        self._storage._check("commit", self._key)
        data = b"".join(self._parts)
        digest = hashlib.sha256(data).hexdigest()
        if self._expected is not None and digest != self._expected:
            raise ChecksumMismatch(
                f"storage {self._storage.name!r}: {self._key!r} hashes to sha256 {digest}, "
                f"expected {self._expected}"
            )
        self.committed = True
        return self._storage._store(self._key, data)


class _MemoryChunks(AsyncIterator[bytes]):
    def __init__(self, storage: MemoryStorage, key: str, view: memoryview) -> None:
        self._storage = storage
        self._key = key
        self._view = view
        self._offset = 0

    def __aiter__(self) -> _MemoryChunks:
        return self

    async def __anext__(self) -> bytes:
        await trio.lowlevel.checkpoint()
        if self._offset >= len(self._view):
            raise StopAsyncIteration
        self._storage._check("read_chunk", self._key)
        chunk = bytes(self._view[self._offset : self._offset + self._storage.chunk_bytes])
        self._offset += len(chunk)
        return chunk
