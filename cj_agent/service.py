"""The agent daemon: watch every configured source and upload what appears.

    agent = await nursery.start(serve, settings)       # tests; cj-agent runs it via run_daemon
    await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)

One task per source polls its CDR directory (`watch`), hands ready CDRs to their own
tasks (`pipeline.process_cdr`, at most `max_calls_in_progress` at once) and watches the
recordings awaited in `pending/`. Requests to the server, uploads included, are
bounded by `max_concurrent_uploads` (`ServerLink`).

Shutdown (`shutdown` set, i.e. SIGTERM): no new files are taken, work waiting for a
recording or for the server is dropped at once (it is redone after a restart), and
uploads in flight get `grace_period_s` to finish before they are cancelled.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from cj.config import AgentSettings
from cj_agent.pipeline import (
    LateRecording,
    SourceContext,
    deliver_late,
    load_late,
    process_cdr,
    reconcile_late,
)
from cj_agent.stats import AgentStats
from cj_agent.systemd import Notifier, run_watchdog, watchdog_interval
from cj_agent.uploader import Abandoned, ServerLink
from cj_agent.watch import (
    IdlePoll,
    ScanResult,
    SettleTracker,
    compile_patterns,
    scan_directory,
)

log = structlog.get_logger(__name__)

ERROR_PAUSE_S = 30.0  # after an unexpected failure, before the same file is tried again


class AgentConfigError(ValueError):
    """The agent cannot start with this configuration; the message names the key."""


@dataclass
class Agent:
    """What `serve` reports once running: progress counters and the server link."""

    stats: AgentStats
    link: ServerLink


async def serve(
    settings: AgentSettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED,
    link: ServerLink | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Run the agent until cancelled, or until `shutdown` is set (then drain).

    `link` and `notifier` default to the configured server and `$NOTIFY_SOCKET`.
    """
    config = settings.agent
    if not config.sources:
        raise AgentConfigError("agent.sources is empty: configure at least one source")
    token = config.token.get_secret_value() if config.token is not None else None
    if link is None:
        try:
            link = ServerLink.for_config(
                config.server,
                token=token,
                tls=config.tls,
                tls_ca_file=config.tls_ca_file,
                request_timeout_s=config.request_timeout_s,
                concurrency=config.max_concurrent_uploads,
            )
        except ValueError as exc:
            raise AgentConfigError(f"agent.server / agent.tls_ca_file: {exc}") from None
    notifier = notifier or Notifier.from_environment()
    stats = AgentStats()
    stopping = trio.Event()
    contexts = [SourceContext(source, config, link, stats, stopping) for source in config.sources]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            work = trio.CancelScope()
            work_done = trio.Event()
            sources_started = await nursery.start(_run_sources, contexts, work, work_done)
            assert sources_started is None
            interval = config.watchdog_interval_s or watchdog_interval()
            if interval is not None and notifier.enabled:
                nursery.start_soon(run_watchdog, notifier, interval, stats.summary)
            log.info(
                "agent_started",
                server=config.server,
                sources=[source.name for source in config.sources],
            )
            notifier.ready(f"watching {len(contexts)} source(s); {stats.summary()}")
            task_status.started(Agent(stats=stats, link=link))
            if shutdown is None:
                await trio.sleep_forever()
            else:
                await shutdown.wait()
            log.info(
                "agent_stopping",
                in_progress=stats.in_progress,
                grace_period_s=config.grace_period_s,
            )
            notifier.stopping(f"stopping; {stats.in_progress} in progress")
            stopping.set()
            link.stop()
            work.deadline = trio.current_time() + config.grace_period_s
            await work_done.wait()
            if work.cancelled_caught:
                log.warning("agent_abandoned_work", note="unfinished files stay for the next start")
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()


