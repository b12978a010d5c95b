"""Where recordings' bytes live: one `Storage` interface, filesystem / S3 / in-memory
implementations, and the named storages from configuration (`open_storages`)."""

from cj.storage.base import (
    ChecksumMismatch,
    InvalidKey,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageDenied,
    StorageError,
    StorageFull,
    StorageMisconfigured,
    StorageUnavailable,
    Upload,
    validate_key,
)
from cj.storage.filesystem import FilesystemStorage
from cj.storage.memory import MemoryStorage
from cj.storage.registry import Storages, UnknownStorage, make_storage, open_storages
from cj.storage.s3 import S3Storage

__all__ = [
    "ChecksumMismatch",
    "FilesystemStorage",
    "InvalidKey",
    "InvalidRange",
    "MemoryStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageDenied",
    "StorageError",
    "StorageFull",
    "StorageMisconfigured",
    "StorageUnavailable",
    "Storages",
    "UnknownStorage",
    "Upload",
    "make_storage",
    "open_storages",
    "validate_key",
]
