"""The storage boundary: where recordings' bytes live (temporary WAVs, permanent MP3s).

Keys are relative, slash-separated paths such as `2026/03/02/<uuid>.mp3`. Every
implementation raises only the `StorageError` family below; third-party exceptions
are translated once, where the I/O happens.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # a file name on every common filesystem
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class StorageError(Exception):
    """Base of every storage failure."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class StorageUnavailable(StorageError):
    """The storage cannot be reached or failed transiently; retrying may help."""


class StorageDenied(StorageError):
    """The storage refused us (credentials, permissions, signature)."""


class InvalidKey(StorageError, ValueError):
    """The key is not acceptable (would escape the root, has forbidden characters)."""


class StorageFull(StorageError):
    """No space or quota left for the write; freeing space lets it succeed."""


class InvalidRange(StorageError, ValueError):
    """A byte range that cannot be served (negative, reversed, or starting past the end).

    The REST layer maps it to 416 Range Not Satisfiable.
    """


class ChecksumMismatch(StorageError):
    """The bytes do not hash to the sha256 that was expected or recorded for them."""


class StorageMisconfigured(StorageError):
    """The storage itself is wrong (missing bucket, root is not a directory): not retryable."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise InvalidKey naming the fault.

    Rejected: empty, absolute, `..`/`.` segments, empty segments, backslashes, NUL and
    other control characters, segments starting with a dot, over MAX_KEY_LENGTH, segments
    over MAX_SEGMENT_LENGTH (so a key valid on S3 is valid on a filesystem too).
    """
    if not key:
        raise InvalidKey("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"storage key longer than {MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        raise InvalidKey("storage key contains NUL")
    if "\\" in key:
        raise InvalidKey("storage key contains a backslash")
    if key.startswith("/"):
        raise InvalidKey("storage key is absolute")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"storage key has an empty, '.' or '..' segment: {key!r}")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidKey(f"storage key segment longer than {MAX_SEGMENT_LENGTH} characters")
        if not _SEGMENT.match(segment):
            raise InvalidKey(f"storage key segment {segment!r} has forbidden characters")
    return key


def check_sha256(value: str, what: str = "sha256") -> str:
    """Return `value` lower-cased if it is 64 hex digits, else raise ValueError naming `what`."""
    lowered = value.lower()
    if not _SHA256.match(lowered):
        raise ValueError(f"{what} must be 64 hexadecimal digits, got {value[:80]!r}")
    return lowered


def check_range(start: int, end: int | None) -> None:
    """Reject ranges that are wrong whatever the object's size (negative or reversed)."""
    if start < 0:
        raise InvalidRange(f"range start {start} is negative")
    if end is not None and end < start:
        raise InvalidRange(f"range end {end} is before range start {start}")


def resolve_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """The concrete `[start, end)` to serve from an object of `size` bytes.

    `end` past the object is clamped (as HTTP does); `start == size` is an empty range (so
    an empty object reads as empty); `start > size` raises InvalidRange.
    """
    check_range(start, end)
    if start > size:
        raise InvalidRange(f"range start {start} is beyond the end of the object ({size} bytes)")
    return start, size if end is None else min(end, size)


@dataclass(frozen=True)
class ObjectInfo:
    """What a storage knows about one stored object."""

    key: str
    size: int
    sha256: str | None = None  # hex; None when the storage does not know it
    modified: datetime | None = None


class Upload(abc.ABC):
    """A streamed write in progress. Nothing is visible under the key until `commit`."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Append `data`; may raise StorageFull before a quota would be exceeded."""

    @abc.abstractmethod
    async def commit(self) -> ObjectInfo:
        """Make the object durable and visible; returns its size and sha256."""

    @property
    @abc.abstractmethod
    def bytes_written(self) -> int:
        """Bytes accepted by `write` so far."""


class Storage(abc.ABC):
    """One named place for objects."""

    name: str

    @abc.abstractmethod
    def open_upload(
        self, key: str, *, expected_sha256: str | None = None
    ) -> AbstractAsyncContextManager[Upload]:
        """Stream an object in; leaving the block without `commit()` discards it.

        With `expected_sha256`, `commit()` raises ChecksumMismatch (and publishes nothing)
        when the bytes written hash differently.
        """

    @abc.abstractmethod
    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store a local file under `key` (atomically, durably)."""

    @abc.abstractmethod
    def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream the bytes `[start, end)` of an object (`end=None`: to the end)."""

    @abc.abstractmethod
    async def get_file(self, key: str, path: Path) -> ObjectInfo:
        """Copy an object to a local file (written aside, then renamed onto `path`).

        When the storage knows the object's sha256, the copy is verified against it and
        ChecksumMismatch is raised (leaving `path` untouched) if it differs.
        """

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size, sha256 (when known) and modification time; ObjectNotFound if absent."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key` (errors other than absence propagate)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove an object; removing a missing object is not an error."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients and threads."""
