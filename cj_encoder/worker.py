"""One encode job: temporary WAV → stereo MP3 in permanent storage, never losing either.

Order of effects, each step safe to repeat after a crash:
1. claim the recording in the database (status `encoding`, attempts + 1, a lease);
2. fetch the WAV (read in place from a filesystem storage, else copied locally);
3. encode to a local temporary MP3 in a worker thread, renewing the lease meanwhile;
4. upload the MP3 to permanent storage under `{yyyy}/{mm}/{dd}/{uuid}.mp3` (a re-run
   overwrites the same key with the same content);
5. mark the row `stored` with where the MP3 is;
6. delete the temporary WAV and forget it in the row;
7. acknowledge the queue message.
A failure before 5 leaves the WAV and the row for a retry; after 5 the worst case is a
leftover WAV, removed when the duplicate message comes.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid as uuid_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import outcome
import structlog
import trio

from cj.audio import EncodeResult, EncodeSettings, UndecodableAudio, encode_wav_to_mp3
from cj.audio.errors import AudioError
from cj.backoff import exponential_delay
from cj.config import EncoderConfig
from cj.db import Connection, Database, DatabaseError
from cj.db.calls import get_call
from cj.db.recordings import (
    claim_for_encoding,
    extend_lease,
    forget_original,
    get_recording,
    mark_failed,
    mark_stored,
    release_for_retry,
)
from cj.model import Recording, RecordingStatus
from cj.queue.base import Delivery, QueueError
from cj.storage import FilesystemStorage, ObjectNotFound, Storage, StorageError, Storages
from cj_encoder.metrics import EncoderMetrics

log = structlog.get_logger(__name__)

T = TypeVar("T")
MP3_CONTENT_TYPE = "audio/mpeg"


WORK_DIR_PREFIX = "cj-encode-"


def work_dir_prefix(pid: int | None = None) -> str:
    """Per-process prefix of the encoder's scratch directories (`cj-encode-<pid>-…`)."""
    return f"{WORK_DIR_PREFIX}{pid if pid is not None else os.getpid()}-"


def remove_orphaned_work_dirs(work_dir: Path | None) -> int:
    """Delete scratch directories of encoder processes that no longer run (killed -9
    mid-encode: a local WAV copy and a partial MP3 each). Returns how many."""
    base = Path(work_dir if work_dir is not None else tempfile.gettempdir())
    removed = 0
    for entry in base.glob(f"{WORK_DIR_PREFIX}*"):
        pid_text = entry.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        if not entry.is_dir() or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    return True


def mp3_key(call_uuid: uuid_module.UUID, started_at: datetime) -> str:
    """Where a call's MP3 lives in permanent storage: by the UTC date of the call."""
    return f"{started_at:%Y/%m/%d}/{call_uuid}.mp3"


class JobOutcome(StrEnum):
    """How one delivery ended (for logs, metrics and tests)."""

    STORED = "stored"
    FAILED = "failed"  # permanently: the recording is marked failed, the WAV kept
    RETRY = "retry"  # given back to the queue for a later attempt
    NOTHING_TO_DO = "nothing_to_do"  # already stored, failed, or held by another encoder


class _Transient(Exception):
    """A failure worth retrying (storage or database away)."""


@dataclass
class JobContext:
    db: Database
    storages: Storages
    config: EncoderConfig
    lease_s: float
    encode_limiter: trio.CapacityLimiter
    metrics: EncoderMetrics = field(default_factory=EncoderMetrics)


async def process(ctx: JobContext, delivery: Delivery) -> JobOutcome:
    """Handle one delivery to the end: ack, retry later, or mark failed."""
    call_uuid = delivery.job.call_uuid
    bound = log.bind(call_uuid=str(call_uuid), delivery_attempt=delivery.attempts)
    try:
        recording = await _db(
            ctx, functools.partial(claim_for_encoding, call_uuid=call_uuid, lease_s=ctx.lease_s)
        )
    except _Transient as exc:
        bound.warning("claim_failed", error=str(exc))
        await _settle(delivery.retry(_retry_delay(ctx.config, delivery.attempts)))
        return JobOutcome.RETRY
    if recording is None:
        return await _not_claimable(ctx, delivery, call_uuid)
    bound = bound.bind(attempt=recording.attempts)
    ctx.metrics.attempts.inc()
    try:
        try:
            stored = await _while_leased(
                ctx,
                delivery,
                call_uuid,
                functools.partial(_encode_and_store, ctx, recording, bound),
            )
        except BaseException as exc:
            if _is_cancellation(exc):
                # Shutting down mid-job: hand the job back now rather than at lease expiry.
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await _release(ctx, delivery, call_uuid, "encoder shut down mid-encode", 0)
            raise
    except UndecodableAudio as exc:
        bound.error("recording_undecodable", reason=str(exc))
        ctx.metrics.failures.labels("undecodable").inc()
        return await _fail(ctx, delivery, call_uuid, f"undecodable audio: {exc}")
    except (_Transient, AudioError, OSError) as exc:
        return await _transient_failure(ctx, delivery, recording, str(exc), bound)
    except ObjectNotFound as exc:
        # The WAV is gone (deleted by hand?): nothing to retry with.
        bound.error("original_missing", error=str(exc))
        ctx.metrics.failures.labels("original_missing").inc()
        return await _fail(ctx, delivery, call_uuid, f"original recording missing: {exc}")
    await _remove_original(ctx, stored, bound)
    await _settle(delivery.ack())
    bound.info(
        "recording_stored",
        key=stored.key,
        size=stored.size,
        duration_ms=stored.duration_ms,
    )
    return JobOutcome.STORED


