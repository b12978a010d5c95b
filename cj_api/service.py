"""The operations of the API, independent of the transport.

gRPC (`cj_api.grpc_service`) and REST (`cj_api.rest`) translate requests into calls
of `CallJournalService` and its answers and `ServiceError`s back. Authorisation,
validation, storage and database work all happen here, once, so both protocols
behave the same by construction.
"""

from __future__ import annotations

import functools
import re
import uuid as uuid_module
from collections.abc import AsyncIterable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import TypeVar

import psycopg
import structlog
import trio

from cj.auth import Principal, require
from cj.config import ApiConfig, Role
from cj.db import Connection, Database, DatabaseUnavailable
from cj.db.audit import MAX_REASON
from cj.db.calls import (
    CallRecord,
    CallState,
    SearchError,
    SearchPage,
    SearchQuery,
    check_calls,
    get_call,
    search_calls,
)
from cj.db.ingest import ForeignCall, UpsertOutcome, upsert_call, upsert_calls
from cj.db.paging import PageTokenError
from cj.db.privacy import PrivacyChange, set_call_privacy
from cj.db.recordings import Created, CreateOutcome, create_recording
from cj.errors import ErrorCode, ServiceError, single_leaf
from cj.model import Call, RecordingStatus
from cj.queue.base import EncodeJob, JobPublisher, QueueError
from cj.storage import (
    ChecksumMismatch,
    Storage,
    StorageError,
    StorageFull,
    Storages,
    StorageUnavailable,
)
from cj_api.audit_buffer import AuditAggregator
from cj_api.download_watch import DownloadRegistry
from cj_api.downloads import DownloadInfo, Downloads, OpenedDownload
from cj_api.holds import LegalHolds
from cj_api.limits import (
    LimitExceeded,
    TokenLimits,
    download_limit,
    search_cost,
    search_limit,
    slow_refusal,
)
from cj_api.limits_table import LimitTable
from cj_api.metrics import ApiMetrics

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_CHECK_UUIDS = 1000
MAX_REJECTIONS_REPORTED = 1000
ADD_CALLS_BATCH = 500
MAX_FILE_NAME = 255
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class UploadHeader:
    call_uuid: uuid_module.UUID
    file_name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadResult:
    duplicate: bool
    size: int
    sha256: str
    status: RecordingStatus


