"""Filesystem events (inotify and its kin, through watchfiles) that wake a source's loop.

    await nursery.start(watch_directories, [cdr_dir, recordings_dir], loop.wake, loop.set_live)

Polling stays the safety net (NFS and other filesystems send no events; a watcher can
fail): events only make the next pass come at once. `set_live(True)` tells the loop that
events are being delivered, so it may settle files faster (a file that changes sends
events, so quiet means written); `set_live(False)` when they are not (a directory is
missing, the watcher failed, the kernel's watch limit is reached), and the watcher then
retries every `RETRY_S`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
import trio
from watchfiles import awatch

log = structlog.get_logger(__name__)

RETRY_S = 30.0
DEBOUNCE_MS = 20  # changes arriving together are reported together
STEP_MS = 10
# Longest time the watcher's thread waits before checking for cancellation: it bounds
# how long stopping the agent can wait for the thread.
WAIT_MS = 500


async def watch_directories(
    directories: Sequence[Path],
    wake: Callable[[], None],
    set_live: Callable[[bool], None],
    *,
    retry_s: float = RETRY_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call `wake()` whenever something changes in one of `directories`, until cancelled.

    Events are used only while every directory exists (they are checked again every
    `retry_s`); until then, and whenever the watcher fails, the loop polls alone.
    """
    wanted = list(dict.fromkeys(d.absolute() for d in directories))
    task_status.started()
    problem: str | None = "not started"  # so that the first success is logged
    while True:
        missing = [str(d) for d in wanted if not d.is_dir()]
        if missing:
            problem = _report(problem, f"missing {', '.join(missing)}")
        else:
            try:
                async for changes in awatch(
                    *wanted,
                    debounce=DEBOUNCE_MS,
                    step=STEP_MS,
                    rust_timeout=WAIT_MS,
                    recursive=False,
                    yield_on_timeout=True,
                ):
                    if problem is not None:
                        log.info("watching_directories", directories=[str(d) for d in wanted])
                        problem = None
                    set_live(True)
                    if changes:
                        wake()
                problem = _report(problem, "the watcher stopped")
            except (OSError, RuntimeError) as exc:  # watch limit, permissions, unmounted
                problem = _report(problem, f"watcher failed: {exc}")
        set_live(False)
        await trio.sleep(retry_s)


class Wakeup:
    """A flag that filesystem events raise and the loop takes down: `set()` from the
    watcher, `await wait()` then `clear()` in the loop."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()


def _report(previous: str | None, problem: str) -> str:
    if problem != previous:
        log.warning("directory_events_unavailable", problem=problem, note="polling only")
    return problem