async def _run_sources(
    contexts: list[SourceContext],
    work: trio.CancelScope,
    work_done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        with work:
            async with trio.open_nursery() as nursery:
                for ctx in contexts:
                    await nursery.start(run_source, ctx)
                task_status.started()
    finally:
        work_done.set()


async def run_source(
    ctx: SourceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Poll one source until the agent stops; its file tasks run in this task's nursery."""
    config, source = ctx.config, ctx.source
    pattern = compile_patterns(source.cdr_patterns)
    tracker = SettleTracker(config.settle_s, config.max_tracked_files)
    late_tracker = SettleTracker(config.settle_s, config.max_tracked_files)
    poll = IdlePoll(config.poll_min_s, config.poll_max_s)
    busy_names: set[str] = set()  # CDRs being handled
    busy_late: set[str] = set()  # pending CDRs whose recording is being uploaded
    slot_freed = trio.Event()
    scan_problem: str | None = None
    await load_late(ctx)
    task_status.started()
    if not source.cdr_dir.is_dir():
        ctx.log.warning("cdr_dir_missing", cdr_dir=str(source.cdr_dir), note="polling for it")

    def release(name: str, names: set[str]) -> None:
        nonlocal slot_freed
        names.discard(name)
        ctx.stats.add(in_progress=-1)
        slot_freed.set()
        slot_freed = trio.Event()

    async def handle_cdr(name: str) -> None:
        try:
            await _guarded(ctx, name, process_cdr, ctx, source.cdr_dir / name)
        finally:
            release(name, busy_names)

    async def handle_late(late: LateRecording) -> None:
        try:
            await _guarded(ctx, late.cdr.name, deliver_late, ctx, late)
        finally:
            release(late.cdr.name, busy_late)

    async with trio.open_nursery() as tasks:
        if ctx.late:
            tasks.start_soon(_guarded, ctx, "pending", reconcile_late, ctx)
        while not ctx.stopping.is_set():
            room = config.max_calls_in_progress - len(busy_names) - len(busy_late)
            now = trio.current_time()
            try:
                result = await trio.to_thread.run_sync(
                    functools.partial(
                        scan_directory,
                        source.cdr_dir,
                        pattern,
                        tracker,
                        now,
                        skip=frozenset(busy_names),
                        limit=max(room, 0),
                    )
                )
            except OSError as exc:  # permissions, a dead NFS mount …: keep trying
                if str(exc) != scan_problem:
                    scan_problem = str(exc)
                    ctx.log.error("cdr_dir_unreadable", cdr_dir=str(source.cdr_dir), error=str(exc))
                result = ScanResult(ready=[], settling=0, changed=False, more=False)
            else:
                if scan_problem is not None:
                    scan_problem = None
                    ctx.log.info("cdr_dir_readable", cdr_dir=str(source.cdr_dir))
            late_ready: list[LateRecording] = []
            if ctx.late:
                awaited = [late for name, late in ctx.late.items() if name not in busy_late]
                late_ready = await trio.to_thread.run_sync(
                    _settled_late, awaited, late_tracker, now
                )
            ctx.stats.add(polls=1)
            if ctx.stopping.is_set():
                break
            for name in result.ready:
                busy_names.add(name)
                ctx.stats.add(in_progress=1)
                tasks.start_soon(handle_cdr, name)
            for late in late_ready[: max(room - len(result.ready), 0)]:
                busy_late.add(late.cdr.name)
                late_tracker.forget(late.cdr.name)
                ctx.stats.add(in_progress=1)
                tasks.start_soon(handle_late, late)
            interval = poll.next_interval(busy=result.busy or bool(late_ready))
            with trio.move_on_after(interval):
                if result.more:
                    # A backlog bigger than our slots: look again as soon as one frees.
                    await _first(slot_freed.wait, ctx.stopping.wait)
                else:
                    await ctx.stopping.wait()


def _settled_late(
    awaited: list[LateRecording], tracker: SettleTracker, now: float
) -> list[LateRecording]:
    """The awaited recordings that appeared and settled (a stat each; worker thread)."""
    ready = []
    tracker.begin_scan()
    for late in awaited:
        try:
            stat = late.recording.stat()
        except OSError:
            continue
        if tracker.observe(late.cdr.name, stat.st_size, stat.st_mtime_ns, now) is True:
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