@dataclass(frozen=True)
class Rejection:
    index: int
    uuid: str
    field: str | None
    message: str
    code: ErrorCode = ErrorCode.INVALID_ARGUMENT

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class AddCallsResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def count(self, outcome: UpsertOutcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


@dataclass(frozen=True)
class InvalidCall:
    """An AddCalls item that could not even be turned into a Call."""

    uuid: str
    error: ServiceError


def wav_key(call_uuid: uuid_module.UUID, sha256: str) -> str:
    """Where an uploaded original goes in temporary storage (unique per content).

    Flat below a 256-way fan-out: a new upload creates no directory, which on a
    filesystem storage saves the fsyncs of new parents. Rows keep their own key, so
    this may change between releases.
    """
    return f"wav/{str(call_uuid)[:2]}/{call_uuid}-{sha256[:16]}.wav"


class CallJournalService:
    def __init__(
        self,
        *,
        db: Database,
        read_db: Database | None = None,
        storages: Storages,
        publisher: JobPublisher,
        config: ApiConfig,
        metrics: ApiMetrics,
        registry: DownloadRegistry | None = None,
        aggregator: AuditAggregator | None = None,
        limits_table: LimitTable | None = None,
    ) -> None:
        self._db = db
        # Reads have their own pool: searches must not wait behind a burst of commits.
        self._read_db = read_db or db
        # Bulk streams take turns: a backlog of many agents at once must leave the event
        # loop room for searches (the streams wait in HTTP/2 flow control meanwhile).
        self._bulk_ingest = trio.CapacityLimiter(config.ingest_streams)
        self._storages = storages
        self.holds = LegalHolds(db)  # admin: legal holds (cj_api/holds.py)
        self._publisher = publisher
        self._config = config
        self._metrics = metrics
        self._search_limits = TokenLimits("search", search_limit(config), table=limits_table)
        self.downloads = Downloads(
            db=db,
            # The primary: a replica behind a call made private would still say public.
            read_db=db,
            storages=storages,
            metrics=metrics,
            limits=TokenLimits("download", download_limit(config), table=limits_table),
            refusal_delay_s=config.limit_refusal_delay_s,
            registry=registry,
            aggregator=aggregator,
        )

    # --- ingest ------------------------------------------------------------------------

    async def add_call(self, principal: Principal, call: Call) -> UpsertOutcome:
        """Upsert one call of one of the principal's sources (DESIGN §9: a call belongs
        to the source that first stored it; private is sticky)."""
        require(principal, Role.AGENT)
        owned = _owned(call, principal, "call.source")
        result = await self._run(
            functools.partial(
                upsert_call, call=owned, allowed=principal.sources, actor=principal.name
            )
        )
        if isinstance(result, ForeignCall):
            _log_foreign(principal, call.uuid, result)
            raise _foreign(principal, call.uuid)
        return result

    async def add_calls(
        self, principal: Principal, items: AsyncIterable[Call | InvalidCall]
    ) -> AddCallsResult:
        """Upsert a stream of calls in batches; invalid items are reported, not fatal."""
        require(principal, Role.AGENT)
        async with self._bulk_ingest:
            return await self._add_calls(principal, items)

    async def _add_calls(
        self, principal: Principal, items: AsyncIterable[Call | InvalidCall]
    ) -> AddCallsResult:
        """Read the stream into batches while the batch before is written: one batch in
        the database, one filling, in order (each its own transaction)."""
        result = AddCallsResult()

        def reject(index: int, uuid: str, error: ServiceError) -> None:
            result.rejected += 1
            if len(result.rejections) < MAX_REJECTIONS_REPORTED:
                result.rejections.append(
                    Rejection(index, uuid, error.field, error.message, error.code)
                )

        async def write(batch: list[tuple[int, Call]]) -> None:
            outcomes = await self._run(
                functools.partial(
                    upsert_calls,
                    calls=[call for _, call in batch],
                    allowed=principal.sources,
                    actor=principal.name,
                )
            )
            for (index, call), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, ForeignCall):
                    _log_foreign(principal, call.uuid, outcome)
                    reject(index, str(call.uuid), _foreign(principal, call.uuid))
                else:
                    result.count(outcome)

        async def writer(batches: trio.MemoryReceiveChannel[list[tuple[int, Call]]]) -> None:
            async with batches:
                async for batch in batches:
                    await write(batch)

        async def read(batches: trio.MemorySendChannel[list[tuple[int, Call]]]) -> None:
            async with batches:
                batch: list[tuple[int, Call]] = []
                index = 0
                async for item in items:
                    if isinstance(item, InvalidCall):
                        reject(index, item.uuid, item.error)
                    else:
                        try:
                            batch.append((index, _owned(item, principal, "call.source")))
                        except ServiceError as exc:
                            reject(index, str(item.uuid), exc)
                        if len(batch) >= ADD_CALLS_BATCH:
                            await batches.send(batch)  # waits while the one before is written
                            batch = []
                    index += 1
                if batch:
                    await batches.send(batch)

        send, receive = trio.open_memory_channel[list[tuple[int, Call]]](0)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, receive)
                await read(send)
        except BaseExceptionGroup as group:  # the reader's or the writer's error, as raised
            raise single_leaf(group) from None
        result.rejections.sort(key=lambda rejection: rejection.index)
        return result

    async def check_calls(
        self, principal: Principal, uuids: list[uuid_module.UUID]
    ) -> list[CallState]:
        """The state of each call; calls of other sources are answered as not existing."""
        require(principal, Role.AGENT)
        if not 1 <= len(uuids) <= MAX_CHECK_UUIDS:
            raise ServiceError.invalid("uuids", f"give 1 to {MAX_CHECK_UUIDS} uuids")
        return await self._run(  # on the primary: an agent must see its own writes
            functools.partial(check_calls, uuids=uuids, sources=principal.sources)
        )

    async def set_privacy(
        self, principal: Principal, call_uuid: uuid_module.UUID, *, private: bool, reason: str
    ) -> PrivacyChange:
        """Release a private call or protect one: role admin only, with a reason, audited."""
        require(principal, Role.ADMIN)
        reason = reason.strip()
        if not reason:
            raise ServiceError.invalid("reason", "is required: say why the privacy changes")
        if len(reason) > MAX_REASON:
            raise ServiceError.invalid("reason", f"must be at most {MAX_REASON} characters")
        if "\x00" in reason:
            raise ServiceError.invalid("reason", "contains a NUL character")
        change = await self._run(
            functools.partial(
                set_call_privacy,
                call_uuid=call_uuid,
                private=private,
                actor=principal.name,
                reason=reason,
            )
        )
        if change is None:
            raise ServiceError.not_found(f"no call {call_uuid}")
        log.info(
            "call_privacy_set",
            call_uuid=str(call_uuid),
            private=private,
            changed=change.changed,
            actor=principal.name,
        )
        return change

    async def upload_recording(
        self, principal: Principal, header: UploadHeader, chunks: AsyncIterable[bytes]
    ) -> UploadResult:
        """Store an original recording durably, record it, and queue its encoding.

        Nothing is left behind when the upload does not complete: the temporary object
        is discarded unless size and sha256 match and the row is committed.
        """
        require(principal, Role.AGENT)
        _check_header(header, self._config.max_recording_bytes)
        record = await self._run(functools.partial(get_call, call_uuid=header.call_uuid))
        if record is None:
            raise ServiceError.failed_precondition(
                f"call {header.call_uuid} does not exist: add the call before its recording",
                field="call_uuid",
            )
        if not principal.may_write(record.call.source):
            # Before a byte is stored, and before "duplicate" could confirm a checksum.
            # The source of a stored call never changes, so this cannot go stale.
            _log_foreign(principal, header.call_uuid, ForeignCall(record.call.source))
            raise _foreign(principal, header.call_uuid, field="call_uuid")
        existing = record.recording
        if existing is not None:
            if existing.original_sha256 == header.sha256 and existing.original_size == header.size:
                await _drain(chunks, header.size)  # answer after the client finished sending
                return UploadResult(True, existing.original_size, header.sha256, existing.status)
            raise _conflict(header.call_uuid)

        temporary = self._storages.temporary
        key = wav_key(header.call_uuid, header.sha256)
        await self._receive(temporary, key, header, chunks)
        job = EncodeJob(header.call_uuid)
        enqueue = self._publisher.transactional()

        def insert_row(conn: Connection, key: str) -> Created:
            created = create_recording(
                conn,
                header.call_uuid,
                original_name=header.file_name,
                size=header.size,
                sha256=header.sha256,
                storage=temporary.name,
                key=key,
            )
            if enqueue is not None and created.outcome is CreateOutcome.CREATED:
                enqueue(conn, [job])  # one commit: the job exists iff the row does
            return created

        try:
            created = await self._run(functools.partial(insert_row, key=key))
        except BaseException:
            # A cancelled call (the client gave up) may still have committed the row: the
            # query finishes in its thread. Deleting the file under a committed row would
            # lose the recording, and a re-upload would then be answered "duplicate".
            if not await self._recorded_under(header.call_uuid, key):
                await _discard(temporary, key)
            raise
        if created.outcome is not CreateOutcome.CREATED:
            # Another upload of this call won the race.
            if created.recording.original_key != key:
                await _discard(temporary, key)
            if created.outcome is CreateOutcome.CONFLICT:
                raise _conflict(header.call_uuid)
            return UploadResult(True, header.size, header.sha256, created.recording.status)
        self._metrics.uploaded_bytes.inc(header.size)
        if enqueue is None:
            try:
                await self._publisher.publish(job)
            except QueueError as exc:
                # The row is committed: the reconciler will queue it; not the client's problem.
                log.warning(
                    "encode_job_not_published", call_uuid=str(header.call_uuid), error=str(exc)
                )
        log.info(
            "recording_uploaded",
            call_uuid=str(header.call_uuid),
            size=header.size,
            agent=principal.name,
        )
        return UploadResult(False, header.size, header.sha256, RecordingStatus.UPLOADED)

    async def _receive(
        self, storage: Storage, key: str, header: UploadHeader, chunks: AsyncIterable[bytes]
    ) -> None:
        try:
            async with storage.open_upload(key, expected_sha256=header.sha256) as upload:
                async for chunk in chunks:
                    if upload.bytes_written + len(chunk) > header.size:
                        raise ServiceError.invalid(
                            "size", f"received more than the declared {header.size} bytes"
                        )
                    await upload.write(chunk)
                if upload.bytes_written != header.size:
                    raise ServiceError.invalid(
                        "size",
                        f"upload ended after {upload.bytes_written} of the declared "
                        f"{header.size} bytes",
                    )
                await upload.commit()
        except ChecksumMismatch:
            raise ServiceError.invalid(
                "sha256", "the received bytes do not match the declared sha256"
            ) from None
        except StorageFull:
            raise ServiceError.unavailable("temporary storage is full; retry later") from None
        except StorageError as exc:
            raise _storage_error(exc) from exc

    # --- reading -----------------------------------------------------------------------

    async def search(self, principal: Principal, build: Callable[[], SearchQuery]) -> SearchPage:
        """Run a search; `build` constructs the query so its validation errors map here."""
        return await self.search_as(principal, build, search_calls)

    async def search_as(
        self,
        principal: Principal,
        build: Callable[[], SearchQuery],
        fetch: Callable[[Connection, SearchQuery], T],
    ) -> T:
        """`search`, with the page in the shape `fetch` answers (`cj.db.wire`: the REST
        JSON, or rows for protobuf); the same checks, limits and database either way."""
        require(principal, Role.READER)
        try:
            query = build()
            query.cursor()  # validate the page token before touching the database
        except SearchError as exc:
            raise ServiceError.invalid(exc.field, exc.reason) from None
        except PageTokenError as exc:
            raise ServiceError.invalid("page_token", str(exc)) from None
        try:
            with self._search_limits.admit(principal.name, search_cost(query.limit)):
                return await self._run(lambda conn: fetch(conn, query), read=True)
        except LimitExceeded as exc:  # only admit() raises it
            await slow_refusal(exc, self._config.limit_refusal_delay_s)
            raise

    async def get_call(self, principal: Principal, call_uuid: uuid_module.UUID) -> CallRecord:
        require(principal, Role.READER)
        record = await self._run(functools.partial(get_call, call_uuid=call_uuid), read=True)
        if record is None:
            raise ServiceError.not_found(f"no call {call_uuid}")
        return record

    async def prepare_download(
        self,
        principal: Principal,
        call_uuid: uuid_module.UUID,
        address: str = "",
        *,
        action: str = "download",
    ) -> DownloadInfo:
        """Decide what a download of `call_uuid` sends, or refuse it (see cj_api.downloads);
        `action` names it in the audit log: "download", or "export" for a ZIP."""
        return await self.downloads.prepare(principal, call_uuid, address, action)

    def open_download(
        self,
        principal: Principal,
        info: DownloadInfo,
        start: int = 0,
        end: int | None = None,
        address: str = "",
    ) -> AbstractAsyncContextManager[OpenedDownload]:
        """Open bytes `[start, end)` of the prepared download; audited once they flow."""
        return self.downloads.open(principal, info, start, end, address)

    # --- helpers -----------------------------------------------------------------------

    async def ready(self) -> None:
        """Raise ServiceError UNAVAILABLE unless the database answers."""
        try:
            await self._read_db.check()
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable(str(exc)) from None

    async def _recorded_under(self, call_uuid: uuid_module.UUID, key: str) -> bool:
        """Whether the call's recording row points at `key`; True when unsure (keeping an
        orphan file is harmless, deleting a recorded one is not)."""
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                record = await self._db.run(functools.partial(get_call, call_uuid=call_uuid))
            except Exception:
                return True
            return (
                record is not None
                and record.recording is not None
                and record.recording.original_key == key
            )
        return True

    async def _run(self, fn: Callable[[Connection], T], *, read: bool = False) -> T:
        try:
            # A read is one statement per window of time (cj.db.windows): no transaction.
            return await (self._read_db if read else self._db).run(fn, autocommit=read)
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc
        except psycopg.errors.ForeignKeyViolation:
            raise ServiceError.failed_precondition(
                "the call does not exist: add the call before its recording"
            ) from None
        except psycopg.errors.QueryCanceled:  # statement_timeout
            raise ServiceError.unavailable("the database took too long; retry later") from None


