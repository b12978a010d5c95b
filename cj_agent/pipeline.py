"""What happens to one ready CDR (and its recording), from parsing to clean-up.

    parse ─▶ AddCall(s) ─▶ no recording? ──────────────────────────────▶ finish CDR
                    └─▶ wait for the recording (≤ recording_wait_s)
                          ready ─▶ hash ─▶ UploadRecording ─▶ finish recording, then CDR
                          absent, but the server has it ──────▶ finish CDR
                          still absent at the deadline ───────▶ CDR to pending/ (late)

"Finish" deletes or archives a file and happens only after the server acknowledged
it, recording before CDR: a restart at any point redoes the CDR, and the server's
idempotency (upsert by uuid; an identical recording answers duplicate) makes the
redo harmless; a recording already gone is recognised by asking the server
(CheckCalls) before waiting for it.

A CDR whose recording is late moves to the source's pending directory: the call is on
the server, the CDR is the restart-safe note of what is still awaited. The source loop
watches for those recordings and hands them to `deliver_late`.

Which file is the recording is decided by `recordings.recording_target` (names as PBXs
write them, dated subdirectories, lookups by Asterisk uniqueid). Two leg files (caller,
callee) are merged into one stereo WAV in the source's scratch directory
(`<pending>/.merged/<source>/<call uuid>.wav`, fsynced) and that file is uploaded; the
legs are finished only after the server's acknowledgement, the scratch file removed
after them. A restart redoes the merge: the same legs give the same bytes, so the
server answers duplicate.

Anything the server refuses for good (see `uploader.PERMANENT`), an unparsable CDR, a
recording name that leads out of the recordings directory, or legs that cannot be
merged are quarantined: moved to the failed directory with `<name>.error` saying why.
Nothing is ever deleted unsent.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import structlog
import trio

from cj.cdr import CdrError, CdrOptions, parse_cdr_file
from cj.cdr.lines import is_line_format
from cj.codec import call_to_pb
from cj.config import AfterSuccess, AgentConfig, AgentSourceConfig, CdrFormat
from cj.errors import ErrorCode
from cj.model import Call
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, RpcError
from cj_agent.batcher import CallBatcher
from cj_agent.files import move_into, quarantine
from cj_agent.merge import LegMergeError, merge_legs
from cj_agent.recordings import (
    LOOKUP_PREFIX,
    RecordingTarget,
    Resolved,
    UnsafeRecordingName,
    recording_target,
)
from cj_agent.stats import AgentStats
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

NO_RECORDING = (pb.RECORDING_STATUS_UNSPECIFIED, pb.RECORDING_STATUS_NONE)


__all__ = ["UnsafeRecordingName"]  # re-exported: it moved to cj_agent.recordings


@dataclass(frozen=True)
class LateRecording:
    """A call uploaded without its recording; its CDR waits in the pending directory."""

    cdr: Path
    call_uuid: UUID
    target: RecordingTarget
    day: date


@dataclass
class SourceContext:
    """Everything the processing of one source's files needs."""

    source: AgentSourceConfig
    config: AgentConfig
    link: ServerLink
    stats: AgentStats
    stopping: trio.Event
    calls: CallBatcher
    options: CdrOptions = field(init=False)
    # How CDRs in the pending directory are read: the source's format, except for a
    # tailed source, whose pending notes are compact CDRs (`tail_recordings`).
    note_options: CdrOptions = field(init=False)
    zone: ZoneInfo = field(init=False)
    recording_pattern: re.Pattern[str] = field(init=False)
    late: dict[str, LateRecording] = field(default_factory=dict)  # by pending CDR name
    log: Any = field(init=False)
    # How long a recording must stay unchanged: settle_s, or event_settle_s while
    # filesystem events flow (set by the source loop).
    settle_s: float = field(init=False)
    _late_counted: int = 0

    def __post_init__(self) -> None:
        self.settle_s = self.config.settle_s
        self.options = CdrOptions.for_source(self.source)
        self.note_options = self.options
        if is_line_format(self.source.format):
            self.note_options = dataclasses.replace(self.options, format=CdrFormat.COMPACT)
        self.zone = ZoneInfo(self.source.timezone)
        self.recording_pattern = compile_patterns(self.source.recording_patterns)
        self.log = log.bind(source=self.source.name)

    def count_late(self) -> None:
        """Bring the agent-wide count of awaited recordings up to date."""
        self.stats.add(late_waiting=len(self.late) - self._late_counted)
        self._late_counted = len(self.late)

    def day_of(self, call: Call) -> date:
        """The call's date at the PBX (the archive's subdirectory)."""
        return call.started_at.astimezone(self.zone).date()

    @property
    def scratch_dir(self) -> Path:
        """Where merged legs wait for their upload (one directory per source)."""
        return self.source.late_dir / ".merged" / self.source.name

    def resolve(self, call: Call) -> Resolved:
        """The recording of `call` (worker thread; UnsafeRecordingName if refused).

        A tailed source's lookups stop after the dated directories and the top level:
        every call of a busy PBX is looked up, most find nothing, and none may cost a
        walk of the tree. The lookups' cost is counted in `stats`."""
        resolved = recording_target(
            self.source.recordings_dir,
            call.recording_name,
            call.recording_legs,
            day=self.day_of(call),
            fallback_name=f"{call.uuid}.wav",
            pattern=self.recording_pattern,
            search_tree=not is_line_format(self.source.format),
        )
        if _is_lookup(call) and call.recording_legs is None:
            counts = functools.partial(
                self.stats.add,
                recording_lookups=1,
                recording_lookup_entries=resolved.scanned,
                recording_tree_walks=int(resolved.walked),
            )
            try:
                trio.from_thread.run_sync(counts)  # stats wake trio tasks: from trio
            except RuntimeError:  # not in a worker thread: in trio itself
                counts()
        return resolved

    def load_pending(self, path: Path) -> Call:
        """A CDR of the pending directory as a call (worker thread; CdrError).

        A tailed source's note (`tail_recordings.note_document`) is a compact CDR whose
        `rnam` is a base name; its `cj_recording` object gives the reference as the
        parser made it (a path or a lookup key) and the legs, read here.
        """
        call = parse_cdr_file(path, self.note_options)
        if not is_line_format(self.source.format):
            return call
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CdrError("cj_recording", f"cannot be read: {exc}") from None
        extra = document.get("cj_recording") if isinstance(document, dict) else None
        if extra is None:
            return call
        name, legs = (extra.get("name"), extra.get("legs")) if isinstance(extra, dict) else (0, 0)
        if name is not None and not (isinstance(name, str) and name):
            raise CdrError("cj_recording.name", "must be a non-empty string or null")
        if legs is not None and not (
            isinstance(legs, list) and len(legs) == 2 and all(isinstance(x, str) for x in legs)
        ):
            raise CdrError("cj_recording.legs", "must be two file names (caller, callee) or null")
        pair = (legs[0], legs[1]) if legs is not None else None
        return replace(call, recording_name=name, recording_legs=pair)

    async def pause(self, seconds: float) -> bool:
        """Sleep; False (at once) when the agent is stopping."""
        with trio.move_on_after(seconds):
            await self.stopping.wait()
            return False
        return True

    async def finish(self, day: date, *paths: Path) -> None:
        """Delete or archive acknowledged files, in the order given."""
        source = self.source
        for path in paths:
            if source.after_success is AfterSuccess.ARCHIVE:
                assert source.archive_dir is not None  # the configuration checks it
                await trio.to_thread.run_sync(move_into, path, source.archive_dir / day.isoformat())
            else:
                path.unlink(missing_ok=True)
        self.stats.add(files_done=len(paths))

    async def quarantine(self, reason: str, *paths: Path) -> None:
        """Move files to the failed directory with the reason beside each."""
        for path in paths:
            try:
                target = await trio.to_thread.run_sync(
                    quarantine, path, self.source.quarantine_dir, reason
                )
            except FileNotFoundError:
                continue
            self.log.warning("file_quarantined", file=path.name, to=str(target), reason=reason)
            self.stats.add(quarantined=1)


