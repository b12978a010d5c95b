"""Helpers shared by the storage implementations: chunked reads through worker threads,
local-file copies written aside and renamed, directory fsync.

Every blocking call runs in `trio.to_thread.run_sync` behind the caller's
CapacityLimiter, one chunk per call, so a cancelled task stops between chunks.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import trio

from cj.storage.base import ChecksumMismatch

CHUNK_BYTES = 1024 * 1024  # one worker-thread hop per MiB: negligible overhead, bounded memory


class ThreadChunks(AsyncIterator[bytes]):
    """Yields `read()` results, each fetched in a worker thread, until `read()` returns b"".

    A class rather than an async generator: it needs no finalisation, so breaking out of
    an `async for` early leaves nothing for the garbage collector to run.
    """

    def __init__(self, read: Callable[[], bytes], limiter: trio.CapacityLimiter) -> None:
        self._read = read
        self._limiter = limiter
        self._done = False

    def __aiter__(self) -> ThreadChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        chunk = await trio.to_thread.run_sync(self._read, limiter=self._limiter)
        if not chunk:
            self._done = True
            raise StopAsyncIteration
        return chunk


class EmptyChunks(AsyncIterator[bytes]):
    """The stream of an empty range."""

    def __aiter__(self) -> EmptyChunks:
        return self

    async def __anext__(self) -> bytes:
        await trio.lowlevel.checkpoint()
        raise StopAsyncIteration


def aside_path(path: Path) -> Path:
    """A hidden sibling of `path` to write into before renaming onto it."""
    return path.with_name(f".{path.name}.part-{secrets.token_hex(6)}")


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> list[Path]:
    """`mkdir -p path`; returns the directories it created, outermost first.

    The caller fsyncs their parents so the new directory entries survive a crash.
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # a concurrent writer made it first
        created.append(directory)
    return created


async def write_local_file(
    chunks: AsyncIterator[bytes],
    path: Path,
    *,
    expected_sha256: str | None,
    what: str,
    limiter: trio.CapacityLimiter,
) -> tuple[int, str]:
    """Write `chunks` into a hidden sibling of `path`, verify, then rename onto `path`.

    Returns (size, sha256). On ChecksumMismatch, error or cancellation `path` is left
    as it was and the sibling is removed. Local-file OSErrors propagate untranslated:
    they are the caller's disk, not the storage.
    """
    temp = aside_path(path)
    out: BinaryIO = await trio.to_thread.run_sync(temp.open, "xb", limiter=limiter)
    hasher = hashlib.sha256()
    size = 0

    def put(chunk: bytes) -> None:
        hasher.update(chunk)
        out.write(chunk)

    try:
        async for chunk in chunks:
            await trio.to_thread.run_sync(put, chunk, limiter=limiter)
            size += len(chunk)
        await trio.to_thread.run_sync(out.close, limiter=limiter)
        digest = hasher.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise ChecksumMismatch(
                f"{what}: copy hashes to sha256 {digest}, the storage recorded {expected_sha256}"
            )
        await trio.to_thread.run_sync(os.replace, temp, path, limiter=limiter)
    except BaseException:
        with trio.CancelScope(shield=True):
            out.close()
            await trio.to_thread.run_sync(_unlink_quietly, temp, limiter=limiter)
        raise
    return size, digest


async def file_chunks(
    path: Path, limiter: trio.CapacityLimiter, chunk_bytes: int = CHUNK_BYTES
) -> tuple[int, BinaryIO, ThreadChunks]:
    """Open a local file for chunked reading: (size, file to close, chunk iterator)."""

    def open_file() -> tuple[int, BinaryIO]:
        handle = path.open("rb")
        try:
            return os.fstat(handle.fileno()).st_size, handle
        except BaseException:
            handle.close()
            raise

    size, handle = await trio.to_thread.run_sync(open_file, limiter=limiter)
    return size, handle, ThreadChunks(lambda: handle.read(chunk_bytes), limiter)


async def hash_file(path: Path, limiter: trio.CapacityLimiter) -> tuple[int, str]:
    """(size, sha256) of a local file, read chunk by chunk in worker threads."""
    _, handle, chunks = await file_chunks(path, limiter, 4 * CHUNK_BYTES)
    hasher = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            await trio.to_thread.run_sync(hasher.update, chunk, limiter=limiter)
            size += len(chunk)
    finally:
        handle.close()
    return size, hasher.hexdigest()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