async def _encode_and_store(
    ctx: JobContext, recording: Recording, bound: structlog.typing.FilteringBoundLogger
) -> Recording:
    call_uuid = recording.call_uuid
    record = await _db(ctx, functools.partial(get_call, call_uuid=call_uuid))
    if record is None or recording.original_storage is None or recording.original_key is None:
        raise ObjectNotFound(f"no original for call {call_uuid}")
    source_storage = _storage(ctx, recording.original_storage)
    permanent = ctx.storages.permanent
    key = mp3_key(call_uuid, record.call.started_at)
    with tempfile.TemporaryDirectory(prefix=work_dir_prefix(), dir=ctx.config.work_dir) as workdir:
        with ctx.metrics.timed_storage(source_storage.name, "get"):
            src = await _local_source(source_storage, recording.original_key, Path(workdir))
        dst = Path(workdir) / "out.mp3"
        with ctx.metrics.encode_seconds.time():
            result = await _encode(ctx, src, dst)
        try:
            with ctx.metrics.timed_storage(permanent.name, "put"):
                info = await permanent.put_file(key, dst)
        except StorageError as exc:
            if isinstance(exc, ObjectNotFound):
                raise _Transient(str(exc)) from exc
            raise _Transient(f"permanent storage {permanent.name!r}: {exc}") from exc
    if info.sha256 is not None and info.sha256 != result.sha256:
        raise _Transient(f"stored MP3 checksum mismatch for {key}")
    ctx.metrics.encoded_bytes.inc(result.size)
    if result.recovered:
        bound.warning("recording_recovered", warnings=list(result.warnings))
    stored = await _db(
        ctx,
        functools.partial(
            mark_stored,
            call_uuid=call_uuid,
            storage=permanent.name,
            key=key,
            size=result.size,
            sha256=result.sha256,
            content_type=MP3_CONTENT_TYPE,
            duration_ms=result.duration_ms,
            sample_rate=result.source_sample_rate,
            channels=result.channels_in,
        ),
    )
    if stored is None:
        # Someone else finished it meanwhile; our upload wrote the same key and content.
        current = await _db(ctx, functools.partial(get_recording, call_uuid=call_uuid))
        if current is None or current.status is not RecordingStatus.STORED:
            raise _Transient("recording changed state while encoding")
        stored = current
    return stored


async def _local_source(storage: Storage, key: str, workdir: Path) -> Path:
    try:
        if isinstance(storage, FilesystemStorage):
            path = storage.path_for(key)
            if not await trio.to_thread.run_sync(path.is_file):
                raise ObjectNotFound(key)
            return path
        local = workdir / "in.wav"
        await storage.get_file(key, local)
        return local
    except ObjectNotFound:
        raise
    except StorageError as exc:
        raise _Transient(f"temporary storage {storage.name!r}: {exc}") from exc


async def _encode(ctx: JobContext, src: Path, dst: Path) -> EncodeResult:
    settings = EncodeSettings(bitrate_kbps=ctx.config.bitrate_kbps, quality=ctx.config.quality)

    def progress(_frames: int) -> None:
        # Called between blocks in the worker thread: a cancelled job stops here, so
        # shutdown does not wait for a long encode to finish.
        trio.from_thread.check_cancelled()

    return await trio.to_thread.run_sync(
        lambda: encode_wav_to_mp3(src, dst, settings, progress=progress),
        limiter=ctx.encode_limiter,
    )