class Waited(enum.Enum):
    READY = "ready"  # the recording is there and stopped changing
    ON_SERVER = "on_server"  # absent here, but the server has a recording for the call
    LATE = "late"  # absent at the deadline
    ABANDONED = "abandoned"  # the agent is stopping


class Delivered(enum.Enum):
    DONE = "done"  # uploaded (or duplicate) and both files finished
    AGAIN = "again"  # the file vanished or changed: look at it again
    QUARANTINED = "quarantined"


async def process_cdr(ctx: SourceContext, path: Path) -> None:
    """Handle one ready CDR completely (see the module documentation)."""
    bound = ctx.log.bind(cdr=path.name)
    try:
        call = await trio.to_thread.run_sync(parse_cdr_file, path, ctx.options)
    except CdrError as exc:
        if not await trio.Path(path).exists():
            return  # taken away meanwhile; nothing to do
        await ctx.quarantine(f"unparsable CDR: {exc}", path)
        return
    bound = bound.bind(call_uuid=str(call.uuid))
    try:
        resolved = await trio.to_thread.run_sync(ctx.resolve, call)
    except UnsafeRecordingName as exc:
        await ctx.quarantine(f"refused recording name: {exc}", path)
        return
    target = resolved.target
    day = ctx.day_of(call)
    if target is None and _is_lookup(call) and await server_has_recording(ctx, call.uuid):
        # A lookup that finds nothing: a restart after the recording was finished but
        # before its CDR was. The call is on the server with its recording's name.
        bound.info("recording_already_on_server")
        ctx.stats.add(recordings_already_on_server=1)
        await ctx.finish(day, path)
        return
    if resolved.server_name != call.recording_name:
        call = replace(call, recording_name=resolved.server_name)
    message = call_to_pb(call, include_raw=True)
    try:
        await ctx.calls.add(message)  # batched with other CDRs ready at the same time
    except RpcError as exc:
        await ctx.quarantine(f"the server refused the call: {exc}", path)
        return
    ctx.stats.add(calls_uploaded=1)
    if target is None:
        await ctx.finish(day, path)
        bound.info("call_uploaded")
        return
    deadline = trio.current_time() + ctx.config.recording_wait_s
    while True:
        waited = await wait_for_recording(ctx, call.uuid, target, deadline)
        if waited is Waited.ABANDONED:
            return
        if waited is Waited.ON_SERVER:
            bound.info("recording_already_on_server", recording=target.describe())
            ctx.stats.add(recordings_already_on_server=1)
            await ctx.finish(day, *target.present(), path)
            return
        if waited is Waited.LATE:
            await _defer(ctx, path, call.uuid, target, day)
            bound.warning(
                "recording_late",
                recording=target.describe(),
                waited_s=ctx.config.recording_wait_s,
                note="call uploaded alone; the recording will be sent when it appears",
            )
            return
        delivered = await upload_and_finish(
            ctx, call.uuid, target, path, day, load_call=lambda: message
        )
        if delivered is not Delivered.AGAIN:
            if delivered is Delivered.DONE:
                bound.info("call_uploaded", recording=target.upload_name, legs=target.merged)
            return


