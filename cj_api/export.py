"""Bulk export: the recordings of a search as one streamed ZIP.

`GET /api/v1/calls:export?<the filters of a search>` (reader role) answers a ZIP made
while it is sent:

- one member per recording that may be downloaded, named
  `<started_at UTC, 20261201T101500Z>_<caller digits>_<destination digits>_<uuid>.mp3`
  (`.wav` for a recording not encoded yet), stored, not deflated (MP3 does not shrink);
- `manifest.csv` and `manifest.json` last: every call the search matched, with its
  status: `included`, `withheld-private`, `no-recording` or `unavailable`.

The rules are the service's own: pages come from `CallJournalService.search`, each
recording from `prepare_download` (which refuses private calls and audits every attempt,
here with action "export") and `open_download`. Private calls are listed as withheld and
their bytes are never read.

Memory stays bounded: one page of search results, one storage chunk (1 MiB) at a time,
and the manifests spooled to a temporary file past 1 MiB. What grows is the ZIP's
central directory, kept until the end (~0.5 KB per member); `api.export_max_calls`
bounds it: a search matching more is cut there, and manifest.json says `"truncated":
true`. Members use ZIP64 when they need it (stdlib `zipfile`, written to a non-seekable
sink, so sizes and CRCs follow each member in a data descriptor).

A storage failure in the middle of a member cannot be taken back (its header is sent):
the answer is then cut short, which every ZIP reader and HTTP client reports.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import IO, Any, Protocol

import structlog
import trio
from quart.wrappers.response import ResponseBody

from cj.auth import Principal
from cj.db.calls import CallRecord, SearchQuery
from cj.errors import ErrorCode, ServiceError
from cj_api.downloads import DownloadInfo
from cj_api.rest_primitives import RestError, format_timestamp
from cj_api.search_codec import SEARCH_PARAMETERS, search_query_from_params
from cj_api.service import CallJournalService

__all__ = [
    "EXPORT_PAGE_SIZE",
    "MANIFEST_FIELDS",
    "CallsExport",
    "Capacity",
    "ExportStatus",
    "export_query_from_params",
    "member_name",
]

log = structlog.get_logger(__name__)

EXPORT_PAGE_SIZE = 100  # search results held at once
MANIFEST_SPOOL_BYTES = 1024 * 1024  # manifests past this go to a temporary file
COPY_BYTES = 256 * 1024
EXPORT_PARAMETERS = tuple(p for p in SEARCH_PARAMETERS if p not in ("limit", "page_token"))
MANIFEST_FIELDS = (
    "uuid",
    "started_at",
    "caller_number",
    "caller_name",
    "destination_number",
    "direction",
    "duration_s",
    "billsec",
    "status",
    "file",
    "size",
    "sha256",
    "detail",
)
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9 ().-]*$")


class Capacity(Protocol):
    """What an export uses of a trio.CapacityLimiter (cj_api.limits.SharedCapacity is
    one too: its places are counted across every worker)."""

    @property
    def total_tokens(self) -> int | float: ...

    @property
    def available_tokens(self) -> int | float: ...

    def acquire_on_behalf_of_nowait(self, borrower: Any) -> None: ...

    def release_on_behalf_of(self, borrower: Any) -> None: ...


class ExportStatus(StrEnum):
    INCLUDED = "included"
    WITHHELD_PRIVATE = "withheld-private"
    NO_RECORDING = "no-recording"
    UNAVAILABLE = "unavailable"


def export_query_from_params(params: Mapping[str, Sequence[str]]) -> SearchQuery:
    """The search of an export: the filters of `GET /api/v1/calls`, without paging
    (an export takes every call matched)."""
    for name in ("limit", "page_token"):
        if name in params:
            raise ServiceError.invalid(
                name,
                f"is not a parameter of an export, which takes every call matched "
                f"(known: {', '.join(EXPORT_PARAMETERS)})",
            )
    query = search_query_from_params(params)
    return replace(query, limit=EXPORT_PAGE_SIZE)


def member_name(record: CallRecord, suffix: str) -> str:
    """`20261201T101500Z_79002800421_1001_<uuid>.mp3`: sorts by time, says who, unique."""
    call = record.call
    started = call.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    caller = call.caller.digits or "unknown"
    destination = call.destination.digits or "unknown"
    return f"{started}_{caller}_{destination}_{call.uuid}.{suffix}"


@dataclass
class _Entry:
    record: CallRecord
    status: ExportStatus
    file: str = ""
    size: int | None = None
    sha256: str | None = None
    detail: str = ""
    info: DownloadInfo | None = None

    def as_json(self) -> dict[str, Any]:
        call = self.record.call
        return {
            "uuid": str(call.uuid),
            "started_at": format_timestamp(call.started_at),
            "caller_number": call.caller.raw,
            "caller_name": call.caller_name,
            "destination_number": call.destination.raw,
            "direction": call.direction.value,
            "duration_s": call.duration_s,
            "billsec": call.billsec,
            "status": self.status.value,
            "file": self.file or None,
            "size": self.size,
            "sha256": self.sha256,
            "detail": self.detail or None,
        }

    def as_row(self) -> list[str]:
        values = self.as_json()
        return [_csv_cell(values[name]) for name in MANIFEST_FIELDS]


def _csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: caller names come from the PBX, i.e. from
    whoever calls, so `=HYPERLINK(…)` is neutralised (phone numbers like +7… are kept)."""
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


