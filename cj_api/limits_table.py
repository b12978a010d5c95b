"""The per-token limits' state shared by every worker of one supervisor (cj_api.workers).

With `api.workers` > 1, each worker's own counters would give a token N times its
configured limits (one token may hold connections to every worker). The supervisor
instead creates one small file (`LimitTable.create`), which every worker maps
(`LimitTable.open`); `cj_api.limits.TokenLimits` then keeps its state there.

Layout (native byte order, fixed at creation):

- a header: magic, number of worker slots, number of table slots;
- table slots, one per (operation kind, token name), found by open addressing on a
  16-byte BLAKE2b digest of the key (the digest is stored, so two keys never share a
  slot): the bucket's level and the CLOCK_MONOTONIC time it was last refilled (that
  clock is system-wide on Linux, so every process reads the same one), then one
  in-flight count per worker slot.

Every read-modify-write runs under one POSIX record lock (`fcntl.lockf`) on the
header's first byte; critical sections are a few struct reads and writes (microseconds;
bench/limits.py). The kernel releases that lock when its holder dies, even by kill -9,
and the counts a dead worker held are zeroed by the supervisor (`release_worker`)
before it starts that worker again: a crash leaks no slot.

A key that finds the table full (it is sized from the configured tokens, so only a
token added without restarting could) falls back to this process's own memory, with a
warning: limits then hold per worker for that key, as they did before this table.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

__all__ = ["LimitTable", "MemoryState", "table_capacity"]

log = structlog.get_logger(__name__)

_MAGIC = b"CJLIMIT1"
_HEADER = struct.Struct("=8sII")
_HEADER_SIZE = 64
_KEY_SIZE = 16
_BUCKET = struct.Struct("=dd")  # level, refilled_at
_COUNT = struct.Struct("=q")
_EMPTY_KEY = bytes(_KEY_SIZE)


def table_capacity(token_count: int, kinds: int = 3) -> int:
    """Table slots for `token_count` tokens and `kinds` operation kinds (half full)."""
    return 2 * token_count * kinds + 16


class MemoryState:
    """One key's state in this process's memory (api.workers = 1, or a full table)."""

    __slots__ = ("_active", "refilled_at", "tokens")

    def __init__(self) -> None:
        self.tokens = math.nan  # not set: TokenLimits fills the bucket on first use
        self.refilled_at = 0.0
        self._active = 0

    def active(self) -> int:
        return self._active

    def add_active(self, delta: int) -> None:
        self._active += delta


class _SharedState:
    """One key's table slot, as seen by worker `worker` (valid under the table lock)."""

    __slots__ = ("_all_counts", "_counts", "_map", "_offset", "_worker")

    def __init__(self, table: mmap.mmap, offset: int, worker: int | None, workers: int) -> None:
        self._map = table
        self._offset = offset + _KEY_SIZE
        self._counts = self._offset + _BUCKET.size
        self._worker = worker
        self._all_counts = struct.Struct(f"={workers}q")

    @property
    def tokens(self) -> float:
        return float(_BUCKET.unpack_from(self._map, self._offset)[0])

    @tokens.setter
    def tokens(self, value: float) -> None:
        struct.pack_into("=d", self._map, self._offset, value)

    @property
    def refilled_at(self) -> float:
        return float(_BUCKET.unpack_from(self._map, self._offset)[1])

    @refilled_at.setter
    def refilled_at(self, value: float) -> None:
        struct.pack_into("=d", self._map, self._offset + 8, value)

    def active(self) -> int:
        return int(sum(self._all_counts.unpack_from(self._map, self._counts)))

    def add_active(self, delta: int) -> None:
        if self._worker is None:
            raise RuntimeError("this LimitTable was opened without a worker slot")
        at = self._counts + self._worker * _COUNT.size
        _COUNT.pack_into(self._map, at, _COUNT.unpack_from(self._map, at)[0] + delta)


class LimitTable:
    """The shared file, mapped; `state(key)` under `locked()` reads and writes a slot."""

    def __init__(self, fd: int, table: mmap.mmap, worker: int | None) -> None:
        magic, workers, capacity = _HEADER.unpack_from(table, 0)
        if magic != _MAGIC:
            raise ValueError("not a cj-api limit table")
        if worker is not None and not 0 <= worker < workers:
            raise ValueError(f"worker slot {worker} is outside 0..{workers - 1}")
        self._fd = fd
        self._map = table
        self._worker = worker
        self.workers: int = workers
        self.capacity: int = capacity
        self._slot_size = _KEY_SIZE + _BUCKET.size + workers * _COUNT.size
        self._states: dict[tuple[str, str], _SharedState | MemoryState] = {}

    @staticmethod
    def create(path: Path, *, workers: int, capacity: int) -> None:
        """Write an empty table for `workers` worker slots and `capacity` keys (private
        to this user: mode 0600)."""
        slot = _KEY_SIZE + _BUCKET.size + workers * _COUNT.size
        data = bytearray(_HEADER_SIZE + capacity * slot)
        _HEADER.pack_into(data, 0, _MAGIC, workers, capacity)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(data))
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path, worker: int | None) -> LimitTable:
        """Map the table at `path` as worker `worker` (None: the supervisor, which only
        releases workers' counts)."""
        fd = os.open(path, os.O_RDWR)
        try:
            table = mmap.mmap(fd, 0)
            return cls(fd, table, worker)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def lock(self) -> None:
        """Take the table lock (every process's; waits for it); keep it briefly."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)

    def unlock(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the table lock for the block (lock/unlock: without a generator's cost)."""
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    def state(self, key: tuple[str, str]) -> _SharedState | MemoryState:
        """The state of `key` (kind, token name); call it with the lock held."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._find(key)
        return state

    def release_worker(self, worker: int) -> None:
        """Zero every count of worker slot `worker` (it died: its requests are gone)."""
        at = _HEADER_SIZE + _KEY_SIZE + _BUCKET.size + worker * _COUNT.size
        with self.locked():
            for index in range(self.capacity):
                _COUNT.pack_into(self._map, at + index * self._slot_size, 0)

    def _find(self, key: tuple[str, str]) -> _SharedState | MemoryState:
        digest = hashlib.blake2b("\0".join(key).encode(), digest_size=_KEY_SIZE).digest()
        if digest == _EMPTY_KEY:  # never in practice; keeps "empty" unambiguous
            digest = b"\1" + digest[1:]
        start = int.from_bytes(digest[:8], "little") % self.capacity
        for probe in range(self.capacity):
            offset = _HEADER_SIZE + ((start + probe) % self.capacity) * self._slot_size
            stored = self._map[offset : offset + _KEY_SIZE]
            if stored == _EMPTY_KEY:
                self._map[offset : offset + _KEY_SIZE] = digest
                struct.pack_into("=d", self._map, offset + _KEY_SIZE, math.nan)
            if stored in (_EMPTY_KEY, digest):
                return _SharedState(self._map, offset, self._worker, self.workers)
        log.warning("limit_table_full", kind=key[0], token=key[1], capacity=self.capacity)
        return MemoryState()