def _is_lookup(call: Call) -> bool:
    return call.recording_name is not None and call.recording_name.startswith(LOOKUP_PREFIX)


async def deliver_late(ctx: SourceContext, late: LateRecording) -> None:
    """Upload a late recording that appeared (and settled); finish it and its CDR."""

    def load_call() -> pb.Call:
        call = ctx.load_pending(late.cdr)
        resolved = ctx.resolve(call)
        if resolved.server_name != call.recording_name:
            call = replace(call, recording_name=resolved.server_name)
        return call_to_pb(call, include_raw=True)

    delivered = await upload_and_finish(
        ctx, late.call_uuid, late.target, late.cdr, late.day, load_call=load_call
    )
    if delivered is not Delivered.AGAIN:
        ctx.late.pop(late.cdr.name, None)
        ctx.count_late()
        if delivered is Delivered.DONE:
            ctx.log.info(
                "late_recording_uploaded",
                call_uuid=str(late.call_uuid),
                recording=late.target.upload_name,
                legs=late.target.merged,
            )


def settle_key(paths: tuple[Path, ...]) -> tuple[int, int]:
    """One (size, mtime) for the file(s) of a recording: total size, newest mtime.

    OSError (FileNotFoundError …) when one of them is gone.
    """
    stats = [path.stat() for path in paths]
    return sum(stat.st_size for stat in stats), max(stat.st_mtime_ns for stat in stats)


