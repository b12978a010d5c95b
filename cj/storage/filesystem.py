"""Objects as plain files under a root directory.

Layout: the object `2026/03/02/<uuid>.mp3` is the file `<root>/2026/03/02/<uuid>.mp3`.
Uploads are written to `<root>/.tmp/<random>.part` (a name no valid key can reach, as
key segments may not start with a dot), hashed while written, fsynced, then renamed into
place and the directory fsynced: a reader sees the whole object or nothing.

The sha256 of an object committed through this class is kept in the extended attribute
`user.cj.sha256` of its file, together with the size and mtime it was computed for, so
`stat` can tell a stale value (file changed behind our back) and report None instead.
On filesystems without user xattrs (some NFS, old tmpfs) `stat` reports sha256 None.

The quota counts the sizes of committed objects (scanned once, on the first write, then
tracked in-process) plus the bytes of uploads in progress. Other processes writing to
the same root are not seen until the next process start.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import secrets
import stat as stat_module
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import structlog
import trio

from cj.config import FilesystemStorageConfig
from cj.storage._local import (
    CHUNK_BYTES,
    EmptyChunks,
    ThreadChunks,
    file_chunks,
    fsync_dir,
    make_dirs,
    write_local_file,
)
from cj.storage.base import (
    ChecksumMismatch,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageDenied,
    StorageError,
    StorageFull,
    StorageMisconfigured,
    StorageUnavailable,
    Upload,
    check_range,
    check_sha256,
    resolve_range,
    validate_key,
)

log = structlog.get_logger(__name__)

TEMP_DIR = ".tmp"
QUOTA_RESCAN_S = 1.0
XATTR = "user.cj.sha256"
DEFAULT_THREADS = 8

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_TRANSIENT = {
    errno.EIO,
    errno.EAGAIN,
    errno.EBUSY,
    errno.EINTR,
    errno.ENOMEM,
    errno.ETIMEDOUT,
    errno.ESTALE,
    errno.ENOTCONN,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.ENETUNREACH,
    errno.ENXIO,
}
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.EACCES}


class FilesystemStorage(Storage):
    """A Storage keeping each object as one file under `root` (created when first needed)."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        quota_bytes: int = 0,
        fsync: bool = True,
        max_threads: int = DEFAULT_THREADS,
    ) -> None:
        if quota_bytes < 0:
            raise ValueError(f"storage {name!r}: quota_bytes must not be negative")
        self.name = name
        self.root = Path(root).absolute()
        self.quota_bytes = quota_bytes
        self.fsync = fsync
        self._limiter = trio.CapacityLimiter(max_threads)
        self._used: int | None = None  # committed bytes, once scanned (quota only)
        self._reserved = 0  # bytes of uploads in progress
        self._last_scan = -math.inf  # trio time of the last forced usage scan
        self.quota_rescan_s = QUOTA_RESCAN_S
        self._scan_lock = trio.Lock()

    @classmethod
    def from_config(cls, name: str, config: FilesystemStorageConfig) -> FilesystemStorage:
        return cls(name, config.path, quota_bytes=config.quota_bytes, fsync=config.fsync)

    def __repr__(self) -> str:
        return f"FilesystemStorage(name={self.name!r}, root={str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file that holds `key` (InvalidKey if the key is not acceptable)."""
        return self.root / validate_key(key)

    # --- writing ----------------------------------------------------------------------

    @asynccontextmanager
    async def open_upload(
        self, key: str, *, expected_sha256: str | None = None
    ) -> AsyncIterator[Upload]:
        path = self.path_for(key)
        expected = None if expected_sha256 is None else check_sha256(expected_sha256)
        await self._ensure_usage()
        upload = _FilesystemUpload(self, key, path, expected)
        await upload.start()
        try:
            yield upload
        finally:
            if not upload.committed:
                with trio.CancelScope(shield=True):
                    await upload.discard()

    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        self.path_for(key)
        size, handle, chunks = await file_chunks(path, self._limiter, 4 * CHUNK_BYTES)
        try:
            async with self.open_upload(key) as upload:
                await self._check_quota(size, key)  # fail fast, not after copying most of it
                async for chunk in chunks:
                    await upload.write(chunk)
                return await upload.commit()
        finally:
            handle.close()

    # --- reading ----------------------------------------------------------------------

    @asynccontextmanager
    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        check_range(start, end)
        handle, info = await self._open(key)
        try:
            first, stop = resolve_range(start, end, info.size)
            if first == stop:
                yield EmptyChunks()
                return
            await trio.to_thread.run_sync(handle.seek, first, limiter=self._limiter)
            yield self._chunks(handle, key, stop - first)
        finally:
            handle.close()

    async def _open(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """The object's open file and what it is (taken from the open file, race-free)."""
        path = self.path_for(key)
        with self._errors("read", key, absent_ok=False):
            return await trio.to_thread.run_sync(_open_regular, key, path, limiter=self._limiter)

    def _chunks(self, handle: BinaryIO, key: str, length: int) -> AsyncIterator[bytes]:
        remaining = length

        def read() -> bytes:
            nonlocal remaining
            if remaining <= 0:
                return b""
            with self._errors("read", key, absent_ok=False):
                chunk = handle.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                # Objects are replaced by rename, never rewritten in place, so a short
                # file means someone truncated it behind our back.
                raise StorageError(
                    f"storage {self.name!r}: {key!r} ended {remaining} bytes early "
                    "(truncated outside Call Journal?)"
                )
            remaining -= len(chunk)
            return chunk

        return ThreadChunks(read, self._limiter)

    async def get_file(self, key: str, path: Path) -> ObjectInfo:
        handle, info = await self._open(key)
        try:
            size, digest = await write_local_file(
                self._chunks(handle, key, info.size),
                path,
                expected_sha256=info.sha256,
                what=f"storage {self.name!r}: {key!r}",
                limiter=self._limiter,
            )
        finally:
            handle.close()
        return ObjectInfo(key=key, size=size, sha256=digest, modified=info.modified)

    async def stat(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        with self._errors("stat", key, absent_ok=False):
            return await trio.to_thread.run_sync(_stat_file, key, path, limiter=self._limiter)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    # --- deleting ---------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        with self._errors("delete", key, absent_ok=True):
            freed = await trio.to_thread.run_sync(self._delete_sync, path, limiter=self._limiter)
        if self._used is not None:
            self._used = max(0, self._used - freed)

    def _delete_sync(self, path: Path) -> int:
        try:
            st = path.lstat()
            if not stat_module.S_ISREG(st.st_mode):
                return 0  # a directory of other keys, not an object
            path.unlink()
        except FileNotFoundError:
            return 0
        # Date-sharded directories empty out as temporary objects are removed; prune
        # them up to the root so the tree does not fill with husks.
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or vanished): either way, stop here
            parent = parent.parent
        return st.st_size

    # --- housekeeping -----------------------------------------------------------------

    async def usage(self) -> int:
        """Bytes held by committed objects (the figure the quota is checked against)."""
        await self._ensure_usage(force=True)
        assert self._used is not None
        return self._used

    @property
    def known_usage(self) -> int | None:
        """Bytes committed plus reserved by uploads in progress, as last counted for the
        quota (None before the first count, and always without a quota): costs nothing."""
        if self._used is None:
            return None
        return self._used + self._reserved

    async def purge_stale_uploads(self, older_than_s: float = 86400.0) -> int:
        """Remove temp files of uploads abandoned by a crash; returns how many were removed.

        Only files older than `older_than_s` are touched, so uploads in progress in other
        processes sharing this root are safe.
        """

        def purge() -> int:
            removed = 0
            cutoff = time.time() - older_than_s
            try:
                entries = list(os.scandir(self.root / TEMP_DIR))
            except FileNotFoundError:
                return 0
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        Path(entry.path).unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
            return removed

        with self._errors("purge temp files of", TEMP_DIR, absent_ok=True):
            removed = await trio.to_thread.run_sync(purge, limiter=self._limiter)
        if removed:
            log.info("stale uploads purged", storage=self.name, count=removed)
        return removed

    # --- internals --------------------------------------------------------------------

    async def _ensure_usage(self, *, force: bool = False) -> None:
        if not self.quota_bytes and not force:
            return
        async with self._scan_lock:
            if self._used is None or force:
                with self._errors("measure", ".", absent_ok=True):
                    self._used = await trio.to_thread.run_sync(
                        _tree_size, self.root, limiter=self._limiter
                    )

    async def _check_quota(self, more: int, key: str) -> None:
        if not self.quota_bytes:
            return
        assert self._used is not None
        if self._used + self._reserved + more <= self.quota_bytes:
            return
        # Other processes share the root (the encoder deletes the WAVs the API wrote):
        # before refusing, count again, at most once per QUOTA_RESCAN_S.
        now = trio.current_time()
        if now - self._last_scan >= self.quota_rescan_s:
            self._last_scan = now
            await self._ensure_usage(force=True)
        if self._used + self._reserved + more > self.quota_bytes:
            raise StorageFull(
                f"storage {self.name!r}: writing {key!r} would exceed the quota of "
                f"{self.quota_bytes} bytes ({self._used} used, {self._reserved} in progress)"
            )

    @contextmanager
    def _errors(self, op: str, key: str, *, absent_ok: bool) -> Iterator[None]:
        """Translate OSError into the StorageError family, once, where the I/O happens."""
        try:
            yield
        except OSError as exc:
            raise self.translate_error(exc, op, key, absent_ok=absent_ok) from exc

    def translate_error(self, exc: OSError, op: str, key: str, *, absent_ok: bool) -> StorageError:
        """The StorageError for an OSError met while doing `op` on `key`.

        `absent_ok`: a missing file is not an object that is not found (writes, deletes).
        """
        what = f"storage {self.name!r}: cannot {op} {key!r}: {exc.strerror or exc}"
        code = exc.errno
        if code in _FULL:
            return StorageFull(what)
        if code in _DENIED:
            return StorageDenied(what)
        if code in _TRANSIENT:
            return StorageUnavailable(what)
        if code == errno.ENAMETOOLONG:
            return InvalidKey(what)
        if code in _ABSENT and not absent_ok:
            return ObjectNotFound(f"storage {self.name!r}: no object {key!r}")
        if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            return StorageError(f"{what} (the key collides with another key's directory)")
        return StorageError(what)


class _FilesystemUpload(Upload):
    """One upload: temp file under `<root>/.tmp`, renamed onto the key by `commit`."""

    def __init__(
        self, storage: FilesystemStorage, key: str, path: Path, expected: str | None
    ) -> None:
        self._storage = storage
        self._key = key
        self._path = path
        self._expected = expected
        self._temp = storage.root / TEMP_DIR / f"{secrets.token_hex(12)}.part"
        self._file: BinaryIO | None = None
        self._hasher = hashlib.sha256()
        self._written = 0
        self.committed = False
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._written

    async def start(self) -> None:
        storage = self._storage

        def create() -> BinaryIO:
            if storage.root.exists() and not storage.root.is_dir():
                raise StorageMisconfigured(
                    f"storage {storage.name!r}: root {str(storage.root)!r} is not a directory"
                )
            make_dirs(self._temp.parent)
            return self._temp.open("xb")

        with storage._errors("create a temp file for", self._key, absent_ok=True):
            self._file = await trio.to_thread.run_sync(create, limiter=storage._limiter)

    async def write(self, data: bytes) -> None:
        file = self._open_file()
        if not data:
            await trio.lowlevel.checkpoint()
            return
        storage = self._storage
        await storage._check_quota(len(data), self._key)
        storage._reserved += len(data)
        self._written += len(data)

        def put() -> None:
            self._hasher.update(data)
            file.write(data)

        with storage._errors("write", self._key, absent_ok=True):
            await trio.to_thread.run_sync(put, limiter=storage._limiter)

    async def commit(self) -> ObjectInfo:
        file = self._open_file()
        storage = self._storage
        digest = self._hasher.hexdigest()
        if self._expected is not None and digest != self._expected:
            raise ChecksumMismatch(
                f"storage {storage.name!r}: {self._key!r} hashes to sha256 {digest}, "
                f"expected {self._expected}"
            )
        with storage._errors("commit", self._key, absent_ok=True):
            info, replaced = await trio.to_thread.run_sync(
                self._commit_sync, file, digest, limiter=storage._limiter
            )
        self.committed = True
        self._closed = True
        storage._reserved -= self._written
        if storage._used is not None:
            storage._used += info.size - replaced
        log.debug("object stored", storage=storage.name, key=self._key, size=info.size)
        return info

    def _commit_sync(self, file: BinaryIO, digest: str) -> tuple[ObjectInfo, int]:
        storage = self._storage
        file.flush()
        st = os.fstat(file.fileno())
        _set_sha256(file.fileno(), digest, st)
        if storage.fsync:
            os.fsync(file.fileno())
        file.close()
        # A concurrent delete may prune the freshly made directory before our rename
        # lands; making it again is all that is needed.
        for attempt in range(3):
            created = make_dirs(self._path.parent)
            try:
                replaced = _regular_size(self._path)
                self._temp.replace(self._path)
                break
            except FileNotFoundError:
                if attempt == 2 or not self._temp.exists():
                    raise
        if storage.fsync:
            fsync_dir(self._path.parent)
            for directory in created:
                fsync_dir(directory.parent)
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        return ObjectInfo(self._key, st.st_size, digest, modified), replaced

    async def discard(self) -> None:
        """Drop the temp file and the quota reservation (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._storage._reserved -= self._written
        file, self._file = self._file, None

        def remove() -> None:
            if file is not None:
                file.close()
            try:
                self._temp.unlink()
            except FileNotFoundError:
                pass

        try:
            await trio.to_thread.run_sync(remove, limiter=self._storage._limiter)
        except OSError as exc:  # cleanup must not mask the error that brought us here
            log.warning(
                "temp file not removed",
                storage=self._storage.name,
                path=str(self._temp),
                error=str(exc),
            )

    def _open_file(self) -> BinaryIO:
        if self.committed:
            raise StorageError(f"upload of {self._key!r} is already committed")
        if self._closed or self._file is None:
            raise StorageError(f"upload of {self._key!r} is closed")
        return self._file


def _open_regular(key: str, path: Path) -> tuple[BinaryIO, ObjectInfo]:
    handle = path.open("rb")
    try:
        return handle, _info(key, handle.fileno())
    except BaseException:
        handle.close()
        raise


def _regular_size(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        return 0
    return st.st_size if stat_module.S_ISREG(st.st_mode) else 0


def _stat_file(key: str, path: Path) -> ObjectInfo:
    # Size and xattr from one open inode, so a concurrent replace cannot pair the new
    # file's size with the old file's hash. O_NONBLOCK: a stray FIFO must not hang us.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return _info(key, fd)
    finally:
        os.close(fd)


def _info(key: str, fd: int) -> ObjectInfo:
    st = os.fstat(fd)
    if not stat_module.S_ISREG(st.st_mode):
        raise OSError(errno.EISDIR, "not a regular file")
    return ObjectInfo(
        key=key,
        size=st.st_size,
        sha256=_get_sha256(fd, st),
        modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def _set_sha256(fd: int, digest: str, st: os.stat_result) -> None:
    value = f"{digest} {st.st_size} {st.st_mtime_ns}".encode()
    try:
        os.setxattr(fd, XATTR, value)
    except OSError as exc:
        if exc.errno not in _NO_XATTR:
            raise


def _get_sha256(fd: int, st: os.stat_result) -> str | None:
    try:
        digest, size, mtime_ns = os.getxattr(fd, XATTR).decode().split(" ")
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return None
        raise
    except (ValueError, UnicodeDecodeError):
        return None  # not ours, or damaged: unknown rather than wrong
    if size != str(st.st_size) or mtime_ns != str(st.st_mtime_ns):
        return None  # the file changed since we hashed it
    return digest


def _tree_size(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != TEMP_DIR or directory != root:
                    stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total
