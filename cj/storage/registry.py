"""Named storages from configuration.

`storage.backends` names every place recordings may live; `storage.temporary` receives
uploaded WAVs and `storage.permanent` new MP3s. A recording row keeps the *name* of the
storage holding it, so pointing `permanent` at a new backend later keeps older
recordings readable through `Storages.get(row.storage)` as long as the old backend stays
configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

import structlog
import trio

from cj.config import FilesystemStorageConfig, S3StorageConfig, StorageBackendConfig, StorageConfig
from cj.storage.base import Storage, StorageError
from cj.storage.filesystem import FilesystemStorage
from cj.storage.s3 import S3Storage

log = structlog.get_logger(__name__)


class UnknownStorage(StorageError, KeyError):
    """A storage name that is not configured (a row naming a removed backend, a typo)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Storages:
    """The configured storages by name, plus which one is temporary and which permanent.

    Iterating gives the names; `name in storages` tells whether one is configured.
    """

    def __init__(self, storages: Mapping[str, Storage], *, temporary: str, permanent: str):
        self._storages = dict(storages)
        self.temporary = self.get(temporary)
        self.permanent = self.get(permanent)

    def get(self, name: str) -> Storage:
        """The storage called `name`; UnknownStorage (a KeyError) naming it if there is none."""
        try:
            return self._storages[name]
        except KeyError:
            known = ", ".join(sorted(self._storages)) or "none"
            raise UnknownStorage(
                f"storage {name!r} is not configured (configured: {known})"
            ) from None

    def __getitem__(self, name: str) -> Storage:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._storages

    def __iter__(self) -> Iterator[str]:
        return iter(self._storages)

    def __len__(self) -> int:
        return len(self._storages)

    def __repr__(self) -> str:
        return (
            f"Storages({sorted(self._storages)}, temporary={self.temporary.name!r}, "
            f"permanent={self.permanent.name!r})"
        )

    async def aclose(self) -> None:
        """Close every storage (even if one fails or we are being cancelled)."""
        await _close_all(self._storages)


def make_storage(name: str, config: StorageBackendConfig) -> Storage:
    """One storage from its configuration section. Blocking for S3 (builds a boto3 client)."""
    if isinstance(config, FilesystemStorageConfig):
        return FilesystemStorage.from_config(name, config)
    if isinstance(config, S3StorageConfig):
        return S3Storage(name, config)
    raise TypeError(f"storage {name!r}: unsupported backend configuration {config!r}")


@asynccontextmanager
async def open_storages(config: StorageConfig) -> AsyncIterator[Storages]:
    """Every configured storage, closed on exit.

    Nothing is contacted here: a storage that is down at start-up surfaces as
    StorageUnavailable when used (call `S3Storage.check()` for a readiness probe).
    """
    storages: dict[str, Storage] = {}
    try:
        for name, backend in config.backends.items():
            # boto3 reads its data files while building a client: keep that off the loop.
            storages[name] = await trio.to_thread.run_sync(make_storage, name, backend)
        registry = Storages(storages, temporary=config.temporary, permanent=config.permanent)
        log.debug("storages open", storages=repr(registry))
        yield registry
    finally:
        await _close_all(storages)


async def _close_all(storages: Mapping[str, Storage]) -> None:
    with trio.CancelScope(shield=True):
        for storage in storages.values():
            try:
                await storage.aclose()
            except Exception as exc:  # closing the others matters more
                log.warning("storage close failed", storage=storage.name, error=str(exc))
