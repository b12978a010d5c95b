"""`cj-agent backfill`: bulk import of an archive of CDRs and recordings, resumable.

    summary = await run_backfill(plan, link, progress)

1. Walk the given paths recursively: CDR files (the source's `cdr_patterns`) and an
   index of recordings by file name (`recording_patterns`), and by uniqueid for
   `uniqueid:` lookups. Which file is a call's recording: `backfill_recordings` (two
   legs are not merged here: counted and reported, the call sent without them).
2. In batches of `BATCH` CDRs: parse (worker thread), keep those in the date range,
   ask the server which it already has (CheckCalls), add the missing calls in one
   AddCalls stream, then upload the recordings the server lacks (UploadRecording,
   `jobs` at a time). A recording the server has is skipped when its SHA-256 matches
   the local file; a different one is a failure (the server keeps the first).
3. Batches are prepared while earlier ones are sent, `jobs` batches in flight.

Nothing is ever deleted or moved: a re-run asks the server again and continues where
the previous run stopped. A server that is away is waited for (gRPC backoff, like the
daemon). Failures (unparsable CDRs, refused calls or recordings, recordings named but
not found) are counted and written to the report file, one JSON object per line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import structlog
import trio

from cj.cdr import CdrError, CdrOptions, parse_cdr_file
from cj.codec import call_to_pb
from cj.errors import ErrorCode
from cj.model import Call
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, RpcError
from cj_agent.backfill_recordings import choose, uniqueid_index
from cj_agent.recordings import Leg
from cj_agent.uploader import (
    FileChangedError,
    FileDigest,
    ServerLink,
    hash_file,
    read_chunks,
    upload_timeout,
)
from cj_agent.watch import compile_patterns

log = structlog.get_logger(__name__)

BATCH = 1000  # CheckCalls takes at most 1000 uuids
NO_RECORDING = (pb.RECORDING_STATUS_UNSPECIFIED, pb.RECORDING_STATUS_NONE)


@dataclass(frozen=True)
class BackfillPlan:
    """What to import and how.

    since/until: keep calls with since <= started_at < until (aware datetimes).
    jobs: batches in flight and concurrent recording uploads.
    """

    paths: tuple[Path, ...]
    options: CdrOptions
    cdr_patterns: tuple[str, ...] = ("*.json",)
    recording_patterns: tuple[str, ...] = ("*.wav",)
    since: datetime | None = None
    until: datetime | None = None
    jobs: int = 4
    dry_run: bool = False
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("give at least one path to import")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, not {self.jobs}")
        for moment, name in ((self.since, "--since"), (self.until, "--until")):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must carry a time zone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("--since must be before --until")

    def in_range(self, call: Call) -> bool:
        if self.since is not None and call.started_at < self.since:
            return False
        return self.until is None or call.started_at < self.until


@dataclass
class BackfillSummary:
    """What a run did; `failed > 0` means a non-zero exit status."""

    found: int = 0  # CDR files found
    out_of_range: int = 0  # outside --since/--until
    already_present: int = 0  # calls (and their recordings) the server had
    calls_added: int = 0
    recordings_uploaded: int = 0
    recordings_skipped: int = 0  # the server had them, same SHA-256
    recordings_not_merged: int = 0  # two legs: calls sent without them (report lines)
    bytes_uploaded: int = 0
    recordings_found: int = 0  # dry run: recordings that would be considered
    recording_bytes_found: int = 0
    failed: int = 0
    done: int = 0  # CDRs fully handled (any outcome)
    cancelled: bool = False
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """The human summary printed at the end."""
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"CDR files found:      {self.found}",
            f"handled:              {self.done} ({rate:.0f}/s over {self.elapsed_s:.1f} s)",
            f"calls added:          {self.calls_added}",
            f"already on server:    {self.already_present}",
            f"outside date range:   {self.out_of_range}",
            f"recordings uploaded:  {self.recordings_uploaded} "
            f"({self.bytes_uploaded / 1e6:.1f} MB)",
            f"recordings skipped:   {self.recordings_skipped} (server has them)",
            f"recordings not sent:  {self.recordings_not_merged} "
            "(two legs: backfill does not merge them; see the report)",
            f"failures:             {self.failed}",
        ]
        if self.recordings_found:
            out.append(
                f"recordings found:     {self.recordings_found} "
                f"({self.recording_bytes_found / 1e6:.1f} MB)"
            )
        return out


class Progress(Protocol):
    """Where progress goes (a tqdm bar, periodic log lines, or nowhere)."""

    def set_total(self, calls: int) -> None: ...
    def advance(self, calls: int = 0, bytes_: int = 0) -> None: ...


class NoProgress:
    def set_total(self, calls: int) -> None:
        pass

    def advance(self, calls: int = 0, bytes_: int = 0) -> None:
        pass


class FailureReport:
    """Failures as JSON lines in `path`; the file is created at the first failure."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: TextIO | None = None

    def add(self, file: str, reason: str, call_uuid: str | None = None) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        entry: dict[str, Any] = {"file": file, "reason": reason}
        if call_uuid is not None:
            entry["call_uuid"] = call_uuid
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- walking -----------------------------------------------------------------------------