def _owned(call: Call, principal: Principal, field: str) -> Call:
    """The call with its source: the principal's first when empty; PERMISSION_DENIED
    when it names a source the principal may not write."""
    if not call.source:
        if not principal.sources:
            raise ServiceError.permission_denied(
                f"token {principal.name!r} has no source to write calls for", field=field
            )
        return replace(call, source=principal.sources[0])
    if not principal.may_write(call.source):
        raise ServiceError.permission_denied(
            f"token {principal.name!r} may not write calls of source {call.source[:64]!r}; "
            f"its sources: {', '.join(principal.sources)}",
            field=field,
        )
    return call


def _foreign(
    principal: Principal, call_uuid: uuid_module.UUID, field: str = "call.uuid"
) -> ServiceError:
    # Which source owns it is not said: another PBX's calls are none of this token's
    # business (the refusal itself cannot help telling that the uuid is taken).
    return ServiceError.permission_denied(
        f"call {call_uuid} belongs to another source; token {principal.name!r} may write "
        f"only calls of: {', '.join(principal.sources)}",
        field=field,
    )


def _log_foreign(principal: Principal, call_uuid: uuid_module.UUID, found: ForeignCall) -> None:
    log.warning(
        "foreign_call_refused", call_uuid=str(call_uuid), token=principal.name, owner=found.owner
    )