async def wait_for_recording(
    ctx: SourceContext, call_uuid: UUID, target: RecordingTarget, deadline: float
) -> Waited:
    """Wait until every file of `target` exists and kept its size and mtime for
    `ctx.settle_s`."""
    settle_s = ctx.settle_s
    seen: tuple[int, int] | None = None
    since = 0.0
    asked_server = False
    while True:
        now = trio.current_time()
        located = await trio.to_thread.run_sync(target.locate)
        key: tuple[int, int] | None = None
        if located is not None:
            try:
                key = await trio.to_thread.run_sync(settle_key, located)
            except FileNotFoundError:
                key = None
        if key is None:
            seen = None
            if not asked_server:
                # A restart after the recording was finished but before its CDR was:
                # the server has it, so there is nothing to wait for.
                asked_server = True
                if await server_has_recording(ctx, call_uuid):
                    return Waited.ON_SERVER
                now = trio.current_time()
        else:
            if key != seen:
                seen, since = key, now
            if now - since >= settle_s:
                return Waited.READY
        if now >= deadline:
            return Waited.LATE
        wait = min(ctx.config.poll_min_s, deadline - now)
        if seen is not None:
            wait = min(wait, since + settle_s - now)
        if not await ctx.pause(max(wait, 0.001)):
            return Waited.ABANDONED


async def server_has_recording(ctx: SourceContext, call_uuid: UUID) -> bool:
    try:
        reply = await ctx.link.call(
            "CheckCalls", lambda journal: journal.check_calls([str(call_uuid)])
        )
    except RpcError as exc:
        ctx.log.warning("check_calls_refused", call_uuid=str(call_uuid), error=str(exc))
        return False
    return any(state.recording_status not in NO_RECORDING for state in reply.calls)


async def upload_and_finish(
    ctx: SourceContext,
    call_uuid: UUID,
    target: RecordingTarget,
    cdr: Path,
    day: date,
    *,
    load_call: Callable[[], pb.Call],
) -> Delivered:
    """Upload the recording of `target` (its legs merged first); on acknowledgement
    finish its files, then `cdr`."""
    located = await trio.to_thread.run_sync(target.locate)
    if located is None:
        return Delivered.AGAIN
    files = (*located, *(path for path in target.extra if path.is_file()))
    scratch: Path | None = None
    if target.merged:
        scratch = ctx.scratch_dir / f"{call_uuid}.wav"
        try:
            merged = await trio.to_thread.run_sync(merge_legs, located[0], located[1], scratch)
        except FileNotFoundError:
            return Delivered.AGAIN
        except LegMergeError as exc:
            await ctx.quarantine(f"the recording's legs cannot be merged: {exc}", *files, cdr)
            return Delivered.QUARANTINED
        ctx.log.info(
            "legs_merged",
            call_uuid=str(call_uuid),
            caller=located[0].name,
            callee=located[1].name,
            frames=merged.frames,
            sample_rate=merged.sample_rate,
        )
        upload = scratch
    else:
        upload = located[0]
    try:
        return await _upload_and_finish(
            ctx, call_uuid, target, upload, files, cdr, day, load_call=load_call
        )
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)


async def _upload_and_finish(
    ctx: SourceContext,
    call_uuid: UUID,
    target: RecordingTarget,
    upload: Path,
    files: tuple[Path, ...],
    cdr: Path,
    day: date,
    *,
    load_call: Callable[[], pb.Call],
) -> Delivered:
    try:
        digest = await trio.to_thread.run_sync(hash_file, upload)
    except (FileNotFoundError, FileChangedError):
        return Delivered.AGAIN
    try:
        reply = await upload_recording(
            ctx, call_uuid, upload, target.upload_name, digest, load_call
        )
    except FileNotFoundError:
        return Delivered.AGAIN
    except RpcError as exc:
        if exc.code is ErrorCode.INVALID_ARGUMENT and _changed_since(upload, digest):
            ctx.log.info("recording_changed_during_upload", recording=upload.name)
            return Delivered.AGAIN
        if exc.code is ErrorCode.ALREADY_EXISTS:
            reason = f"the server already has a different recording for call {call_uuid}: {exc}"
        else:
            reason = f"the server refused the recording {target.upload_name}: {exc}"
        await ctx.quarantine(reason, *files, cdr)
        return Delivered.QUARANTINED
    ctx.stats.add(recordings_uploaded=1, recordings_duplicate=int(reply.duplicate))
    await ctx.finish(day, *files, cdr)
    return Delivered.DONE


