"""The polling loop of one source: find ready files, hand them to their own tasks.

Each pass lists the CDR directory once (`watch.scan_directory`) and queues up to
`max_tracked_files` ready CDRs; up to `max_calls_in_progress` of them are handled at
once (`pipeline.process_cdr`), the rest wait in the queue and are handed out as
slots free up, without listing the directory again, so a backlog of 100,000 files
drains in passes of thousands rather than one pass per file. The recordings awaited
in `pending/` are checked on every pass too (`pipeline.deliver_late`).

Filesystem events (`events.watch_directories`, with `agent.watch_events`) make the
next pass come at once when something changes in the CDR or recordings directory, so an
idle agent picks a new call up within a second instead of after its grown poll interval;
while events flow, a file is ready once quiet for `agent.event_settle_s` (writing sends
events) instead of `settle_s`. Polling goes on regardless: it is what works on NFS.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from cj.cdr.lines import is_line_format
from cj_agent.events import watch_directories
from cj_agent.pipeline import (
    LateRecording,
    SourceContext,
    deliver_late,
    load_late,
    process_cdr,
    reconcile_late,
    settle_key,
)
from cj_agent.uploader import Abandoned
from cj_agent.watch import IdlePoll, ScanResult, SettleTracker, compile_patterns, scan_directory

ERROR_PAUSE_S = 30.0  # after an unexpected failure, before the same file is tried again
# Passes woken by events come at most this often (a PBX writing many files at once
# sends a stream of events; one pass sees them all).
MIN_EVENT_PASS_GAP_S = 0.1


async def run_source(
    ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Poll one source until the agent stops; its file tasks run in this task's nursery.

    A source in a line format (asterisk_csv …) is tailed instead (`tail.run_tail`).
    """
    if is_line_format(ctx.source.format):
        from cj_agent.tail import run_tail  # tail imports pipeline, as this module does

        await run_tail(ctx, task_status=task_status)
        return
    await load_late(ctx)
    loop = SourceLoop(ctx)
    task_status.started()
    if not ctx.source.cdr_dir.is_dir():
        ctx.log.warning("cdr_dir_missing", cdr_dir=str(ctx.source.cdr_dir), note="polling for it")
    watcher = trio.CancelScope()  # the events end with the loop; file tasks may not

    async def watch(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with watcher:
            directories = [ctx.source.cdr_dir, ctx.source.recordings_dir]
            await watch_directories(
                directories, loop.wake, loop.set_events_live, task_status=task_status
            )

    async with trio.open_nursery() as tasks:
        if ctx.config.watch_events:
            await tasks.start(watch)
        if ctx.late:
            tasks.start_soon(run_guarded, ctx, "pending", reconcile_late, ctx)
        try:
            await loop.run(tasks)
        finally:
            watcher.cancel()


class SourceLoop:
    """The state of one source's polling; see the module documentation."""

    def __init__(self, ctx: SourceContext) -> None:
        config = ctx.config
        self.ctx = ctx
        self.pattern = compile_patterns(ctx.source.cdr_patterns)
        self.tracker = SettleTracker(config.settle_s, config.max_tracked_files)
        self.late_tracker = SettleTracker(config.settle_s, config.max_tracked_files)
        self.poll = IdlePoll(config.poll_min_s, config.poll_max_s)
        self.queued: deque[str] = deque()  # ready CDRs not handed out yet
        self.busy: set[str] = set()  # CDRs being handled, and queued ones
        self.busy_late: set[str] = set()  # pending CDRs whose recording is being sent
        self.running = 0
        self.slot_freed = trio.Event()
        self.woken = trio.Event()  # a filesystem event since the last pass
        self.events_live = False
        self.scan_problem: str | None = None

    def wake(self) -> None:
        """Something changed in a watched directory: pass again now."""
        self.woken.set()

    def set_events_live(self, live: bool) -> None:
        """Events flow (or stopped): files settle by quiet time accordingly."""
        if live == self.events_live:
            return
        self.events_live = live
        config = self.ctx.config
        settle = min(config.settle_s, config.event_settle_s) if live else config.settle_s
        self.tracker.settle_s = self.late_tracker.settle_s = self.ctx.settle_s = settle

    @property
    def room(self) -> int:
        return self.ctx.config.max_calls_in_progress - self.running

    async def run(self, tasks: trio.Nursery) -> None:
        ctx = self.ctx
        next_scan = trio.current_time()
        last_pass = -float("inf")
        while not ctx.stopping.is_set():
            now = trio.current_time()
            busy = bool(self.queued)
            # While a backlog is queued, listing the directory again is only worth it
            # once the queue runs low (a pass over 100,000 files is not free).
            low = len(self.queued) < ctx.config.max_calls_in_progress
            if not self.queued or (low and now >= next_scan):
                last_pass = now
                result = await self._scan(now)
                late_ready, late_settling = await self._settled_late(now)
                ctx.stats.add(polls=1)
                if ctx.stopping.is_set():
                    break
                self.queued.extend(result.ready)
                self.busy.update(result.ready)
                for late in late_ready[: max(self.room, 0)]:
                    self.busy_late.add(late.cdr.name)
                    self.late_tracker.forget(late.cdr.name)
                    self._start(tasks, self._handle_late, late)
                busy = busy or result.busy or bool(late_ready)
                interval = self.poll.next_interval(busy=busy)
                if self.events_live and (result.settling or late_settling):
                    # Files are settling: look again when they may be ready, not at the
                    # poll floor (events may not come again for a quiet file).
                    interval = min(interval, max(self.tracker.settle_s, MIN_EVENT_PASS_GAP_S))
                next_scan = trio.current_time() + interval
            while self.queued and self.room > 0:
                self._start(tasks, self._handle_cdr, self.queued.popleft())
            with trio.move_on_at(next_scan):
                if self.queued:  # a backlog: hand out more as soon as a slot frees
                    await first_of(self.slot_freed.wait, ctx.stopping.wait)
                else:
                    await first_of(ctx.stopping.wait, self.woken.wait)
            if self.woken.is_set():
                self.woken = trio.Event()
                self.poll.next_interval(busy=True)  # back to the floor: things happen
                next_scan = min(
                    next_scan, max(trio.current_time(), last_pass + MIN_EVENT_PASS_GAP_S)
                )
                if next_scan > trio.current_time():
                    with trio.move_on_at(next_scan):
                        await ctx.stopping.wait()

    async def _scan(self, now: float) -> ScanResult:
        ctx = self.ctx
        limit = max(ctx.config.max_tracked_files - len(self.queued), 0)
        try:
            result = await trio.to_thread.run_sync(
                functools.partial(
                    scan_directory,
                    ctx.source.cdr_dir,
                    self.pattern,
                    self.tracker,
                    now,
                    skip=frozenset(self.busy),
                    limit=limit,
                )
            )
        except OSError as exc:  # permissions, a dead NFS mount …: keep trying
            if str(exc) != self.scan_problem:
                self.scan_problem = str(exc)
                ctx.log.error("cdr_dir_unreadable", cdr_dir=str(ctx.source.cdr_dir), error=str(exc))
            return ScanResult(ready=[], settling=0, changed=False, more=False)
        if self.scan_problem is not None:
            self.scan_problem = None
            ctx.log.info("cdr_dir_readable", cdr_dir=str(ctx.source.cdr_dir))
        return result

    async def _settled_late(self, now: float) -> tuple[list[LateRecording], int]:
        if not self.ctx.late:
            return [], 0
        awaited = [late for name, late in self.ctx.late.items() if name not in self.busy_late]
        return await trio.to_thread.run_sync(
            settled_late_recordings, awaited, self.late_tracker, now
        )

    def _start(
        self, tasks: trio.Nursery, handler: Callable[[Any], Awaitable[None]], item: Any
    ) -> None:
        self.running += 1
        self.ctx.stats.add(in_progress=1)
        tasks.start_soon(handler, item)

    def _release(self) -> None:
        self.running -= 1
        self.ctx.stats.add(in_progress=-1)
        self.slot_freed.set()
        self.slot_freed = trio.Event()

    async def _handle_cdr(self, name: str) -> None:
        try:
            await run_guarded(self.ctx, name, process_cdr, self.ctx, self.ctx.source.cdr_dir / name)
        finally:
            self.busy.discard(name)
            self._release()

    async def _handle_late(self, late: LateRecording) -> None:
        name = late.cdr.name
        try:
            await run_guarded(self.ctx, name, deliver_late, self.ctx, late)
        finally:
            self.busy_late.discard(name)
            self._release()


def settled_late_recordings(
    awaited: list[LateRecording], tracker: SettleTracker, now: float
) -> tuple[list[LateRecording], int]:
    """The awaited recordings whose file(s) appeared and settled, and how many appeared
    but are still settling (worker thread)."""
    ready = []
    settling = 0
    tracker.begin_scan()
    for late in awaited:
        located = late.target.locate()
        if located is None:
            continue
        try:
            size, mtime_ns = settle_key(located)
        except OSError:
            continue
        if tracker.observe(late.cdr.name, size, mtime_ns, now) is True:
            ready.append(late)
        else:
            settling += 1
    tracker.end_scan()
    return ready, settling


async def run_guarded(
    ctx: SourceContext, what: str, work: Callable[..., Awaitable[None]], *args: Any
) -> None:
    """Run one file's work; an unexpected failure is logged and the file stays."""
    try:
        await work(*args)
    except Abandoned:
        pass
    except Exception:
        ctx.stats.add(errors=1)
        ctx.log.exception("file_failed", file=what, note="left in place; retried later")
        # Usually systemic (permissions, a full disk): do not spin on it.
        await ctx.pause(ERROR_PAUSE_S)


async def first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as any of `waits` returns."""
    async with trio.open_nursery() as nursery:

        async def run(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(run, wait)