def _check_header(header: UploadHeader, max_bytes: int) -> None:
    name = header.file_name
    if not name or len(name) > MAX_FILE_NAME:
        raise ServiceError.invalid("file_name", f"must be 1 to {MAX_FILE_NAME} characters")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise ServiceError.invalid("file_name", "must be a plain file name, without a path")
    if header.size < 0:
        raise ServiceError.invalid("size", "must not be negative")
    if header.size > max_bytes:
        raise ServiceError.resource_exhausted(
            f"{header.size} bytes is over the limit of {max_bytes} bytes per recording",
            field="size",
        )
    if not _SHA256.match(header.sha256):
        raise ServiceError.invalid("sha256", "must be 64 lowercase hexadecimal digits")


def _conflict(call_uuid: uuid_module.UUID) -> ServiceError:
    return ServiceError.already_exists(
        f"call {call_uuid} already has a different recording (another sha256)"
    )


def _storage_error(exc: StorageError) -> ServiceError:
    if isinstance(exc, StorageUnavailable):
        return ServiceError.unavailable("storage unavailable; retry later")
    log.error("storage_error", error=str(exc), kind=type(exc).__name__)
    return ServiceError.internal("storage error")


async def _discard(storage: Storage, key: str) -> None:
    with trio.CancelScope(shield=True):
        try:
            await storage.delete(key)
        except StorageError as exc:
            log.warning("orphan_upload_not_deleted", key=key, error=str(exc))


async def _drain(chunks: AsyncIterable[bytes], declared: int) -> None:
    """Read and drop an upload we already have, holding the client to its declared size."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > declared:
            raise ServiceError.invalid("size", f"received more than the declared {declared} bytes")
