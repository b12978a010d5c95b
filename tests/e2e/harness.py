"""Daemons as separate OS processes, for end-to-end and fault-injection tests.

    harness = Harness(tmp_path / "logs")
    await harness.start("api", [sys.executable, "-m", "cj_api"], env, ready=rest_ready)
    await harness.kill9("api")          # SIGKILL to its process group, like a crash
    await harness.restart("api")        # same command and environment; waits until ready
    await harness.aclose()              # at teardown: every process group is killed

Each daemon runs in its own process group (`start_new_session`), with its JSON log
lines (stderr) appended to `<logs>/<name>.log` across restarts. "Ready" means the
daemon logged `"event": "running"` (cj/daemon.py, once `serve` reported ready) after
its latest start, plus an optional extra probe (the API's REST `/readyz`).

Should this test process itself die without tearing down (SIGKILL, a crashed
interpreter), a watchdog process, whose stdin is a pipe only we hold, sees EOF and
kills every process group still registered.

Waiting on separate processes means polling external state; `eventually` polls at a
short interval, fails fast if a daemon that should be running has died, and is
bounded by its timeout (callers also bound whole tests with `trio.fail_after`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import trio

T = TypeVar("T")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2

# Reads "+<pgid>" / "-<pgid>" lines; at EOF (our end closed, however we died) kills
# the process groups still registered.
_WATCHDOG = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class DaemonDied(AssertionError):
    """A daemon that should be running exited; the message carries its log tail."""


Probe = Callable[[], Awaitable[bool]]


@dataclass
class Daemon:
    """One daemon: how to start it, where it logs, its current process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    ready_probe: Probe | None = None
    process: trio.Process | None = None
    starts: int = 0
    log_offset: int = 0  # where the current incarnation's log begins
    expected_running: bool = False
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def events(self, *, current: bool = False) -> list[dict[str, Any]]:
        """The JSON log events, of every incarnation (or only the current one)."""
        return parse_events(self.log_text(current=current))

    def log_text(self, *, current: bool = False) -> str:
        try:
            with self.log_path.open("rb") as file:
                if current:
                    file.seek(self.log_offset)
                return file.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def parse_events(text: str) -> list[dict[str, Any]]:
    """JSON objects, one per line; other lines (a stray print, a warning) are skipped."""
    events = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if isinstance(event, dict):
            events.append(event)
    return events


