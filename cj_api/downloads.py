"""Downloads of recordings: who may, what is sent, and when it stops; every attempt audited.

The order of a download, the same for REST and gRPC:

1. `prepare`: the reader role, the token's request rate, then the policy (the call
   exists, has a recording, is not private, not purged). A refusal is audited with its
   result (`permission_denied`, `not_found`, `gone` …); a refusal by the rate limit is
   counted by the `AuditAggregator` (result `rate_limited`).
2. `open`: a concurrent slot of the token (`concurrency_limited` when none is free), a
   `Watch` in the process's `DownloadRegistry`, the storage stream and its first bytes;
   only then the `allowed` audit row, written in the transaction that checks the call
   once more. If the object is gone meanwhile (the encoder moved the WAV to its MP3),
   the fresh row is located and opened instead (a whole download switches to the MP3;
   a range of the old form is refused with UNAVAILABLE and a retry-after hint). A
   failure before the first bytes is audited with its result, never as `allowed`.
3. The bytes go out in pieces of `PIECE_BYTES`; before each piece the watch is
   checked, and a revoked download (call turned private, recording purged or deleted)
   stops there: the audit gets a `cut` row with the bytes sent, the client
   PERMISSION_DENIED / GONE (gRPC status; on REST the body ends short of its length).

Refused authentication (no token, a wrong one, an agent's) is audited by the
transports through `note_refused_authentication`, aggregated like rate limits.
"""

from __future__ import annotations

import functools
import uuid as uuid_module
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from cj.auth import Principal, require
from cj.config import Role
from cj.db import Database, DatabaseUnavailable
from cj.db.audit import AggregateCount, AggregateKey, audit, audit_aggregated
from cj.db.calls import get_call
from cj.db.downloads import audit_download_start
from cj.errors import ServiceError
from cj.model import Recording, RecordingStatus
from cj.storage import (
    InvalidRange,
    ObjectNotFound,
    Storage,
    StorageError,
    Storages,
    StorageUnavailable,
)
from cj.storage.base import resolve_range
from cj_api.audit_buffer import AuditAggregator
from cj_api.download_watch import DownloadRegistry, Watch
from cj_api.limits import LimitExceeded, TokenLimits, slow_refusal
from cj_api.metrics import ApiMetrics

log = structlog.get_logger(__name__)

PIECE_BYTES = 64 * 1024  # the watch is checked before each piece sent
LOCATE_ATTEMPTS = 3  # the encoder may move the file between our reads
HANDOVER_RETRY_S = 1.0
_AUDIT_CUT_TIMEOUT_S = 5.0
# Actors of attempts without a usable token (token names cannot contain parentheses).
NO_TOKEN_ACTOR = "(none)"
BAD_TOKEN_ACTOR = "(invalid)"


@dataclass(frozen=True)
class DownloadInfo:
    """What a download sends: the current form of a call's recording."""

    call_uuid: uuid_module.UUID
    content_type: str
    size: int
    sha256: str | None
    duration_ms: int | None
    file_name: str
    storage: Storage
    key: str
    action: str = "download"  # in the audit log: "download", or "export" for a ZIP

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"' if self.sha256 else f'"{self.key}:{self.size}"'


@dataclass(frozen=True)
class OpenedDownload:
    """A download whose first bytes are ready: `info` is what is really sent (it may be
    fresher than the prepared one), `chunks` its bytes from the requested start."""

    info: DownloadInfo
    start: int
    end: int
    chunks: AsyncGenerator[bytes, None]