class _Sink:
    """The non-seekable file zipfile writes into; `take` hands the bytes on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class CallsExport(ResponseBody):
    """One export: `start` runs the first search (so a bad query or token is a clean
    error before any byte is sent); iterating yields the ZIP."""

    def __init__(
        self,
        service: CallJournalService,
        principal: Principal,
        query: SearchQuery,
        *,
        max_calls: int,
        limiter: Capacity | None = None,
    ) -> None:
        self._service = service
        self._principal = principal
        self._query = query
        self._max_calls = max_calls
        self._limiter = limiter
        self._first: list[CallRecord] = []
        self._next_token: str | None = None
        self._started = False
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self.counts: dict[ExportStatus, int] = dict.fromkeys(ExportStatus, 0)

    async def start(self) -> None:
        """Refuse (429) when the exports running at once are at their limit, then run
        the first search. The place is taken when sending starts and given back when it
        ends, so an answer that is never sent holds none."""
        if self._limiter is not None and self._limiter.available_tokens < 1:
            raise _too_many(self._limiter)
        page = await self._service.search(self._principal, lambda: self._query)
        self._first, self._next_token = page.records, page.next_page_token
        self._started = True

    async def __aenter__(self) -> CallsExport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._chunks is not None:
            with trio.CancelScope(shield=True):
                await self._chunks.aclose()
        if exc_value is not None and not isinstance(exc_value, trio.Cancelled):
            log.warning("export_interrupted", actor=self._principal.name, error=str(exc_value))

    def __aiter__(self) -> AsyncIterator[bytes]:
        if not self._started:
            raise RuntimeError("CallsExport.start() must be awaited first")
        if self._chunks is None:
            self._chunks = self._zip()
        return self._chunks

    async def _zip(self) -> AsyncGenerator[bytes, None]:
        if self._limiter is None:
            async for chunk in self._zip_members():
                yield chunk
            return
        try:
            self._limiter.acquire_on_behalf_of_nowait(self)
        except trio.WouldBlock:  # taken since start(): the answer is cut short
            raise _too_many(self._limiter) from None
        try:
            members = self._zip_members()
            async with aclosing(members):
                async for chunk in members:
                    yield chunk
        finally:
            self._limiter.release_on_behalf_of(self)

    async def _zip_members(self) -> AsyncGenerator[bytes, None]:
        sink = _Sink()
        archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True)
        exported_at = datetime.now(UTC)
        truncated = False
        matched = 0
        with (
            tempfile.SpooledTemporaryFile(MANIFEST_SPOOL_BYTES, "w+", newline="") as csv_file,
            tempfile.SpooledTemporaryFile(MANIFEST_SPOOL_BYTES, "w+") as json_file,
        ):
            rows = csv.writer(csv_file)
            rows.writerow(MANIFEST_FIELDS)
            records, token = self._first, self._next_token
            while True:
                for record in records:
                    if matched == self._max_calls:
                        truncated = True
                        break
                    matched += 1
                    entry = await self._decide(record)
                    if entry.status is ExportStatus.INCLUDED:
                        member = self._member(archive, sink, entry)
                        async with aclosing(member):
                            async for chunk in member:
                                yield chunk
                    self.counts[entry.status] += 1
                    rows.writerow(entry.as_row())
                    json_file.write(("," if matched > 1 else "") + "\n  ")
                    json_file.write(json.dumps(entry.as_json(), ensure_ascii=False))
                if token is None or truncated:
                    break
                query = replace(self._query, page_token=token)
                page = await self._service.search(self._principal, lambda q=query: q)  # type: ignore[misc]
                records, token = page.records, page.next_page_token
            json_file.write("\n]}\n" if matched else "]}\n")
            head = {
                "exported_at": format_timestamp(exported_at),
                "actor": self._principal.name,
                "matched": matched,
                "counts": {status.value: count for status, count in self.counts.items()},
                "truncated": truncated,
            }
            prefix = json.dumps(head, ensure_ascii=False)[:-1] + ', "calls": ['
            for name, spool, first in (
                ("manifest.csv", csv_file, ""),
                ("manifest.json", json_file, prefix),
            ):
                for chunk in _write_spooled(archive, name, spool, first, exported_at, sink):
                    yield chunk
        archive.close()
        yield sink.take()
        log.info(
            "export_finished",
            actor=self._principal.name,
            matched=matched,
            truncated=truncated,
            **{status.name.lower(): count for status, count in self.counts.items()},
        )

    async def _decide(self, record: CallRecord) -> _Entry:
        if record.recording is None:
            return _Entry(record, ExportStatus.NO_RECORDING)
        try:
            info = await self._service.prepare_download(
                self._principal, record.call.uuid, action="export"
            )
        except ServiceError as exc:
            if exc.code is ErrorCode.PERMISSION_DENIED:
                return _Entry(record, ExportStatus.WITHHELD_PRIVATE, detail="private call")
            if exc.code is ErrorCode.NOT_FOUND:
                return _Entry(record, ExportStatus.NO_RECORDING)
            return _Entry(record, ExportStatus.UNAVAILABLE, detail=exc.message)
        suffix = "mp3" if info.content_type == "audio/mpeg" else "wav"
        return _Entry(
            record,
            ExportStatus.INCLUDED,
            file=member_name(record, suffix),
            size=info.size,
            sha256=info.sha256,
            info=info,
        )

    async def _member(
        self, archive: zipfile.ZipFile, sink: _Sink, entry: _Entry
    ) -> AsyncGenerator[bytes, None]:
        info = entry.info
        assert info is not None
        sent = 0
        # The whole recording: should the encoder hand the WAV over to the MP3 meanwhile,
        # the fresh form is sent, and the entry (manifest, member name) follows it.
        async with self._service.open_download(self._principal, info, 0, None) as opened:
            if opened.info.etag != info.etag:
                info = entry.info = opened.info
                suffix = "mp3" if info.content_type == "audio/mpeg" else "wav"
                entry.file = member_name(entry.record, suffix)
                entry.size, entry.sha256 = info.size, info.sha256
            member = _zip_info(entry.file, entry.record.call.started_at)
            member.file_size = info.size  # decides ZIP64 for this member up front
            with archive.open(member, "w") as out:
                yield sink.take()
                async for chunk in opened.chunks:
                    out.write(chunk)
                    sent += len(chunk)
                    yield sink.take()
                if sent != info.size:
                    raise ServiceError.data_loss(
                        f"the recording of call {info.call_uuid} ended after {sent} of "
                        f"{info.size} bytes"
                    )
        yield sink.take()


def _too_many(limiter: Capacity) -> RestError:
    return RestError(
        ErrorCode.RESOURCE_EXHAUSTED,
        f"{limiter.total_tokens:g} exports are running already; retry when one has finished",
        status=429,
        headers={"Retry-After": "30"},
    )


def _write_spooled(
    archive: zipfile.ZipFile, name: str, spool: IO[str], first: str, moment: datetime, sink: _Sink
) -> Iterator[bytes]:
    """Copy a spooled manifest into the archive, a piece at a time."""
    spool.seek(0)
    with archive.open(_zip_info(name, moment), "w", force_zip64=True) as out:
        if first:
            out.write(first.encode())
        while text := spool.read(COPY_BYTES):
            out.write(text.encode())
            yield sink.take()
    yield sink.take()


def _zip_info(name: str, moment: datetime) -> zipfile.ZipInfo:
    utc = moment.astimezone(UTC)
    member = zipfile.ZipInfo(name, date_time=utc.timetuple()[:6])
    member.compress_type = zipfile.ZIP_STORED
    member.external_attr = 0o644 << 16
    return member
