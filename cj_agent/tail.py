"""Tailing append-only CDR files (Asterisk Master.csv, JSON lines, mod_cdr_csv).

    agent.sources[].format = "asterisk_csv", cdr_patterns = ["Master.csv"]

Each matching file is read from its durable offset (`tail_state`); complete lines are
parsed by the source format's line parser (`cj.cdr.lines.LINE_FORMATS`), grouped into
calls by key (`assemble`) and sent through the agent's call batcher (AddCalls). The
guarantees (docs/asterisk.md):

- the offset only advances past lines whose calls the server acknowledged (or that
  were quarantined), so kill -9 at any moment loses no line; lines read again after a
  restart make the same calls again (deterministic uuids, upserts), so none is doubled;
- a half-written last line stays unread until its newline arrives;
- rotation (the name now points at another inode, or is gone): the old file is read
  to its end and its calls sent before the new file is read from 0; after a restart,
  a rotated file still in the directory under another name is found by its inode and
  finished first;
- truncation (size below the read position): the open calls are sent, then the file
  is read again from 0;
- a line that cannot be read is copied into the failed directory as
  `<file>.<offset>.line` with the reason in `<file>.<offset>.line.error`, and skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import trio

from cj.cdr import CdrError, CdrUnexpectedError
from cj.cdr.asterisk import LINE, CdrHeaderLine
from cj.cdr.lines import LineFormat, line_format
from cj.codec import call_to_pb
from cj.config import CdrFormat
from cj.rpc import RpcError
from cj_agent.assemble import CallAssembler, OpenCall
from cj_agent.events import Wakeup, watch_directories
from cj_agent.files import write_error_file
from cj_agent.pipeline import SourceContext, load_late, reconcile_late
from cj_agent.source import first_of, run_guarded
from cj_agent.tail_recordings import TailRecordings
from cj_agent.tail_state import FileMark, TailState
from cj_agent.uploader import Abandoned
from cj_agent.watch import IdlePoll, compile_patterns

READ_BYTES = 4 * 1024 * 1024  # per file and pass: a backlog is read in slices
MAX_LINE = 64 * 1024  # a longer "line" without a newline is refused as one line
DEFAULT_CSV_PATTERNS = ("Master.csv",)


@dataclass
class TailedFile:
    """One file being read: an open descriptor, and where its unread bytes start."""

    name: str
    file: BinaryIO
    dev: int
    ino: int
    position: int
    assembler: CallAssembler
    committed: int = -1  # the offset last saved
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def read_lines(self, *, to_end: bool = False) -> list[tuple[int, int, bytes]]:
        """Complete lines from `position` (`to_end`: the last one even without newline)."""
        self.file.seek(self.position)
        data = self.file.read(READ_BYTES)
        lines: list[tuple[int, int, bytes]] = []
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            if newline < 0:
                rest = len(data) - start
                if not (to_end or rest >= MAX_LINE):
                    break
                newline = len(data) - 1
            lines.append(
                (self.position + start, self.position + newline + 1, data[start : newline + 1])
            )
            start = newline + 1
        self.position += start
        return lines

    def close(self) -> None:
        self.file.close()


def tail_patterns(ctx: SourceContext) -> re.Pattern[str]:
    patterns = ctx.source.cdr_patterns
    if patterns == ("*.json",) and ctx.source.format in (
        CdrFormat.ASTERISK_CSV,
        CdrFormat.ASTERISK_CUSTOM,
        CdrFormat.FREESWITCH_CSV,
    ):
        patterns = DEFAULT_CSV_PATTERNS  # the default patterns are for JSON files
    return compile_patterns(patterns)


class SourceTail:
    """The tailing of one source's files; see the module documentation."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        self.format: LineFormat = line_format(ctx.source.format)
        self.pattern = tail_patterns(ctx)
        self.state = TailState(ctx.source.tail_state_dir)
        self.files: dict[str, TailedFile] = {}
        self.orphans: list[TailedFile] = []  # rotated away while the agent was stopped
        self.poll = IdlePoll(ctx.config.poll_min_s, ctx.config.poll_max_s)
        self.recordings = TailRecordings(ctx)

    def _assembler(self) -> CallAssembler:
        return CallAssembler(self.ctx.source.tail_settle_s, self.ctx.source.tail_linger_s)

    # --- files (worker thread) -------------------------------------------------------------

    def load(self) -> None:
        """Read the state; open files rotated away meanwhile (found by inode)."""
        self.state.load()
        if self.state.problem is not None:
            self.ctx.log.error(
                "tail_state_unreadable", error=self.state.problem, note="reading all files from 0"
            )
        directory = self.ctx.source.cdr_dir
        for name, mark in list(self.state.files.items()):
            try:
                stat = (directory / name).stat()
                if (stat.st_dev, stat.st_ino) == (mark.dev, mark.ino):
                    continue
            except FileNotFoundError:
                pass
            except OSError:
                continue
            found = _find_inode(directory, mark)
            if found is None:
                self.ctx.log.warning(
                    "tail_rotated_file_gone",
                    file=name,
                    offset=mark.offset,
                    note="reading the new file from 0",
                )
                continue
            file = found.open("rb")
            self.orphans.append(
                TailedFile(
                    name, file, mark.dev, mark.ino, mark.offset, self._assembler(), mark.offset
                )
            )
            self.ctx.log.info(
                "tail_finishing_rotated_file", file=name, found=found.name, offset=mark.offset
            )

    def open_matching(self) -> None:
        """Open the matching files not open yet (at their saved offset if the same inode)."""
        directory = self.ctx.source.cdr_dir
        try:
            entries = [
                entry for entry in os.scandir(directory) if self.pattern.fullmatch(entry.name)
            ]
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name in self.files or not entry.is_file():
                continue
            try:
                file = open(entry.path, "rb")  # noqa: SIM115 - kept open across passes
                stat = os.fstat(file.fileno())
            except OSError as exc:
                self.ctx.log.error("tail_file_unreadable", file=entry.name, error=str(exc))
                continue
            mark = self.state.files.get(entry.name)
            position = 0
            if mark is not None and (mark.dev, mark.ino) == (stat.st_dev, stat.st_ino):
                position = mark.offset if mark.offset <= stat.st_size else 0
            if any(orphan.name == entry.name for orphan in self.orphans):
                position = 0
            self.files[entry.name] = TailedFile(
                entry.name, file, stat.st_dev, stat.st_ino, position, self._assembler(), -1
            )

    def changed(self, tailed: TailedFile) -> str | None:
        """`rotated` (the name points elsewhere or is gone), `truncated`, or None."""
        try:
            stat = (self.ctx.source.cdr_dir / tailed.name).stat()
        except FileNotFoundError:
            return "rotated"
        if (stat.st_dev, stat.st_ino) != (tailed.dev, tailed.ino):
            return "rotated"
        if stat.st_size < tailed.position:
            return "truncated"
        return None

    def parse(self, lines: list[tuple[int, int, bytes]]) -> list[Any]:
        options = self.ctx.options
        results: list[Any] = []
        for _, _, line in lines:
            try:
                results.append(self.format.parse_line(line, options))
            except CdrHeaderLine:
                results.append(None)
            except CdrError as exc:
                results.append(exc)
            except (
                TypeError,
                ValueError,
                KeyError,
                IndexError,
                AttributeError,
                OverflowError,
            ) as exc:
                # A parser bug must refuse one line, not stop the source.
                results.append(
                    CdrUnexpectedError(LINE, f"could not be read ({type(exc).__name__}: {exc})")
                )
        return results

    def refuse(self, name: str, offset: int, line: bytes, reason: str) -> Path:
        directory = self.ctx.source.quarantine_dir
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{name}.{offset}.line"
        temporary = target.with_name(f".{target.name}.tmp")
        with temporary.open("wb") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(target)
        write_error_file(target, reason)
        return target

    # --- the loop ------------------------------------------------------------------------

    async def step(self) -> bool:
        """One pass over every file; True when there was something to do."""
        busy = False
        for orphan in list(self.orphans):
            if await self._finish(orphan):
                self.orphans.remove(orphan)
                busy = True
            else:
                return True
        await trio.to_thread.run_sync(self.open_matching)
        for tailed in list(self.files.values()):
            change = await trio.to_thread.run_sync(self.changed, tailed)
            if change == "rotated":
                if not await self._finish(tailed):
                    return True
                del self.files[tailed.name]
                self.ctx.log.info("tail_file_rotated", file=tailed.name)
                busy = True
                continue
            if change == "truncated":
                if not await self._send_all(tailed, flush=True):
                    return True
                tailed.assembler.clear()
                tailed.position = 0
                self.ctx.log.warning(
                    "tail_file_truncated", file=tailed.name, note="reading it again from 0"
                )
            busy = await self._advance(tailed) or busy
        return busy

    async def _finish(self, tailed: TailedFile) -> bool:
        """Read a rotated file to its end and send all its calls; False if stopped first."""
        while True:
            lines = await trio.to_thread.run_sync(lambda: tailed.read_lines(to_end=True))
            if not lines:
                break
            await self._take(tailed, lines)
        if not await self._send_all(tailed, flush=True):
            return False
        tailed.close()
        return True

    async def _advance(self, tailed: TailedFile) -> bool:
        lines = await trio.to_thread.run_sync(tailed.read_lines)
        if lines:
            await self._take(tailed, lines)
        sent = await self._send_all(tailed)
        await self._commit(tailed)
        return bool(lines) or sent

    async def _take(self, tailed: TailedFile, lines: list[tuple[int, int, bytes]]) -> None:
        results = await trio.to_thread.run_sync(self.parse, lines)
        now = trio.current_time()
        refused = 0
        for (start, end, line), result in zip(lines, results, strict=True):
            if result is None:
                continue
            if isinstance(result, CdrError):
                refused += 1
                await trio.to_thread.run_sync(
                    self.refuse, tailed.name, start, line, f"unreadable CDR line: {result}"
                )
                self.ctx.log.warning(
                    "cdr_line_refused", file=tailed.name, offset=start, reason=str(result)
                )
                continue
            tailed.assembler.add(result.key, line.rstrip(b"\r\n"), result, start, end, now)
        self.ctx.stats.add(lines_read=len(lines), lines_refused=refused, quarantined=refused)

    async def _send_all(self, tailed: TailedFile, *, flush: bool = False) -> bool:
        """Send the due calls (all with `flush`); False when the agent stopped first."""
        due = tailed.assembler.due(trio.current_time(), flush=flush)
        if not due:
            return True
        stopped = False

        async def send(call: OpenCall) -> None:
            nonlocal stopped
            if not await self._send(tailed, call):
                stopped = True

        async with trio.open_nursery() as nursery:
            for call in due:
                nursery.start_soon(send, call)
        return not stopped

    async def _send(self, tailed: TailedFile, call: OpenCall) -> bool:
        assembler = tailed.assembler
        try:
            built = self.format.build_call(call.records(), self.ctx.options)
            target, server_name = await self.recordings.resolve(built)
            message = call_to_pb(replace(built, recording_name=server_name), include_raw=True)
        except (CdrError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            await self._refuse_call(tailed, call, f"unreadable call (linkedid {call.key}): {exc}")
            assembler.sent(call)
            return True
        try:
            await self.ctx.calls.add(message)
        except RpcError as exc:
            await self._refuse_call(
                tailed, call, f"the server refused the call {built.uuid}: {exc}"
            )
            assembler.sent(call)
            return True
        except Abandoned:
            assembler.sent(call, ok=False)
            return False
        await self.recordings.note(built, target)
        assembler.sent(call)
        self.ctx.stats.add(calls_uploaded=1)
        self.ctx.log.info(
            "call_uploaded", call_uuid=str(built.uuid), linkedid=call.key, legs=len(call.lines)
        )
        return True

    async def _refuse_call(self, tailed: TailedFile, call: OpenCall, reason: str) -> None:
        lines = sorted((offset, line) for line, (offset, _) in call.lines.items())
        for offset, line in lines:
            await trio.to_thread.run_sync(self.refuse, tailed.name, offset, line + b"\n", reason)
        self.ctx.stats.add(quarantined=len(lines))
        self.ctx.log.warning("call_refused", file=tailed.name, linkedid=call.key, reason=reason)

    async def _commit(self, tailed: TailedFile) -> None:
        now = trio.current_time()
        tailed.assembler.close_quiet(now, tailed.position)
        offset = tailed.assembler.commit_offset(tailed.position, now)
        if offset == tailed.committed:
            return
        self.state.files[tailed.name] = FileMark(tailed.dev, tailed.ino, offset)
        await trio.to_thread.run_sync(self.state.save)
        tailed.committed = offset
        self.ctx.stats.add(tail_commits=1)

    def next_wakeup(self, now: float) -> float | None:
        times = [t for f in self.files.values() if (t := f.assembler.next_event(now)) is not None]
        return min(times) if times else None

    def close(self) -> None:
        for tailed in [*self.files.values(), *self.orphans]:
            tailed.close()


async def run_tail(
    ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Tail one source's files until the agent stops (see the module documentation)."""
    tail = SourceTail(ctx)
    await trio.to_thread.run_sync(tail.load)
    await load_late(ctx)
    task_status.started()
    woken = Wakeup()
    watcher = trio.CancelScope()  # events end with the loop; deliveries may not

    async def watch(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with watcher:
            directories = [ctx.source.cdr_dir, ctx.source.recordings_dir]
            await watch_directories(directories, woken.set, _ignore, task_status=task_status)

    try:
        async with trio.open_nursery() as deliveries:
            if ctx.config.watch_events:
                await deliveries.start(watch)
            if ctx.late:
                deliveries.start_soon(run_guarded, ctx, "pending", reconcile_late, ctx)
            try:
                await _loop(ctx, tail, deliveries, woken)
            finally:
                watcher.cancel()
    finally:
        tail.close()


def _ignore(_live: bool) -> None:
    """Tailing reads complete lines: it needs no settle time, events or not."""


async def _loop(
    ctx: SourceContext, tail: SourceTail, deliveries: trio.Nursery, woken: Wakeup
) -> None:
    while not ctx.stopping.is_set():
        busy = await tail.step()
        busy = await tail.recordings.deliver(deliveries) or busy
        ctx.stats.add(polls=1)
        now = trio.current_time()
        wake = now + tail.poll.next_interval(busy=busy)
        event = tail.next_wakeup(now)
        if event is not None:
            wake = min(wake, max(event, now))
        with trio.move_on_at(wake):
            await first_of(ctx.stopping.wait, woken.wait)  # an append wakes it at once
        if woken.is_set():
            woken.clear()
            tail.poll.next_interval(busy=True)


def _find_inode(directory: Path, mark: FileMark) -> Path | None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False) and (stat.st_dev, stat.st_ino) == (
            mark.dev,
            mark.ino,
        ):
            return Path(entry.path)
    return None