def walk(
    paths: tuple[Path, ...], cdr_patterns: tuple[str, ...], recording_patterns: tuple[str, ...]
) -> tuple[list[str], dict[str, str]]:
    """(CDR file paths in a stable order, recording file name → path) under `paths`.

    A path may also be a single CDR file. The first recording of a name wins (names
    carry the call's uuid, so a repeat is a copy); `backfill_recordings.choose` prefers the one
    beside the CDR.
    """
    cdr = compile_patterns(cdr_patterns)
    recording = compile_patterns(recording_patterns)
    cdrs: list[str] = []
    recordings: dict[str, str] = {}
    for root in paths:
        if root.is_file():
            cdrs.append(str(root))
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is neither a directory nor a file")
        for name, path in _files_under(str(root)):
            if cdr.match(name):
                cdrs.append(path)
            elif recording.match(name):
                recordings.setdefault(name, path)
    return cdrs, recordings


def _files_under(root: str) -> Iterator[tuple[str, str]]:
    """(name, path) of the files under `root`, depth first, in name order."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                found = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            log.warning("backfill_directory_unreadable", directory=directory, error=str(exc))
            continue
        for entry in reversed(found):
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
        for entry in found:
            if entry.is_file():
                yield entry.name, entry.path


# --- batches -----------------------------------------------------------------------------


@dataclass
class Item:
    """One parsed CDR of a batch and what it still needs."""

    path: str
    call: Call
    recording: str | None = None  # local path of the recording, when found
    recording_size: int = 0
    not_merged: str | None = None  # why its recording (two legs) is not sent
    add: bool = True
    upload: bool = False


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)
    failures: list[tuple[str, str, str | None]] = field(default_factory=list)
    out_of_range: int = 0


def parse_batch(
    paths: list[str],
    plan: BackfillPlan,
    index: dict[str, str],
    by_uniqueid: dict[str, dict[Leg, str]] | None = None,
) -> Batch:
    """Parse a batch of CDR files (worker thread); note failures and out-of-range ones."""
    batch = Batch()
    for path in paths:
        try:
            call = parse_cdr_file(Path(path), plan.options)
        except CdrError as exc:
            batch.failures.append((path, f"unparsable CDR: {exc}", None))
            continue
        if not plan.in_range(call):
            batch.out_of_range += 1
            continue
        choice = choose(call, path, index, by_uniqueid or {})
        item = Item(path, choice.call, choice.recording, not_merged=choice.not_merged)
        if item.recording is not None:
            try:
                item.recording_size = Path(item.recording).stat().st_size
            except OSError:
                item.recording = None
        batch.items.append(item)
    return batch


class Backfill:
    """One run; `run_backfill` is the entry point."""

    def __init__(
        self,
        plan: BackfillPlan,
        link: ServerLink | None,
        progress: Progress,
        report: FailureReport,
    ) -> None:
        self.plan = plan
        self.link = link
        self.progress = progress
        self.report = report
        self.summary = BackfillSummary()
        self.hashing = trio.CapacityLimiter(plan.jobs)
        self.by_uniqueid: dict[str, dict[Leg, str]] = {}

    def fail(self, file: str, reason: str, call_uuid: str | None = None, *, done: bool) -> None:
        self.report.add(file, reason, call_uuid)
        self.summary.failed += 1
        if done:
            self.finish_items(1)

    def finish_items(self, count: int) -> None:
        self.summary.done += count
        self.progress.advance(calls=count)

    async def run(self) -> None:
        plan = self.plan
        cdrs, index = await trio.to_thread.run_sync(
            walk, plan.paths, plan.cdr_patterns, plan.recording_patterns, abandon_on_cancel=True
        )
        self.summary.found = len(cdrs)
        self.progress.set_total(len(cdrs))
        log.info("backfill_started", cdr_files=len(cdrs), recordings=len(index))
        self.by_uniqueid = await trio.to_thread.run_sync(uniqueid_index, index)
        send, receive = trio.open_memory_channel[Batch](plan.jobs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._prepare, cdrs, index, send)
            async with receive:
                for _ in range(plan.jobs):
                    nursery.start_soon(self._send_batches, receive.clone())

    async def _prepare(
        self, cdrs: list[str], index: dict[str, str], send: trio.MemorySendChannel[Batch]
    ) -> None:
        async with send:
            for start in range(0, len(cdrs), BATCH):
                paths = cdrs[start : start + BATCH]
                batch = await trio.to_thread.run_sync(
                    parse_batch, paths, self.plan, index, self.by_uniqueid, abandon_on_cancel=True
                )
                for path, reason, uuid in batch.failures:
                    self.fail(path, reason, uuid, done=True)
                if batch.out_of_range:
                    self.summary.out_of_range += batch.out_of_range
                    self.finish_items(batch.out_of_range)
                if batch.items:
                    await send.send(batch)

    async def _send_batches(self, receive: trio.MemoryReceiveChannel[Batch]) -> None:
        async with receive:
            async for batch in receive:
                if self.plan.dry_run:
                    await self._count(batch)
                else:
                    await self._send(batch)

    def not_merged(self, item: Item) -> None:
        """Count (and report) a call whose two-leg recording backfill does not send."""
        assert item.not_merged is not None
        self.report.add(item.path, item.not_merged, str(item.call.uuid))
        self.summary.recordings_not_merged += 1

    async def _count(self, batch: Batch) -> None:
        for item in batch.items:
            name = item.call.recording_name
            if item.not_merged is not None:
                self.not_merged(item)
            elif name is not None and item.recording is None:
                self.fail(item.path, f"recording {name} not found", str(item.call.uuid), done=False)
            elif item.recording is not None:
                self.summary.recordings_found += 1
                self.summary.recording_bytes_found += item.recording_size
        self.finish_items(len(batch.items))

    async def _send(self, batch: Batch) -> None:
        assert self.link is not None
        items = batch.items
        uuids = [str(item.call.uuid) for item in items]
        reply = await self.link.call(
            "CheckCalls", lambda journal: journal.check_calls(uuids, timeout_s=None)
        )
        states = {state.uuid: state for state in reply.calls}
        to_compare: list[tuple[Item, str]] = []
        for item in items:
            state = states.get(str(item.call.uuid))
            item.add = state is None or not state.exists
            if not item.add:
                self.summary.already_present += 1
            has_recording = state is not None and state.recording_status not in NO_RECORDING
            name = item.call.recording_name
            if item.not_merged is not None:
                if not has_recording:
                    self.not_merged(item)
            elif item.recording is not None:
                if has_recording:
                    assert state is not None
                    to_compare.append((item, state.recording_sha256))
                else:
                    item.upload = True
            elif name is not None and not has_recording:
                self.fail(
                    item.path,
                    f"recording {name} not found under the given paths (call sent without it)",
                    str(item.call.uuid),
                    done=False,
                )
        await self._compare_recordings(to_compare)
        await self._add_calls([item for item in items if item.add])
        async with trio.open_nursery() as nursery:
            for item in items:
                if item.upload:
                    nursery.start_soon(self._upload, item)
            self.finish_items(sum(1 for item in items if not item.upload))

    async def _compare_recordings(self, pairs: list[tuple[Item, str]]) -> None:
        for item, server_sha256 in pairs:
            assert item.recording is not None
            try:
                digest = await trio.to_thread.run_sync(
                    hash_file, Path(item.recording), abandon_on_cancel=True
                )
            except OSError as exc:
                self.fail(item.path, f"cannot read {item.recording}: {exc}", None, done=False)
                continue
            if digest.sha256 == server_sha256:
                self.summary.recordings_skipped += 1
            else:
                self.fail(
                    item.recording,
                    f"the server already has a different recording for call {item.call.uuid}",
                    str(item.call.uuid),
                    done=False,
                )

    async def _add_calls(self, items: list[Item]) -> None:
        if not items:
            return
        assert self.link is not None
        messages = [call_to_pb(item.call, include_raw=True) for item in items]
        timeout_s = self.plan.request_timeout_s + len(messages) / 100
        reply = await self.link.call(
            "AddCalls", lambda journal: journal.add_calls(messages, timeout_s=timeout_s)
        )
        added = reply.inserted + reply.updated + reply.unchanged
        self.summary.calls_added += added
        for rejection in reply.rejections:
            item = items[rejection.index] if 0 <= rejection.index < len(items) else None
            path = item.path if item is not None else "?"
            if item is not None:
                item.upload = False
            reason = f"the server refused the call: {rejection.reason}"
            self.fail(path, reason, rejection.uuid, done=False)
        if reply.rejected > len(reply.rejections):
            self.summary.failed += reply.rejected - len(reply.rejections)

    async def _upload(self, item: Item) -> None:
        assert self.link is not None and item.recording is not None
        path = Path(item.recording)
        try:
            # Hashing the next files overlaps the uploads in flight (the link bounds those).
            async with self.hashing:
                digest = await trio.to_thread.run_sync(hash_file, path, abandon_on_cancel=True)
            reply = await self.link.call(
                "UploadRecording", _upload_op(item, path, digest, self.plan.request_timeout_s)
            )
        except (OSError, FileChangedError) as exc:
            self.fail(str(path), f"cannot read: {exc}", str(item.call.uuid), done=True)
            return
        except RpcError as exc:
            self.fail(
                str(path),
                f"the server refused the recording: {exc}",
                str(item.call.uuid),
                done=True,
            )
            return
        if reply.duplicate:
            self.summary.recordings_skipped += 1
        else:
            self.summary.recordings_uploaded += 1
            self.summary.bytes_uploaded += digest.size
        self.progress.advance(calls=0, bytes_=digest.size)
        self.finish_items(1)


def _upload_op(
    item: Item, path: Path, digest: FileDigest, request_timeout_s: float
) -> Callable[[CallJournalClient], Any]:
    header = pb.UploadHeader(
        call_uuid=str(item.call.uuid), file_name=path.name, size=digest.size, sha256=digest.sha256
    )
    timeout_s = upload_timeout(request_timeout_s, digest.size)
    readd = False

    async def op(journal: CallJournalClient) -> pb.UploadRecordingResponse:
        nonlocal readd
        if readd:
            await journal.add_call(call_to_pb(item.call, include_raw=True))
            readd = False
        try:
            return await journal.upload_recording(header, read_chunks(path), timeout_s=timeout_s)
        except RpcError as exc:
            if exc.code is ErrorCode.FAILED_PRECONDITION:
                readd = True
            raise

    return op


async def run_backfill(
    plan: BackfillPlan,
    link: ServerLink | None,
    *,
    progress: Progress | None = None,
    report: FailureReport,
    cancel_scope: trio.CancelScope | None = None,
) -> BackfillSummary:
    """Import what `plan` describes through `link` (None for a dry run).

    Cancelling `cancel_scope` (Ctrl-C) stops the run promptly; the summary then has
    `cancelled = True` and says what was done.
    """
    if link is None and not plan.dry_run:
        raise ValueError("a server link is needed unless this is a dry run")
    backfill = Backfill(plan, link, progress or NoProgress(), report)
    started = time.monotonic()
    scope = cancel_scope or trio.CancelScope()
    try:
        async with trio.open_nursery() as nursery:
            if link is not None:
                await nursery.start(link.run)
            with scope:
                await backfill.run()
            nursery.cancel_scope.cancel()
    finally:
        backfill.summary.elapsed_s = time.monotonic() - started
        backfill.summary.cancelled = scope.cancelled_caught
        report.close()
    return backfill.summary