async def upload_recording(
    ctx: SourceContext,
    call_uuid: UUID,
    recording: Path,
    name: str,
    digest: FileDigest,
    load_call: Callable[[], pb.Call],
) -> pb.UploadRecordingResponse:
    """UploadRecording through the link; re-adds the call if the server lost it."""
    header = pb.UploadHeader(
        call_uuid=str(call_uuid), file_name=name, size=digest.size, sha256=digest.sha256
    )
    timeout_s = upload_timeout(ctx.config.request_timeout_s, digest.size)
    add_first = False

    async def op(journal: CallJournalClient) -> pb.UploadRecordingResponse:
        nonlocal add_first
        if add_first:
            message = await trio.to_thread.run_sync(load_call)
            await journal.add_call(message)
            add_first = False
        try:
            return await journal.upload_recording(
                header, read_chunks(recording), timeout_s=timeout_s
            )
        except RpcError as exc:
            # "Add the call first": it was acknowledged, so the server lost it (a
            # restored database?). Add it again on the next try.
            if exc.code is ErrorCode.FAILED_PRECONDITION:
                add_first = True
            raise

    return await ctx.link.call("UploadRecording", op)


def _changed_since(path: Path, digest: FileDigest) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return True
    return (stat.st_size, stat.st_mtime_ns) != (digest.size, digest.mtime_ns)


async def _defer(
    ctx: SourceContext, cdr: Path, call_uuid: UUID, target: RecordingTarget, day: date
) -> None:
    moved = await trio.to_thread.run_sync(move_into, cdr, ctx.source.late_dir)
    ctx.late[moved.name] = LateRecording(moved, call_uuid, target, day)
    ctx.stats.add(recordings_late=1)
    ctx.count_late()


# A pending CDR whose uniqueid lookup finds nothing any more: never located, so it is
# finished once the server says it has the recording (`reconcile_late`).
_NOTHING_FOUND = RecordingTarget("", ((),))


async def load_late(ctx: SourceContext) -> None:
    """Read the pending directory at start: the recordings still awaited.

    Merged legs left in the scratch directory by a stop or a crash are removed: the
    legs are still there (they are finished only after the upload) and are merged again.
    """
    await trio.to_thread.run_sync(
        functools.partial(shutil.rmtree, ctx.scratch_dir, ignore_errors=True)
    )
    directory = ctx.source.late_dir
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(directory)
            if entry.is_file() and not entry.name.startswith(".")
        )
    except FileNotFoundError:
        return
    for name in names:
        path = directory / name
        try:
            call = await trio.to_thread.run_sync(ctx.load_pending, path)
            if call.recording_name is None and call.recording_legs is None:
                raise CdrError("recording", "the CDR no longer names a recording")
            target = (await trio.to_thread.run_sync(ctx.resolve, call)).target
        except (CdrError, UnsafeRecordingName) as exc:
            await ctx.quarantine(f"pending CDR cannot be read again: {exc}", path)
            continue
        ctx.late[name] = LateRecording(path, call.uuid, target or _NOTHING_FOUND, ctx.day_of(call))
    ctx.count_late()
    if ctx.late:
        ctx.log.info("late_recordings_awaited", count=len(ctx.late))


async def reconcile_late(ctx: SourceContext, batch: int = 1000) -> None:
    """Finish pending CDRs whose recording the server already has (a restart after the
    recording was finished but before its CDR was)."""
    entries = list(ctx.late.values())
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        uuids = [str(entry.call_uuid) for entry in chunk]
        try:
            reply = await ctx.link.call("CheckCalls", functools.partial(_check, uuids=uuids))
        except RpcError as exc:
            ctx.log.warning("check_calls_refused", count=len(uuids), error=str(exc))
            return
        have = {state.uuid for state in reply.calls if state.recording_status not in NO_RECORDING}
        for entry in chunk:
            if str(entry.call_uuid) not in have:
                continue
            left = entry.target.present()
            if entry.target.locate() is None:  # a leg already finished: finish the rest
                await ctx.finish(entry.day, *left, entry.cdr)
                ctx.late.pop(entry.cdr.name, None)
                ctx.stats.add(recordings_already_on_server=1)
    ctx.count_late()


async def _check(journal: CallJournalClient, *, uuids: list[str]) -> pb.CheckCallsResponse:
    return await journal.check_calls(uuids)
