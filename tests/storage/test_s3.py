"""S3Storage against SeaweedFS: multipart, refusals, outages, buckets, prefixes."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pydantic import SecretStr

from cj.storage import (
    ChecksumMismatch,
    InvalidRange,
    ObjectNotFound,
    S3Storage,
    StorageDenied,
    StorageError,
    StorageFull,
    StorageMisconfigured,
    StorageUnavailable,
)
from tests.fixtures.seaweed import SeaweedFS
from tests.storage.conftest import MiB, s3_storage

KEY = "2026/03/02/call.wav"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def make(seaweed: SeaweedFS, bucket: str, **overrides: object) -> S3Storage:
    return await trio.to_thread.run_sync(partial(s3_storage, seaweed, bucket, **overrides))


async def read_all(storage: S3Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    async with storage.open_read(key, start, end) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def test_60_mb_multipart_round_trip(
    seaweedfs: SeaweedFS, contract_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(60 * MiB)
    digest = sha(data)
    # Default part size (8 MiB): 8 parts, the last one short.
    storage = await make(
        seaweedfs, contract_bucket, multipart_threshold_bytes=8 * MiB, multipart_chunk_bytes=8 * MiB
    )
    client = seaweedfs.client()
    with trio.fail_after(60):
        async with storage.open_upload(KEY) as upload:
            for offset in range(0, len(data), MiB):
                await upload.write(data[offset : offset + MiB])
            info = await upload.commit()
        assert (info.size, info.sha256) == (len(data), digest)
        head = await trio.to_thread.run_sync(
            partial(client.head_object, Bucket=contract_bucket, Key=storage.object_key(KEY))
        )
        assert head["ETag"].strip('"').endswith("-8")  # really a multipart object
        assert head["Metadata"]["sha256"] == digest  # x-amz-meta-sha256
        assert (await storage.stat(KEY)).sha256 == digest

        hasher = hashlib.sha256()
        async with storage.open_read(KEY) as chunks:
            async for chunk in chunks:
                assert len(chunk) <= MiB  # streamed, never the whole object at once
                hasher.update(chunk)
        assert hasher.hexdigest() == digest

        # A range across the boundary between parts 1 and 2.
        assert (
            await read_all(storage, KEY, 8 * MiB - 10, 8 * MiB + 10)
            == data[8 * MiB - 10 : 8 * MiB + 10]
        )

        source = tmp_path / "big.wav"
        source.write_bytes(data)
        put = await storage.put_file("via/upload_file.wav", source)
        assert (put.size, put.sha256) == (len(data), digest)
        assert (await storage.stat("via/upload_file.wav")).sha256 == digest
        got = await storage.get_file("via/upload_file.wav", tmp_path / "back.wav")
        assert got.sha256 == digest
        assert sha((tmp_path / "back.wav").read_bytes()) == digest
    await storage.aclose()


async def test_cancelled_put_file_aborts_the_multipart_upload(
    seaweedfs: SeaweedFS, contract_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.wav"
    source.write_bytes(os.urandom(60 * MiB))
    # One part at a time, so the transfer lasts long enough to be caught mid-way.
    storage = await make(seaweedfs, contract_bucket, max_concurrency=1)
    client = seaweedfs.client()
    listing = partial(client.list_multipart_uploads, Bucket=contract_bucket, Prefix=storage.prefix)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def put() -> None:
                with scope:
                    await storage.put_file(KEY, source)

            nursery.start_soon(put)
            # Wait (on S3 itself, not on a clock) until the multipart upload has begun.
            while not (await trio.to_thread.run_sync(listing)).get("Uploads"):
                pass
            scope.cancel()
        assert scope.cancelled_caught
        assert not await storage.exists(KEY)
        assert (await trio.to_thread.run_sync(listing)).get("Uploads", []) == []
    await storage.aclose()


async def test_wrong_secret_is_denied(seaweedfs: SeaweedFS, contract_bucket: str) -> None:
    good = await make(seaweedfs, contract_bucket)
    bad = await make(
        seaweedfs,
        contract_bucket,
        prefix=good.prefix,
        secret_access_key=SecretStr("not-the-secret-" + "x" * 25),
    )
    with trio.fail_after(30):
        async with good.open_upload(KEY) as upload:
            await upload.write(b"secret data")
            await upload.commit()
        with pytest.raises(StorageDenied, match="SignatureDoesNotMatch"):
            await read_all(bad, KEY)
        with pytest.raises(StorageDenied):
            await bad.stat(KEY)  # HEAD: no error body, only the 403
        with pytest.raises(StorageDenied):
            await bad.exists(KEY)
        with pytest.raises(StorageDenied, match="SignatureDoesNotMatch"):
            async with bad.open_upload("other") as upload:
                await upload.write(b"intruder")
                await upload.commit()
        with pytest.raises(StorageDenied):
            await bad.delete(KEY)
        assert await read_all(good, KEY) == b"secret data"
        assert not await good.exists("other")
    await good.aclose()
    await bad.aclose()


async def test_unknown_access_key_is_denied(seaweedfs: SeaweedFS, contract_bucket: str) -> None:
    storage = await make(seaweedfs, contract_bucket, access_key_id="nobody-we-know")
    with trio.fail_after(30), pytest.raises(StorageDenied, match=r"InvalidAccessKeyId|403"):
        await read_all(storage, KEY)
    await storage.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now


async def test_unreachable_endpoint_is_unavailable(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    config = seaweedfs.storage_config(
        "any-bucket", endpoint_url=f"http://127.0.0.1:{closed_port()}", max_attempts=1
    )
    storage = await trio.to_thread.run_sync(S3Storage, "down", config)
    source = tmp_path / "f"
    source.write_bytes(b"data")
    with trio.fail_after(30):
        with pytest.raises(StorageUnavailable, match="Could not connect"):
            await storage.stat(KEY)
        with pytest.raises(StorageUnavailable):
            await read_all(storage, KEY)
        with pytest.raises(StorageUnavailable):
            async with storage.open_upload(KEY) as upload:
                await upload.write(b"data")
                await upload.commit()
        with pytest.raises(StorageUnavailable):
            await storage.put_file(KEY, source)
        with pytest.raises(StorageUnavailable):
            await storage.delete(KEY)
    await storage.aclose()


async def test_missing_bucket_is_a_configuration_error(seaweedfs: SeaweedFS) -> None:
    bucket = f"never-created-{os.urandom(3).hex()}"
    storage = await trio.to_thread.run_sync(S3Storage, "nobucket", seaweedfs.storage_config(bucket))
    with trio.fail_after(30):
        attempts: list[Callable[[], Awaitable[object]]] = [
            storage.check,
            partial(storage.stat, KEY),
            partial(storage.exists, KEY),
            partial(read_all, storage, KEY),
        ]
        for attempt in attempts:
            with pytest.raises(StorageMisconfigured, match=f"bucket '{bucket}' does not exist"):
                await attempt()
        with pytest.raises(StorageMisconfigured, match=bucket):
            async with storage.open_upload(KEY) as upload:
                await upload.write(b"data")
                await upload.commit()
        await storage.ensure_bucket()
        await storage.ensure_bucket()  # idempotent
        await storage.check()
        assert not await storage.exists(KEY)
        async with storage.open_upload(KEY) as upload:
            await upload.write(b"data")
            await upload.commit()
        assert await read_all(storage, KEY) == b"data"
    await storage.aclose()


async def test_keys_live_under_the_prefix(seaweedfs: SeaweedFS, contract_bucket: str) -> None:
    storage = await make(seaweedfs, contract_bucket, prefix="/cj-prefix-test/recordings/")
    assert storage.prefix == "cj-prefix-test/recordings/"
    client = seaweedfs.client()
    with trio.fail_after(30):
        async with storage.open_upload(KEY) as upload:
            await upload.write(b"x")
            await upload.commit()
        listed = await trio.to_thread.run_sync(
            partial(client.list_objects_v2, Bucket=contract_bucket, Prefix="cj-prefix-test/")
        )
        assert [o["Key"] for o in listed["Contents"]] == [f"cj-prefix-test/recordings/{KEY}"]
        await storage.delete(KEY)
    await storage.aclose()


@pytest.mark.parametrize("prefix", ["../up", "a//b", "bad prefix"])
def test_bad_prefix_is_refused(seaweedfs: SeaweedFS, prefix: str) -> None:
    with pytest.raises(StorageMisconfigured, match="bad S3 prefix"):
        S3Storage("p", seaweedfs.storage_config("bucket", prefix=prefix))


def test_access_key_without_secret_is_refused(seaweedfs: SeaweedFS) -> None:
    config = seaweedfs.storage_config("bucket", secret_access_key=None)
    with pytest.raises(StorageMisconfigured, match="must be given together"):
        S3Storage("half", config)


async def test_get_file_detects_corruption(
    seaweedfs: SeaweedFS, contract_bucket: str, tmp_path: Path
) -> None:
    storage = await make(seaweedfs, contract_bucket)
    client = seaweedfs.client()
    target = tmp_path / "copy.wav"
    put = partial(
        client.put_object,
        Bucket=contract_bucket,
        Key=storage.object_key(KEY),
        Body=b"rotten bytes",
        Metadata={"sha256": sha(b"the bytes we stored")},
    )
    with trio.fail_after(30):
        await trio.to_thread.run_sync(put)
        with pytest.raises(ChecksumMismatch, match="recorded"):
            await storage.get_file(KEY, target)
        assert list(await trio.Path(tmp_path).iterdir()) == []  # neither copy nor temp
    await storage.aclose()


async def test_objects_without_our_metadata(
    seaweedfs: SeaweedFS, contract_bucket: str, tmp_path: Path
) -> None:
    storage = await make(seaweedfs, contract_bucket)
    client = seaweedfs.client()
    put = partial(
        client.put_object, Bucket=contract_bucket, Key=storage.object_key(KEY), Body=b"foreign"
    )
    with trio.fail_after(30):
        await trio.to_thread.run_sync(put)
        info = await storage.stat(KEY)
        assert (info.size, info.sha256) == (7, None)  # unknown, not invented
        got = await storage.get_file(KEY, tmp_path / "f")
        assert got.sha256 == sha(b"foreign")  # computed while copying
    await storage.aclose()


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("NoSuchBucket", 404), StorageMisconfigured),
        (client_error("AccessDenied", 403), StorageDenied),
        (client_error("SignatureDoesNotMatch", 403), StorageDenied),
        (client_error("InvalidAccessKeyId", 403), StorageDenied),
        (client_error("403", 403), StorageDenied),
        (client_error("InvalidRange", 416), InvalidRange),
        (client_error("SlowDown", 503), StorageUnavailable),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("502", 502), StorageUnavailable),
        (client_error("RequestTimeout", 400), StorageUnavailable),
        (client_error("XMinioStorageFull", 507), StorageFull),
        (client_error("EntityTooLarge", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
        (ReadTimeoutError(endpoint_url="http://x"), StorageUnavailable),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, type) else None,
)
def test_error_translation(seaweedfs: SeaweedFS, error: Exception, expected: type) -> None:
    storage = S3Storage("t", seaweedfs.storage_config("bucket"))
    translated = storage.translate_error(error, "read", KEY)
    assert type(translated) is expected
    assert "'t'" in str(translated)  # names the storage