class Downloads:
    def __init__(
        self,
        *,
        db: Database,
        read_db: Database,
        storages: Storages,
        metrics: ApiMetrics,
        limits: TokenLimits,
        registry: DownloadRegistry | None = None,
        aggregator: AuditAggregator | None = None,
        refusal_delay_s: float = 0.0,
    ) -> None:
        self._refusal_delay_s = refusal_delay_s
        self._db = db
        self._read_db = read_db
        self._storages = storages
        self._metrics = metrics
        self._limits = limits
        self.registry = registry if registry is not None else DownloadRegistry()
        self._aggregator = aggregator

    # --- 1. prepare ----------------------------------------------------------------------

    async def prepare(
        self,
        principal: Principal,
        call_uuid: uuid_module.UUID,
        address: str = "",
        action: str = "download",
    ) -> DownloadInfo:
        """Decide what a download of `call_uuid` sends, or refuse it (audited as `action`:
        "download", or "export" for a recording sent inside a ZIP)."""
        try:
            require(principal, Role.READER)
        except ServiceError as exc:
            await self.note_refused_authentication(principal, True, exc, address, call_uuid)
            raise
        try:
            if action == "download":  # an export is bounded by api.export_concurrency
                self._limits.take(principal.name)
        except LimitExceeded as exc:
            await self._note(principal.name, address, "rate_limited", call_uuid, action=action)
            await slow_refusal(exc, self._refusal_delay_s)
            raise
        try:
            return replace(await self._locate(call_uuid), action=action)
        except ServiceError as exc:
            await self._audit(
                principal, call_uuid, exc.code.value.lower(), exc.message, address, action=action
            )
            raise

    async def audit_without_body(
        self, principal: Principal, info: DownloadInfo, address: str, how: str
    ) -> None:
        """Audit an answer that sends no bytes but reveals the metadata (HEAD, 304)."""
        await self._audit(principal, info.call_uuid, "allowed", info.content_type, address, how)

    async def audit_refusal(
        self, principal: Principal, call_uuid: uuid_module.UUID, error: ServiceError, address: str
    ) -> None:
        """Audit a download refused by the transport (an unsatisfiable range)."""
        await self._audit(principal, call_uuid, error.code.value.lower(), error.message, address)

    async def note_refused_authentication(
        self,
        principal: Principal | None,
        credentials_sent: bool,
        error: ServiceError,
        address: str,
        call_uuid: uuid_module.UUID | None = None,
    ) -> None:
        """Count a download refused for its credentials (no token, wrong one, no role)."""
        if principal is not None:
            actor = principal.name
        else:
            actor = BAD_TOKEN_ACTOR if credentials_sent else NO_TOKEN_ACTOR
        await self._note(actor, address, error.code.value.lower(), call_uuid, error.message)

    # --- 2. open -------------------------------------------------------------------------

    @asynccontextmanager
    async def open(
        self,
        principal: Principal,
        info: DownloadInfo,
        start: int = 0,
        end: int | None = None,
        address: str = "",
    ) -> AsyncIterator[OpenedDownload]:
        """Open bytes `[start, end)` (`end` None: to the end) of the prepared download."""
        try:
            held = self._limits.hold(principal.name) if info.action == "download" else nullcontext()
            with held, self.registry.watch(info.call_uuid) as watch:
                async with AsyncExitStack() as stack:
                    opened = await self._open_first(
                        stack, principal, info, start, end, address, watch
                    )
                    try:
                        yield opened
                    finally:
                        with trio.CancelScope(shield=True):
                            await opened.chunks.aclose()  # the sender may stop early
        except LimitExceeded as exc:
            await self._note(principal.name, address, "concurrency_limited", info.call_uuid)
            await slow_refusal(exc, self._refusal_delay_s)
            raise

    async def _open_first(
        self,
        stack: AsyncExitStack,
        principal: Principal,
        info: DownloadInfo,
        start: int,
        end: int | None,
        address: str,
        watch: Watch,
    ) -> OpenedDownload:
        """Open the stream and read its first bytes, following the recording if it moved;
        then audit `allowed`. Failures before that are audited with their result."""
        whole = start == 0 and (end is None or end == info.size)
        try:
            for attempt in range(LOCATE_ATTEMPTS):
                if attempt:
                    fresh = await self._locate(info.call_uuid)
                    if fresh.etag != info.etag and not whole:
                        raise ServiceError.unavailable(
                            f"the recording of call {info.call_uuid} changed form during "
                            "the request; ask again for the new one",
                            retry_after_s=HANDOVER_RETRY_S,
                        )
                    info = replace(fresh, action=info.action)
                stop = info.size if whole or end is None else end
                try:
                    resolve_range(start, stop, info.size)
                except InvalidRange as exc:
                    raise ServiceError.out_of_range("offset", str(exc)) from None
                attempt_stack = AsyncExitStack()
                try:
                    stream = await attempt_stack.enter_async_context(
                        info.storage.open_read(info.key, start, stop)
                    )
                    first = await anext(stream, b"")
                except ObjectNotFound:
                    with trio.CancelScope(shield=True):
                        await attempt_stack.aclose()
                    continue
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await attempt_stack.aclose()
                    raise
                stack.push_async_callback(_close_shielded, attempt_stack)
                await self._audit_start(principal, info, address, start)
                chunks = self._pieces(first, stream, watch, info, principal, address)
                return OpenedDownload(info, start, stop, chunks)
            raise ServiceError.unavailable(
                f"the recording of call {info.call_uuid} is being moved; retry in a moment",
                retry_after_s=HANDOVER_RETRY_S,
            )
        except StorageError as exc:
            error = _storage_error(exc)
            await self._audit(
                principal,
                info.call_uuid,
                error.code.value.lower(),
                str(exc),
                address,
                action=info.action,
            )
            raise error from exc
        except ServiceError as exc:
            if not getattr(exc, "audited", False):
                result = exc.code.value.lower()
                await self._audit(principal, info.call_uuid, result, exc.message, address)
            raise

    async def _audit_start(
        self, principal: Principal, info: DownloadInfo, address: str, start: int
    ) -> None:
        detail: dict[str, Any] = {"detail": info.content_type}
        if start:
            detail["offset"] = start
        try:
            reason = await self._db.run(
                functools.partial(
                    audit_download_start,
                    actor=principal.name,
                    action=info.action,
                    call_uuid=info.call_uuid,
                    address=address,
                    detail=detail,
                )
            )
        except DatabaseUnavailable as exc:
            # No audit, no download: the rule must hold even when the database is down.
            raise _audited(ServiceError.unavailable("database unavailable; retry later")) from exc
        if reason is not None:
            raise _audited(_revoked_error(reason, info.call_uuid, None))

    # --- 3. send -------------------------------------------------------------------------

    async def _pieces(
        self,
        first: bytes,
        stream: AsyncIterator[bytes],
        watch: Watch,
        info: DownloadInfo,
        principal: Principal,
        address: str,
    ) -> AsyncGenerator[bytes, None]:
        sent = 0
        chunk: bytes | None = first
        while chunk:
            for offset in range(0, len(chunk), PIECE_BYTES):
                if watch.revoked is not None:
                    await self._audit_end(principal, info, address, "cut", watch.revoked, sent)
                    raise _revoked_error(watch.revoked, info.call_uuid, sent)
                piece = chunk[offset : offset + PIECE_BYTES]
                yield piece
                sent += len(piece)
                self._metrics.downloaded_bytes.inc(len(piece))
            try:
                chunk = await anext(stream, None)
            except StorageError as exc:
                error = _storage_error(exc)
                await self._audit_end(
                    principal, info, address, "interrupted", error.code.value.lower(), sent
                )
                raise error from exc

    async def _audit_end(
        self,
        principal: Principal,
        info: DownloadInfo,
        address: str,
        result: str,
        reason: str,
        sent: int,
    ) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(_AUDIT_CUT_TIMEOUT_S):
            try:
                await self._db.run(
                    functools.partial(
                        audit,
                        actor=principal.name,
                        action=info.action,
                        call_uuid=info.call_uuid,
                        result=result,
                        detail={"reason": reason, "bytes_sent": sent, "size": info.size},
                        address=address,
                    )
                )
            except Exception as exc:
                log.error(
                    "download_end_not_audited",
                    call_uuid=str(info.call_uuid),
                    result=result,
                    error=str(exc),
                )

    # --- helpers -------------------------------------------------------------------------

    async def _locate(self, call_uuid: uuid_module.UUID) -> DownloadInfo:
        for _ in range(LOCATE_ATTEMPTS):
            record = await self._read(functools.partial(get_call, call_uuid=call_uuid))
            if record is None:
                raise ServiceError.not_found(f"no call {call_uuid}")
            recording = record.recording
            if recording is None:
                raise ServiceError.not_found(f"call {call_uuid} has no recording")
            if record.call.private:
                raise ServiceError.permission_denied(
                    f"the recording of call {call_uuid} is private and cannot be downloaded"
                )
            if recording.status is RecordingStatus.PURGED:
                raise ServiceError.gone(f"the recording of call {call_uuid} was purged")
            info = self._download_info(recording)
            if info is None:
                continue
            try:
                stat = await info.storage.stat(info.key)
            except ObjectNotFound:
                continue
            except StorageError as exc:
                raise _storage_error(exc) from exc
            if stat.size != info.size:
                log.error("recording_size_mismatch", call_uuid=str(call_uuid), key=info.key)
                raise ServiceError.data_loss(
                    f"the stored recording of call {call_uuid} does not have its recorded size"
                )
            return info
        raise ServiceError.unavailable(
            f"the recording of call {call_uuid} is being moved; retry in a moment",
            retry_after_s=HANDOVER_RETRY_S,
        )

    def _download_info(self, recording: Recording) -> DownloadInfo | None:
        if recording.status is RecordingStatus.STORED:
            if recording.storage is None or recording.key is None or recording.size is None:
                return None
            storage_name, key, size = recording.storage, recording.key, recording.size
            content_type, sha256, suffix = "audio/mpeg", recording.sha256, "mp3"
        else:
            if recording.original_storage is None or recording.original_key is None:
                return None
            storage_name, key = recording.original_storage, recording.original_key
            size, sha256 = recording.original_size, recording.original_sha256
            content_type, suffix = "audio/wav", "wav"
        try:
            storage = self._storages.get(storage_name)
        except StorageError:
            log.error("recording_in_unknown_storage", storage=storage_name)
            raise ServiceError.unavailable(
                f"the recording is in storage {storage_name!r}, which is not configured"
            ) from None
        return DownloadInfo(
            call_uuid=recording.call_uuid,
            content_type=content_type,
            size=size,
            sha256=sha256,
            duration_ms=recording.duration_ms,
            file_name=f"{recording.call_uuid}.{suffix}",
            storage=storage,
            key=key,
        )

    async def _read(self, fn: Any) -> Any:
        try:
            return await self._read_db.run(fn)
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc

    async def _audit(
        self,
        principal: Principal,
        call_uuid: uuid_module.UUID,
        result: str,
        detail: str,
        address: str,
        how: str | None = None,
        *,
        action: str = "download",
    ) -> None:
        extra: dict[str, Any] = {"detail": detail}
        if how is not None:
            extra["method"] = how
        try:
            await self._db.run(
                functools.partial(
                    audit,
                    actor=principal.name,
                    action=action,
                    call_uuid=call_uuid,
                    result=result,
                    detail=extra,
                    address=address,
                )
            )
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc

    async def _note(
        self,
        actor: str,
        address: str,
        result: str,
        call_uuid: uuid_module.UUID | None,
        message: str | None = None,
        *,
        action: str = "download",
    ) -> None:
        detail: dict[str, Any] = {}
        if call_uuid is not None:
            detail["last_call_uuid"] = str(call_uuid)
        if message is not None:
            detail["detail"] = message
        if self._aggregator is not None:
            self._aggregator.note(
                action=action, actor=actor, address=address, result=result, detail=detail
            )
            return
        now = datetime.now(UTC)
        key = AggregateKey(action, actor, address, result, now.replace(second=0, microsecond=0))
        counts = {key: AggregateCount(1, now, detail)}
        try:
            await self._db.run(lambda conn: audit_aggregated(conn, counts))
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc


def _audited(error: ServiceError) -> ServiceError:
    error.audited = True  # type: ignore[attr-defined]
    return error


def _revoked_error(reason: str, call_uuid: uuid_module.UUID, sent: int | None) -> ServiceError:
    after = "" if sent is None else f" (stopped after {sent} bytes)"
    if reason == "private":
        return ServiceError.permission_denied(
            f"the recording of call {call_uuid} became private and cannot be downloaded{after}"
        )
    if reason == "purged":
        return ServiceError.gone(f"the recording of call {call_uuid} was purged{after}")
    return ServiceError.not_found(f"the recording of call {call_uuid} was deleted{after}")


def _storage_error(exc: StorageError) -> ServiceError:
    if isinstance(exc, (StorageUnavailable, ObjectNotFound)):
        # ObjectNotFound mid-stream: the object went while we read it (the encoder's
        # handover); another request finds its new place.
        return ServiceError.unavailable(
            "storage unavailable; retry later", retry_after_s=HANDOVER_RETRY_S
        )
    log.error("storage_error", error=str(exc), kind=type(exc).__name__)
    return ServiceError.internal("storage error")


async def _close_shielded(stack: AsyncExitStack) -> None:
    with trio.CancelScope(shield=True):
        await stack.aclose()


__all__ = ["DownloadInfo", "Downloads", "OpenedDownload"]
