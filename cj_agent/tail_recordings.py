"""Recordings of tailed calls: awaited in the pending directory, like late recordings.

A tailed file (Master.csv) cannot be finished or archived per call, so once the server
acknowledged a call that names a recording, a small *note* is written to the source's
pending directory: a compact CDR (`<uuid>.json`, written to a temporary file, fsynced,
renamed) naming the recording. From there the agent's late-recording machinery
(`pipeline.deliver_late`) uploads the recording once it appeared and settled, then
finishes (deletes or archives) the recording and the note. The note is written before
the file's offset passes the call, so a crash in between re-reads the lines and writes
it again; a recording the server already has (a re-read after its upload) is not
awaited again.

The call's recording is resolved (`SourceContext.resolve`, the contract of
`cj_agent.recordings`) before the call is sent, so the server is sent the found file's
base name, or no name when a `uniqueid:` lookup found nothing (such a lookup looks at
the dated directories and the top level only: no tree walk per call). The note's
`rnam` is that base name; its `cj_recording` object, `{"name": <the parser's
reference: a path or a lookup key>, "legs": [caller, callee] | null}`, is what the
pending loader (`SourceContext.load_pending`) resolves again after a restart. Two leg
files (MixMonitor `r()`/`t()`) go through the same merge as the directory pipeline
(`pipeline.upload_and_finish`).
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
from cj_agent.recordings import RecordingTarget
from cj_agent.source import run_guarded, settled_late_recordings  # source imports tail lazily
from cj_agent.watch import SettleTracker

_DIRECTIONS = {Direction.INBOUND: "inc", Direction.OUTBOUND: "out", Direction.INTERNAL: "int"}


def note_document(call: Call, upload_name: str | None = None) -> dict[str, Any]:
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
        "rnam": upload_name or call.recording_name,
        "rtag": "private" if call.private else "public",
        "hang": call.hangup_cause,
        "note": "the recording of a tailed call, awaited (cj_agent.tail_recordings)",
        "cj_recording": {
            "name": call.recording_name,
            "legs": list(call.recording_legs) if call.recording_legs is not None else None,
        },
    }


def write_note(directory: Path, call: Call, upload_name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{call.uuid}.json"
    temporary = directory / f".{target.name}.tmp"
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(note_document(call, upload_name), file, ensure_ascii=False)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(target)
    return target


class TailRecordings:
    """The awaited recordings of one tailed source."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        # Calls whose recording is awaited or was sent, with the name sent to the
        # server (a linger re-send of the call must not lose it).
        self.noted: dict[UUID, str | None] = {}
        self.tracker = SettleTracker(ctx.config.settle_s, ctx.config.max_tracked_files)
        self.busy: set[str] = set()

    async def resolve(self, call: Call) -> tuple[RecordingTarget | None, str | None]:
        """The recording of `call` and the name to send to the server (None: none)."""
        if call.uuid in self.noted:
            return None, self.noted[call.uuid]
        if call.recording_name is None and call.recording_legs is None:
            return None, None
        try:
            resolved = await trio.to_thread.run_sync(self.ctx.resolve, call)
        except UnsafeRecordingName as exc:
            self.ctx.log.warning("recording_refused", call_uuid=str(call.uuid), reason=str(exc))
            return None, None
        return resolved.target, resolved.server_name

    async def note(self, call: Call, target: RecordingTarget | None) -> None:
        """Await `call`'s recording (`target`, from `resolve`), run before the offset
        passes the call."""
        ctx = self.ctx
        if call.uuid in self.noted:
            return
        if target is None:
            self.noted[call.uuid] = None  # no recording, a lookup that found nothing
            return
        present = await trio.to_thread.run_sync(target.locate)
        if present is None and await server_has_recording(ctx, call.uuid):
            self.noted[call.uuid] = target.upload_name  # sent before a restart
            return
        path = await trio.to_thread.run_sync(
            write_note, ctx.source.late_dir, call, target.upload_name
        )
        ctx.late[path.name] = LateRecording(path, call.uuid, target, ctx.day_of(call))
        ctx.count_late()
        self.noted[call.uuid] = target.upload_name

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
