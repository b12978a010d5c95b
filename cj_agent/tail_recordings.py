"""Recordings of tailed calls: awaited in the pending directory, like late recordings.

A tailed file (Master.csv) cannot be finished or archived per call, so once the server
acknowledged a call that names a recording, a small *note* is written to the source's
pending directory: a compact CDR (`<uuid>.json`, written to a temporary file, fsynced,
renamed) naming the recording. From there the agent's late-recording machinery
(`pipeline.deliver_late`) uploads the recording once it appeared and settled, then
finishes (deletes or archives) the recording and the note. The note is written before
the file's offset passes the call, so a crash in between re-reads the lines and writes
it again; a recording the server already has (a re-read after its upload) is not
awaited again. Two leg files (`recording_legs`) are not merged here: they are logged
and skipped until the agent-side merge exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import trio

from cj.model import Call, Direction
from cj_agent.pipeline import (
    LateRecording,
    SourceContext,
    UnsafeRecordingName,
    deliver_late,
    server_has_recording,
)
from cj_agent.source import run_guarded, settled_late_recordings  # source imports tail lazily
from cj_agent.watch import SettleTracker

_DIRECTIONS = {Direction.INBOUND: "inc", Direction.OUTBOUND: "out", Direction.INTERNAL: "int"}


def note_document(call: Call) -> dict[str, Any]:
    """The compact CDR standing for `call` while its recording is awaited."""

    def epoch(moment: Any) -> int:
        return int(moment.timestamp()) if moment is not None else 0

    return {
        "uuid": str(call.uuid),
        "clid": call.caller.raw,
        "clna": call.caller_name,
        "dest": call.destination.raw,
        "dirc": _DIRECTIONS.get(call.direction, ""),
        "epos": epoch(call.started_at),
        "epoa": epoch(call.answered_at),
        "epoe": epoch(call.ended_at),
        "durs": call.duration_s,
        "bils": call.billsec,
        "recd": True,
        "rnam": call.recording_name,
        "rtag": "private" if call.private else "public",
        "hang": call.hangup_cause,
        "note": "the recording of a tailed call, awaited (cj_agent.tail_recordings)",
    }


def write_note(directory: Path, call: Call) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{call.uuid}.json"
    temporary = directory / f".{target.name}.tmp"
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(note_document(call), file, ensure_ascii=False)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(target)
    return target


class TailRecordings:
    """The awaited recordings of one tailed source."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        self.noted: set[UUID] = set()  # calls whose recording is awaited or was sent
        self.tracker = SettleTracker(ctx.config.settle_s, ctx.config.max_tracked_files)
        self.busy: set[str] = set()

    async def note(self, call: Call) -> None:
        """Await `call`'s recording, if it names one (run before the offset passes it)."""
        ctx = self.ctx
        if call.recording_name is None or call.uuid in self.noted:
            return
        if call.recording_legs is not None:
            ctx.log.warning(
                "recording_legs_not_merged",
                call_uuid=str(call.uuid),
                legs=list(call.recording_legs),
                note="two leg files are not merged by the tailing agent yet",
            )
            self.noted.add(call.uuid)
            return
        try:
            target = (await trio.to_thread.run_sync(ctx.resolve, call)).target
        except UnsafeRecordingName as exc:
            ctx.log.warning("recording_refused", call_uuid=str(call.uuid), reason=str(exc))
            self.noted.add(call.uuid)
            return
        if target is None:
            self.noted.add(call.uuid)  # a lookup that found nothing: no recording
            return
        present = await trio.to_thread.run_sync(target.locate)
        if present is None and await server_has_recording(ctx, call.uuid):
            self.noted.add(call.uuid)  # sent before a restart
            return
        path = await trio.to_thread.run_sync(write_note, ctx.source.late_dir, call)
        ctx.late[path.name] = LateRecording(path, call.uuid, target, ctx.day_of(call))
        ctx.count_late()
        self.noted.add(call.uuid)

    async def deliver(self, nursery: trio.Nursery) -> bool:
        """Start the upload of every awaited recording that appeared and settled."""
        ctx = self.ctx
        awaited = [late for name, late in ctx.late.items() if name not in self.busy]
        if not awaited:
            return False
        ready, _settling = await trio.to_thread.run_sync(
            settled_late_recordings, awaited, self.tracker, trio.current_time()
        )
        for late in ready:
            self.busy.add(late.cdr.name)
            self.tracker.forget(late.cdr.name)
            nursery.start_soon(self._deliver, late)
        return bool(ready)

    async def _deliver(self, late: LateRecording) -> None:
        try:
            await run_guarded(self.ctx, late.cdr.name, deliver_late, self.ctx, late)
        finally:
            self.busy.discard(late.cdr.name)
