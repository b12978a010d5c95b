"""Objects in an S3 bucket (AWS, SeaweedFS, MinIO, Ceph …) through boto3.

boto3 is blocking, so every call runs in `trio.to_thread.run_sync` behind a
CapacityLimiter of `max_concurrency` threads. Object `k` lives at `<prefix>/k`.

Writes publish nothing until complete: a streamed upload is buffered up to
`max(multipart_threshold_bytes, multipart_chunk_bytes)`; a smaller object is one PUT,
a larger one a multipart upload of `multipart_chunk_bytes` parts (memory stays bounded),
aborted on error or cancellation. The sha256 is stored as object metadata
(`x-amz-meta-sha256`) so `stat` can return it: set with the PUT, or at the start of a
multipart upload when the caller passes `expected_sha256`; otherwise, as the hash is only
known at the end, by a server-side self-copy replacing the metadata right after the
multipart upload completes (cheap on SeaweedFS; a server-side copy on AWS, fine below
its 5 GB copy limit).

A missing bucket is a configuration error (StorageMisconfigured naming the bucket);
`ensure_bucket()` creates it for development and tests.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import structlog
import trio
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import CancelledError as S3TransferCancelled

from cj.config import S3StorageConfig
from cj.storage._local import CHUNK_BYTES, EmptyChunks, ThreadChunks, hash_file, write_local_file
from cj.storage.base import (
    ChecksumMismatch,
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
    check_range,
    check_sha256,
    resolve_range,
    validate_key,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef
    from s3transfer.futures import TransferFuture

log = structlog.get_logger(__name__)

T = TypeVar("T")

META_SHA256 = "sha256"  # sent as x-amz-meta-sha256
CLEANUP_TIMEOUT_S = 10.0  # how long a cancelled upload may spend aborting its multipart

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_FULL_CODES = frozenset({"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage"})
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)


def make_client(config: S3StorageConfig) -> S3Client:
    """A boto3 S3 client for `config`: SigV4, addressing style, retries and timeouts.

    Credentials come from the configuration when given, else from boto3's usual chain
    (environment, shared files, instance role). Blocking (reads botocore's data files).
    """
    if (config.access_key_id is None) != (config.secret_access_key is None):
        raise StorageMisconfigured(
            f"S3 bucket {config.bucket!r}: access_key_id and secret_access_key must be "
            "given together"
        )
    boto_config = BotoConfig(
        signature_version="s3v4",
        region_name=config.region,
        s3={"addressing_style": "path" if config.path_style else "virtual"},
        # `max_attempts` in our configuration counts the first try too.
        retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        # Our limiter allows max_concurrency calls; the transfer manager as many more.
        max_pool_connections=config.max_concurrency * 2,
        tcp_keepalive=True,
    )
    secret = config.secret_access_key
    # A boto3 Session is not thread-safe, but the clients it makes are. Sharing one (under
    # a lock) loads botocore's service model once instead of for every client.
    with _session_lock:
        global _session
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=None if secret is None else secret.get_secret_value(),
            config=boto_config,
        )


_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


class S3Storage(Storage):
    """A Storage in one S3 bucket, under an optional key prefix."""

    def __init__(self, name: str, config: S3StorageConfig, *, client: S3Client | None = None):
        if not config.bucket:
            raise StorageMisconfigured(f"storage {name!r}: the S3 bucket name is empty")
        self.name = name
        self.config = config
        self.bucket = config.bucket
        self.prefix = _normalise_prefix(name, config.prefix)
        self._client = client if client is not None else make_client(config)
        self._limiter = trio.CapacityLimiter(config.max_concurrency)
        # One transfer manager per storage: its thread pool bounds the parts in flight
        # across all concurrent put_file calls.
        self._transfers = create_transfer_manager(
            self._client,
            TransferConfig(
                multipart_threshold=config.multipart_threshold_bytes,
                multipart_chunksize=config.multipart_chunk_bytes,
                max_concurrency=config.max_concurrency,
                preferred_transfer_client="classic",  # never the optional CRT client
            ),
        )
        self._bucket_seen = False  # a HEAD 404 is ambiguous until the bucket is known

    def __repr__(self) -> str:
        return f"S3Storage(name={self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def object_key(self, key: str) -> str:
        """The S3 key of storage key `key` (InvalidKey if the key is not acceptable)."""
        return self.prefix + validate_key(key)

    # --- bucket -----------------------------------------------------------------------

    async def check(self) -> None:
        """Raise unless the bucket exists and our credentials are accepted."""
        try:
            await self._call("check bucket", "", self._client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:
            raise self._missing_bucket() from None
        self._bucket_seen = True

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for `make run` and tests)."""
        try:
            await self.check()
            return
        except StorageMisconfigured:
            pass
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.config.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
        try:
            await self._call("create bucket", "", self._client.create_bucket, **kwargs)
        except StorageError as exc:
            cause = exc.__cause__
            if not (
                isinstance(cause, ClientError)
                and cause.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou"
            ):
                raise
        self._bucket_seen = True
        log.info("bucket created", storage=self.name, bucket=self.bucket)

    # --- writing ----------------------------------------------------------------------

    @asynccontextmanager
    async def open_upload(
        self, key: str, *, expected_sha256: str | None = None
    ) -> AsyncIterator[Upload]:
        s3_key = self.object_key(key)
        expected = None if expected_sha256 is None else check_sha256(expected_sha256)
        upload = _S3Upload(self, key, s3_key, expected)
        try:
            yield upload
        finally:
            if not upload.committed:
                await upload.discard()

    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        s3_key = self.object_key(key)
        size, digest = await hash_file(path, self._limiter)
        transfer = _CancellableTransfer()

        def upload() -> None:
            # What `client.upload_file` does, minus its wrapping of errors into a string,
            # and with a future we can cancel: the file is streamed from disk in parts.
            future = self._transfers.upload(
                str(path), self.bucket, s3_key, extra_args={"Metadata": {META_SHA256: digest}}
            )
            transfer.attach(future)
            future.result()

        async with trio.open_nursery() as nursery:
            # If we are cancelled, cancel the transfer: s3transfer then stops reading,
            # aborts the multipart upload and returns. We wait for that (bounded by the
            # S3 timeouts) so no thread outlives the call.
            nursery.start_soon(_cancel_on_cancellation, transfer)
            try:
                await trio.to_thread.run_sync(upload, limiter=self._limiter)
            except Exception as exc:  # re-raised below, outside the nursery's group
                failure: Exception | None = exc
            else:
                failure = None
            nursery.cancel_scope.cancel()
        # Only reached when not cancelled (otherwise the nursery raised Cancelled).
        if failure is not None:
            with self._errors("upload", key):
                raise failure
        return ObjectInfo(key=key, size=size, sha256=digest)

    # --- reading ----------------------------------------------------------------------

    @asynccontextmanager
    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        s3_key = self.object_key(key)
        check_range(start, end)
        body = None
        if end is None or end > start:
            request: dict[str, Any] = {"Bucket": self.bucket, "Key": s3_key}
            if start or end is not None:
                last = "" if end is None else str(end - 1)
                request["Range"] = f"bytes={start}-{last}"
            try:
                response = await self._get_object(key, request)
                body = response["Body"]
            except InvalidRange:
                pass  # maybe `start == size`, an empty range HTTP cannot express: see below
        if body is None:
            # An empty range: the object must still exist and the start must be within it.
            resolve_range(start, end, (await self.stat(key)).size)
            yield EmptyChunks()
            return
        try:
            yield ThreadChunks(functools.partial(self._read_chunk, body, key), self._limiter)
        finally:
            body.close()

    async def get_file(self, key: str, path: Path) -> ObjectInfo:
        s3_key = self.object_key(key)
        response = await self._get_object(key, {"Bucket": self.bucket, "Key": s3_key})
        body = response["Body"]
        try:
            size, digest = await write_local_file(
                ThreadChunks(functools.partial(self._read_chunk, body, key), self._limiter),
                path,
                expected_sha256=_recorded_sha256(response.get("Metadata")),
                what=f"storage {self.name!r}: {key!r}",
                limiter=self._limiter,
            )
        finally:
            body.close()
        return ObjectInfo(key, size, digest, response.get("LastModified"))

    async def stat(self, key: str) -> ObjectInfo:
        s3_key = self.object_key(key)
        try:
            head = await self._call(
                "stat", key, self._client.head_object, abandon=True, Bucket=self.bucket, Key=s3_key
            )
        except ObjectNotFound:
            await self._check_bucket_after_404()
            raise
        modified: datetime | None = head.get("LastModified")
        return ObjectInfo(
            key, head["ContentLength"], _recorded_sha256(head.get("Metadata")), modified
        )

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        s3_key = self.object_key(key)
        await self._call(
            "delete", key, self._client.delete_object, abandon=True, Bucket=self.bucket, Key=s3_key
        )

    async def aclose(self) -> None:
        def close() -> None:
            self._transfers.shutdown()
            self._client.close()

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close)

    # --- internals --------------------------------------------------------------------

    async def _get_object(self, key: str, request: dict[str, Any]) -> Any:
        try:
            return await self._call("read", key, self._client.get_object, **request)
        except ObjectNotFound:
            await self._check_bucket_after_404()
            raise

    def _read_chunk(self, body: StreamingBody, key: str) -> bytes:
        """In a worker thread: the next chunk of a response body (b"" at the end)."""
        with self._errors("read", key):
            return body.read(CHUNK_BYTES)

    async def _check_bucket_after_404(self) -> None:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask once."""
        if not self._bucket_seen:
            await self.check()

    def _missing_bucket(self) -> StorageMisconfigured:
        return StorageMisconfigured(
            f"storage {self.name!r}: S3 bucket {self.bucket!r} does not exist "
            "(create it, or fix the bucket name in the storage configuration)"
        )

    async def _call(
        self, op: str, key: str, fn: Callable[..., T], *, abandon: bool = False, **kwargs: Any
    ) -> T:
        """Run one boto3 call in a worker thread, translating its errors.

        `abandon`: on cancellation, stop waiting and let the thread finish on its own;
        only for idempotent calls that hold nothing once done (HEAD, DELETE).
        """
        with self._errors(op, key):
            return await trio.to_thread.run_sync(
                functools.partial(fn, **kwargs), limiter=self._limiter, abandon_on_cancel=abandon
            )

    @contextmanager
    def _errors(self, op: str, key: str) -> Iterator[None]:
        """Translate boto3/botocore errors into the StorageError family, once."""
        try:
            yield
        except (ClientError, BotoCoreError, S3UploadFailedError, S3TransferCancelled) as exc:
            raise self.translate_error(exc, op, key) from exc

    def translate_error(self, exc: Exception, op: str, key: str) -> StorageError:
        """The StorageError for a boto3/botocore exception raised while doing `op` on `key`."""
        where = f"storage {self.name!r}: cannot {op} {key!r} (bucket {self.bucket!r})"
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__  # boto3 flattens the ClientError into a message
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            what = f"{where}: {code or status} {error.get('Message', '')}".rstrip()
            if code == "NoSuchBucket":
                return self._missing_bucket()
            if code == "NoSuchUpload":
                return StorageUnavailable(f"{what} (the multipart upload was dropped)")
            if code in ("NoSuchKey", "NotFound") or status == 404:
                return ObjectNotFound(f"storage {self.name!r}: no object {key!r}")
            if code in _DENIED_CODES or status in (401, 403):
                return StorageDenied(what)
            if code == "InvalidRange" or status == 416:
                return InvalidRange(what)
            if code in _FULL_CODES or status == 507:
                return StorageFull(what)
            if code in _TRANSIENT_CODES or status >= 500 or status in (408, 429):
                return StorageUnavailable(what)
            return StorageError(what)
        if isinstance(exc, HTTPClientError | BotoConnectionError | IncompleteReadError):
            return StorageUnavailable(f"{where}: {exc}")
        if isinstance(exc, S3TransferCancelled):
            return StorageError(f"{where}: transfer cancelled ({exc})")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageDenied(f"{where}: no usable S3 credentials ({exc})")
        return StorageError(f"{where}: {exc}")


class _S3Upload(Upload):
    """A streamed upload: one PUT if small, else a multipart upload of fixed-size parts."""

    def __init__(self, storage: S3Storage, key: str, s3_key: str, expected: str | None) -> None:
        self._storage = storage
        self._key = key
        self._s3_key = s3_key
        self._expected = expected
        config = storage.config
        self._part_bytes = config.multipart_chunk_bytes
        self._single_put_max = max(config.multipart_threshold_bytes, config.multipart_chunk_bytes)
        self._buffer = bytearray()
        self._hasher = _Sha256()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.committed = False
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._written

    def _usable(self) -> None:
        if self.committed:
            raise StorageError(f"upload of {self._key!r} is already committed")
        if self._closed:
            raise StorageError(f"upload of {self._key!r} is closed")

    async def write(self, data: bytes) -> None:
        self._usable()
        self._buffer += data
        self._written += len(data)
        if self._upload_id is None:
            if len(self._buffer) <= self._single_put_max:
                await trio.lowlevel.checkpoint()  # may still be a single PUT: keep buffering
                return
            await self._start_multipart()
        elif len(self._buffer) < self._part_bytes:
            await trio.lowlevel.checkpoint()  # every write is a checkpoint, sent or not
            return
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            await self._upload_part(part)

    async def _start_multipart(self) -> None:
        storage = self._storage
        extra: dict[str, Any] = {}
        if self._expected is not None:
            extra["Metadata"] = {META_SHA256: self._expected}
        response = await storage._call(
            "start upload of",
            self._key,
            storage._client.create_multipart_upload,
            Bucket=storage.bucket,
            Key=self._s3_key,
            **extra,
        )
        self._upload_id = response["UploadId"]

    async def _upload_part(self, part: bytes, *, hashed: bool = False) -> None:
        storage = self._storage
        assert self._upload_id is not None
        number = len(self._parts) + 1
        upload_id = self._upload_id

        def send() -> Any:
            if not hashed:
                self._hasher.update(part)  # in the worker thread: 8 MB take a while
            return storage._client.upload_part(
                Bucket=storage.bucket,
                Key=self._s3_key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
            )

        with storage._errors("upload part of", self._key):
            response = await trio.to_thread.run_sync(send, limiter=storage._limiter)
        completed: CompletedPartTypeDef = {"ETag": response["ETag"], "PartNumber": number}
        for checksum in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
            if checksum in response:  # CompleteMultipartUpload wants them back, if any
                completed[checksum] = response[checksum]
        self._parts.append(completed)

    async def commit(self) -> ObjectInfo:
        self._usable()
        storage = self._storage
        tail = bytes(self._buffer)
        self._buffer.clear()
        digest = await trio.to_thread.run_sync(self._hasher.finish_with, tail)
        if self._expected is not None and digest != self._expected:
            raise ChecksumMismatch(
                f"storage {storage.name!r}: {self._key!r} hashes to sha256 {digest}, "
                f"expected {self._expected}"
            )
        if self._upload_id is None:
            await storage._call(
                "upload",
                self._key,
                storage._client.put_object,
                Bucket=storage.bucket,
                Key=self._s3_key,
                Body=tail,
                Metadata={META_SHA256: digest},
            )
            self.committed = True
        else:
            if tail or not self._parts:
                await self._upload_part(tail, hashed=True)  # finish_with hashed it
            await storage._call(
                "complete upload of",
                self._key,
                storage._client.complete_multipart_upload,
                Bucket=storage.bucket,
                Key=self._s3_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self.committed = True  # before any further checkpoint: the object is visible
            if self._expected is None:
                await self._record_sha256(digest)
        self._closed = True
        return ObjectInfo(self._key, self._written, digest)

    async def _record_sha256(self, digest: str) -> None:
        storage = self._storage
        try:
            await storage._call(
                "record sha256 of",
                self._key,
                storage._client.copy_object,
                Bucket=storage.bucket,
                Key=self._s3_key,
                CopySource={"Bucket": storage.bucket, "Key": self._s3_key},
                MetadataDirective="REPLACE",
                Metadata={META_SHA256: digest},
            )
        except StorageError as exc:
            # The bytes are stored and durable; only `stat` will not know their hash.
            log.warning(
                "sha256 metadata not recorded",
                storage=storage.name,
                key=self._key,
                error=str(exc),
            )

    async def discard(self) -> None:
        """Abort the multipart upload, if any; never raises (cleanup after a failure)."""
        if self._closed:
            return
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        storage = self._storage
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLEANUP_TIMEOUT_S
            try:
                await storage._call(
                    "abort upload of",
                    self._key,
                    storage._client.abort_multipart_upload,
                    abandon=True,
                    Bucket=storage.bucket,
                    Key=self._s3_key,
                    UploadId=upload_id,
                )
            except StorageError as exc:
                log.warning(
                    "multipart upload not aborted",
                    storage=storage.name,
                    key=self._key,
                    upload_id=upload_id,
                    error=str(exc),
                )
        if scope.cancelled_caught:
            log.warning(
                "multipart upload abort timed out",
                storage=storage.name,
                key=self._key,
                upload_id=upload_id,
            )


class _CancellableTransfer:
    """A transfer future that may be cancelled before or after it exists (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future: TransferFuture | None = None
        self._cancelled = False

    def attach(self, future: TransferFuture) -> None:
        with self._lock:
            self._future = future
            if self._cancelled:
                future.cancel()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._future is not None:
                self._future.cancel()


async def _cancel_on_cancellation(transfer: _CancellableTransfer) -> None:
    try:
        await trio.sleep_forever()
    finally:
        transfer.cancel()  # also after success: cancelling a finished transfer is a no-op


class _Sha256:
    """A running sha256 whose updates run in worker threads, strictly in order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def finish_with(self, tail: bytes) -> str:
        self._hash.update(tail)
        return self._hash.hexdigest()


def _recorded_sha256(metadata: dict[str, str] | None) -> str | None:
    value = (metadata or {}).get(META_SHA256)
    if value is None:
        return None
    try:
        return check_sha256(value)
    except ValueError:
        return None  # someone else's metadata: unknown rather than wrong


def _normalise_prefix(name: str, prefix: str) -> str:
    """`recordings`, `recordings/` → `recordings/`; the prefix is a folder, validated as a key."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        validate_key(stripped)
    except StorageError as exc:
        raise StorageMisconfigured(f"storage {name!r}: bad S3 prefix {prefix!r}: {exc}") from None
    return stripped + "/"