def _is_cancellation(exc: BaseException) -> bool:
    """Cancelled, bare or in the group a nursery wraps it in."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[0] is not None
    return isinstance(exc, trio.Cancelled)


async def _while_leased(
    ctx: JobContext,
    delivery: Delivery,
    call_uuid: uuid_module.UUID,
    fn: Callable[[], Awaitable[T]],
) -> T:
    """Run `fn` while renewing the leases; its exception propagates unwrapped."""
    results: list[outcome.Outcome[T]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_renew_lease, ctx, delivery, call_uuid)
        results.append(await outcome.acapture(fn))
        nursery.cancel_scope.cancel()
    return results[0].unwrap()


async def _renew_lease(ctx: JobContext, delivery: Delivery, call_uuid: uuid_module.UUID) -> None:
    """Keep the queue message and the row leased while the encode runs."""
    interval = max(1.0, ctx.lease_s / 3)
    while True:
        await trio.sleep(interval)
        try:
            await delivery.touch()
            await ctx.db.run(
                functools.partial(extend_lease, call_uuid=call_uuid, lease_s=ctx.lease_s)
            )
        except (QueueError, DatabaseError) as exc:
            log.warning("lease_renewal_failed", call_uuid=str(call_uuid), error=str(exc))


async def _remove_original(
    ctx: JobContext, recording: Recording, bound: structlog.typing.FilteringBoundLogger
) -> None:
    """Delete the temporary WAV of a stored recording, then forget it in the row."""
    if recording.original_storage is None or recording.original_key is None:
        return
    try:
        storage = _storage(ctx, recording.original_storage)
        with ctx.metrics.timed_storage(storage.name, "delete"):
            await storage.delete(recording.original_key)
        await _db(ctx, functools.partial(forget_original, call_uuid=recording.call_uuid))
    except (_Transient, StorageError) as exc:
        # Harmless: the recording is stored; the next job for it cleans up.
        bound.warning("original_not_removed", error=str(exc))


async def _not_claimable(
    ctx: JobContext, delivery: Delivery, call_uuid: uuid_module.UUID
) -> JobOutcome:
    try:
        current = await _db(ctx, functools.partial(get_recording, call_uuid=call_uuid))
    except _Transient:
        await _settle(delivery.retry(_retry_delay(ctx.config, delivery.attempts)))
        return JobOutcome.RETRY
    if current is not None and current.status is RecordingStatus.ENCODING:
        # Another encoder holds a live lease: look again when it would have expired.
        await _settle(delivery.retry(ctx.lease_s))
        return JobOutcome.RETRY
    if current is not None and current.status is RecordingStatus.STORED:
        await _remove_original(ctx, current, log.bind(call_uuid=str(call_uuid)))
    await _settle(delivery.ack())  # stored, failed, purged or unknown: nothing to do
    return JobOutcome.NOTHING_TO_DO


async def _transient_failure(
    ctx: JobContext,
    delivery: Delivery,
    recording: Recording,
    error: str,
    bound: structlog.typing.FilteringBoundLogger,
) -> JobOutcome:
    if recording.attempts >= ctx.config.max_attempts:
        bound.error("recording_failed", error=error, attempts=recording.attempts)
        ctx.metrics.failures.labels("gave_up").inc()
        return await _fail(
            ctx,
            delivery,
            recording.call_uuid,
            f"gave up after {recording.attempts} attempts: {error}",
        )
    delay = _retry_delay(ctx.config, recording.attempts)
    ctx.metrics.failures.labels("transient").inc()
    bound.warning("encode_retry", error=error, retry_in_s=round(delay, 1))
    await _release(ctx, delivery, recording.call_uuid, error, delay)
    return JobOutcome.RETRY


async def _release(
    ctx: JobContext, delivery: Delivery, call_uuid: uuid_module.UUID, error: str, delay: float
) -> None:
    try:
        await _db(
            ctx,
            functools.partial(
                release_for_retry, call_uuid=call_uuid, error=error, retry_in_s=delay
            ),
        )
    except _Transient as exc:
        # The row keeps its lease; when it expires the reconciler or redelivery retries.
        log.warning("release_failed", call_uuid=str(call_uuid), error=str(exc))
    await _settle(delivery.retry(delay))


async def _fail(
    ctx: JobContext, delivery: Delivery, call_uuid: uuid_module.UUID, reason: str
) -> JobOutcome:
    try:
        await _db(ctx, functools.partial(mark_failed, call_uuid=call_uuid, error=reason))
    except _Transient as exc:
        log.warning("mark_failed_failed", call_uuid=str(call_uuid), error=str(exc))
        await _settle(delivery.retry(_retry_delay(ctx.config, delivery.attempts)))
        return JobOutcome.RETRY
    await _settle(delivery.ack())
    return JobOutcome.FAILED


async def _settle(action: Awaitable[None]) -> None:
    """Await a queue acknowledgement; a lost one only means a harmless redelivery."""
    try:
        await action
    except QueueError as exc:
        log.warning("queue_settle_failed", error=str(exc))


def _retry_delay(config: EncoderConfig, attempt: int) -> float:
    return exponential_delay(max(1, attempt), base_s=config.retry_base_s, max_s=config.retry_max_s)


def _storage(ctx: JobContext, name: str) -> Storage:
    try:
        return ctx.storages.get(name)
    except StorageError as exc:
        raise _Transient(f"storage {name!r} is not configured") from exc


async def _db(ctx: JobContext, fn: Callable[[Connection], T]) -> T:
    try:
        return await ctx.db.run(fn)
    except DatabaseError as exc:
        raise _Transient(f"database: {exc}") from exc
