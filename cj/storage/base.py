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
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*$")


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


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise InvalidKey naming the fault.

    Rejected: empty, absolute, `..`/`.` segments, empty segments, backslashes, NUL and
    other control characters, segments starting with a dot, over MAX_KEY_LENGTH.
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
        if not _SEGMENT.match(segment):
            raise InvalidKey(f"storage key segment {segment!r} has forbidden characters")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None = None  # hex; None when the storage does not know it
    modified: datetime | None = None


class Upload(abc.ABC):
    """A streamed write in progress. Nothing is visible under the key until `commit`."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> ObjectInfo:
        """Make the object durable and visible; returns its size and sha256."""

    @property
    @abc.abstractmethod
    def bytes_written(self) -> int: ...


class Storage(abc.ABC):
    """One named place for objects."""

    name: str

    @abc.abstractmethod
    def open_upload(self, key: str) -> AbstractAsyncContextManager[Upload]:
        """Stream an object in; leaving the block without `commit()` discards it."""

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
        """Copy an object to a local file."""

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove an object; removing a missing object is not an error."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients and threads."""
