"""The polling loop of one source: find ready files, hand them to their own tasks.

Each pass lists the CDR directory once (`watch.scan_directory`) and queues up to
`max_tracked_files` ready CDRs; up to `max_calls_in_progress` of them are handled at
once (`pipeline.process_cdr`), the rest wait in the queue and are handed out as
slots free up, without listing the directory again, so a backlog of 100,000 files
drains in passes of thousands rather than one pass per file. The recordings awaited
in `pending/` are checked on every pass too (`pipeline.deliver_late`).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

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


async def run_source(
    ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Poll one source until the agent stops; its file tasks run in this task's nursery."""
    await load_late(ctx)
    loop = SourceLoop(ctx)
    task_status.started()
    if not ctx.source.cdr_dir.is_dir():
        ctx.log.warning("cdr_dir_missing", cdr_dir=str(ctx.source.cdr_dir), note="polling for it")
    async with trio.open_nursery() as tasks:
        if ctx.late:
            tasks.start_soon(_guarded, ctx, "pending", reconcile_late, ctx)
        await loop.run(tasks)


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
        self.scan_problem: str | None = None

    @property
    def room(self) -> int:
        return self.ctx.config.max_calls_in_progress - self.running

    async def run(self, tasks: trio.Nursery) -> None:
        ctx = self.ctx
        next_scan = trio.current_time()
        while not ctx.stopping.is_set():
            now = trio.current_time()
            busy = bool(self.queued)
            # While a backlog is queued, listing the directory again is only worth it
            # once the queue runs low (a pass over 100,000 files is not free).
            low = len(self.queued) < ctx.config.max_calls_in_progress
            if not self.queued or (low and now >= next_scan):
                result = await self._scan(now)
                late_ready = await self._settled_late(now)
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
                next_scan = trio.current_time() + self.poll.next_interval(busy=busy)
            while self.queued and self.room > 0:
                self._start(tasks, self._handle_cdr, self.queued.popleft())
            with trio.move_on_at(next_scan):
                if self.queued:  # a backlog: hand out more as soon as a slot frees
                    await _first(self.slot_freed.wait, ctx.stopping.wait)
                else:
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

    async def _settled_late(self, now: float) -> list[LateRecording]:
        if not self.ctx.late:
            return []
        awaited = [late for name, late in self.ctx.late.items() if name not in self.busy_late]
        return await trio.to_thread.run_sync(_settled_late, awaited, self.late_tracker, now)

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
            await _guarded(self.ctx, name, process_cdr, self.ctx, self.ctx.source.cdr_dir / name)
        finally:
            self.busy.discard(name)
            self._release()

    async def _handle_late(self, late: LateRecording) -> None:
        name = late.cdr.name
        try:
            await _guarded(self.ctx, name, deliver_late, self.ctx, late)
        finally:
            self.busy_late.discard(name)
            self._release()


def _settled_late(
    awaited: list[LateRecording], tracker: SettleTracker, now: float
) -> list[LateRecording]:
    """The awaited recordings whose file(s) appeared and settled (worker thread)."""
    ready = []
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
    tracker.end_scan()
    return ready


async def _guarded(
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


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as any of `waits` returns."""
    async with trio.open_nursery() as nursery:

        async def run(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(run, wait)