class Harness:
    """The daemons of one test; see the module documentation."""

    def __init__(self, log_dir: Path, *, cwd: Path | None = None) -> None:
        self.log_dir = log_dir
        self.cwd = cwd or log_dir
        self.daemons: dict[str, Daemon] = {}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for pytest must not reach it
            text=True,
        )

    # --- lifecycle -------------------------------------------------------------------

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        ready: Probe | None = None,
        wait: bool = True,
        timeout_s: float = START_TIMEOUT_S,
    ) -> Daemon:
        """Start a daemon (its first time); with `wait`, return once it is ready."""
        if name in self.daemons:
            raise ValueError(f"daemon {name!r} exists: use restart()")
        daemon = Daemon(
            name=name,
            argv=list(argv),
            env=dict(env),
            cwd=self.cwd,
            log_path=self.log_dir / f"{name}.log",
            ready_probe=ready,
        )
        self.daemons[name] = daemon
        await self._spawn(daemon)
        if wait:
            await self.wait_ready(name, timeout_s=timeout_s)
        return daemon

    async def _spawn(self, daemon: Daemon) -> None:
        daemon.starts += 1
        with daemon.log_path.open("ab") as log:
            daemon.log_offset = log.tell()
            # Opened by us, inherited by the child: the file outlives every incarnation.
            daemon.process = await trio.lowlevel.open_process(
                list(daemon.argv),
                cwd=daemon.cwd,
                env=dict(daemon.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        daemon.pids.append(daemon.process.pid)
        daemon.expected_running = True
        self._tell_watchdog(f"+{daemon.process.pid}")

    async def wait_ready(self, name: str, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the daemon's current incarnation logged "running" (and its probe passes)."""
        daemon = self.daemons[name]

        async def ready() -> bool:
            self._check_alive(daemon)
            running = any(e.get("event") == "running" for e in daemon.events(current=True))
            if not running:
                return False
            return daemon.ready_probe is None or await daemon.ready_probe()

        await self.eventually(ready, timeout_s=timeout_s, what=f"{name} ready")

    async def kill9(self, name: str) -> int:
        """SIGKILL the daemon's process group (a crash); returns the killed pid."""
        daemon = self.daemons[name]
        process = daemon.process
        if process is None or process.returncode is not None:
            raise AssertionError(f"kill9({name!r}): it is not running")
        daemon.expected_running = False
        _killpg(process.pid, signal.SIGKILL)
        with trio.fail_after(STOP_TIMEOUT_S):
            await process.wait()
        self._tell_watchdog(f"-{process.pid}")
        return process.pid

    async def stop(self, name: str, *, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful), SIGKILL after `timeout_s`; returns the exit status."""
        daemon = self.daemons[name]
        process = daemon.process
        if process is None:
            raise AssertionError(f"stop({name!r}): never started")
        daemon.expected_running = False
        if process.returncode is None:
            _killpg(process.pid, signal.SIGTERM)
            with trio.move_on_after(timeout_s):
                await process.wait()
            if process.returncode is None:
                _killpg(process.pid, signal.SIGKILL)
                await process.wait()
        _killpg(process.pid, signal.SIGKILL)  # stray children of a daemon that exited
        self._tell_watchdog(f"-{process.pid}")
        assert process.returncode is not None
        return process.returncode

    async def restart(self, name: str, *, timeout_s: float = START_TIMEOUT_S) -> Daemon:
        """Start a stopped or killed daemon again, same command; wait until ready."""
        daemon = self.daemons[name]
        if daemon.running:
            raise AssertionError(f"restart({name!r}): still running (kill9 or stop it first)")
        await self._spawn(daemon)
        await self.wait_ready(name, timeout_s=timeout_s)
        return daemon

    async def aclose(self) -> None:
        """Kill every daemon's process group; always called at teardown."""
        with trio.CancelScope(shield=True):
            for daemon in self.daemons.values():
                process = daemon.process
                daemon.expected_running = False
                if process is None:
                    continue
                _killpg(process.pid, signal.SIGKILL)
                with trio.move_on_after(STOP_TIMEOUT_S):
                    await process.wait()
                self._tell_watchdog(f"-{process.pid}")
        if self._watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                self._watchdog.stdin.close()
        self._watchdog.wait(timeout=STOP_TIMEOUT_S)

    # --- observing -------------------------------------------------------------------

    def pid(self, name: str) -> int:
        pid = self.daemons[name].pid
        assert pid is not None, f"{name} was never started"
        return pid

    def events(self, name: str, event: str | None = None) -> list[dict[str, Any]]:
        """Log events of a daemon (all incarnations), optionally only those named `event`."""
        events = self.daemons[name].events()
        return events if event is None else [e for e in events if e.get("event") == event]

    def check_alive(self) -> None:
        """Raise DaemonDied if a daemon that should be running has exited."""
        for daemon in self.daemons.values():
            self._check_alive(daemon)

    def _check_alive(self, daemon: Daemon) -> None:
        if daemon.expected_running and not daemon.running:
            code = daemon.process.returncode if daemon.process else None
            raise DaemonDied(
                f"{daemon.name} exited unexpectedly (status {code}); log tail:\n{daemon.log_tail()}"
            )

    @overload
    async def eventually(
        self,
        check: Callable[[], Awaitable[T]],
        *,
        timeout_s: float,
        what: str,
        interval: float = POLL_S,
    ) -> T: ...

    @overload
    async def eventually(
        self, check: Callable[[], T], *, timeout_s: float, what: str, interval: float = POLL_S
    ) -> T: ...

    async def eventually(
        self, check: Callable[[], Any], *, timeout_s: float, what: str, interval: float = POLL_S
    ) -> Any:
        """Poll `check` (sync or async) until it returns something truthy, returned.

        Fails with AssertionError naming `what` after `timeout_s` seconds, and at once
        with DaemonDied when a daemon that should be running died meanwhile.
        """
        return await _poll(check, timeout_s, what, interval, self.check_alive)

    def report(self, lines: int = 60) -> str:
        """Every daemon's log tail, for a failed test's report."""
        parts = []
        for daemon in self.daemons.values():
            state = (
                "running"
                if daemon.running
                else f"exited {daemon.process and daemon.process.returncode}"
            )
            parts.append(
                f"===== {daemon.name} ({state}; started {daemon.starts}x; "
                f"log {daemon.log_path}) =====\n{daemon.log_tail(lines)}"
            )
        return "\n".join(parts)

    def _tell_watchdog(self, line: str) -> None:
        stdin = self._watchdog.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError):
            stdin.write(line + "\n")
            stdin.flush()


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout_s: float, what: str, interval: float = POLL_S
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], *, timeout_s: float, what: str, interval: float = POLL_S
) -> T: ...


async def eventually(
    check: Callable[[], Any], *, timeout_s: float, what: str, interval: float = POLL_S
) -> Any:
    """`Harness.eventually` without daemons to watch (in-process tests)."""
    return await _poll(check, timeout_s, what, interval, lambda: None)


async def _poll(
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
    interval: float,
    alive: Callable[[], None],
) -> Any:
    deadline = trio.current_time() + timeout_s
    while True:
        alive()
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if trio.current_time() >= deadline:
            raise AssertionError(f"{what}: not the case after {timeout_s:g} s")
        await trio.sleep(interval)
