"""The process harness itself, with small stand-in daemons (a few lines of Python).

The `harness` fixture is the one of tests/e2e/conftest.py."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DaemonDied, Harness

# Logs "running" as cj/daemon.py does, then waits to be killed; with an argument, first
# starts a child in its process group (whose pid it prints) and exits with that status
# instead of waiting.
DAEMON = """
import json, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(json.dumps({"event": "child", "pid": child.pid}), file=sys.stderr, flush=True)
print(json.dumps({"event": "running", "daemon": "stand-in"}), file=sys.stderr, flush=True)
print("a line that is not JSON", file=sys.stderr, flush=True)
if len(sys.argv) > 1:
    sys.exit(int(sys.argv[1]))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def child_pid(h: Harness, name: str) -> int:
    return int(h.events(name, "child")[-1]["pid"])


async def test_start_kill9_restart_stop(harness: Harness) -> None:
    with trio.fail_after(30):
        await harness.start("d", [sys.executable, "-c", DAEMON], dict(os.environ))
        first = harness.pid("d")
        assert harness.daemons["d"].running
        assert await harness.kill9("d") == first
        assert harness.daemons["d"].process is not None
        assert harness.daemons["d"].process.returncode == -signal.SIGKILL
        await harness.restart("d")
        assert harness.pid("d") != first and harness.daemons["d"].starts == 2
        # Both incarnations' events are in the one log; the stray line is skipped.
        assert len(harness.events("d", "running")) == 2
        assert "not JSON" in harness.daemons["d"].log_text()
        assert await harness.stop("d") == -signal.SIGTERM
    report = harness.report()
    assert "===== d (exited -15; started 2x" in report


async def test_a_daemon_that_dies_fails_the_wait_at_once(harness: Harness) -> None:
    with trio.fail_after(30):
        await harness.start(
            "dies", [sys.executable, "-c", DAEMON, "3"], dict(os.environ), wait=False
        )
        with pytest.raises(DaemonDied, match=r"dies exited unexpectedly \(status 3\)"):
            await harness.eventually(lambda: False, timeout_s=25, what="never")


async def test_eventually_names_what_did_not_happen(harness: Harness) -> None:
    with trio.fail_after(10), pytest.raises(AssertionError, match="the moon: not the case"):
        await harness.eventually(lambda: False, timeout_s=0.3, interval=0.05, what="the moon")


async def test_teardown_kills_the_whole_process_group(tmp_path: Path) -> None:
    h = Harness(tmp_path / "logs")
    with trio.fail_after(30):
        await h.start("d", [sys.executable, "-c", DAEMON], dict(os.environ))
        child = child_pid(h, "d")
        assert alive(child)
        await h.aclose()
        await h.eventually(lambda: not alive(child), timeout_s=10, what="the child killed")


async def test_the_watchdog_kills_the_groups_when_the_test_process_is_gone(
    tmp_path: Path,
) -> None:
    """Closing the watchdog's pipe is what the death of this process would do."""
    h = Harness(tmp_path / "logs")
    try:
        with trio.fail_after(30):
            await h.start("d", [sys.executable, "-c", DAEMON], dict(os.environ))
            daemon, child = h.pid("d"), child_pid(h, "d")
            h.daemons["d"].expected_running = False  # what follows kills it on purpose
            assert h._watchdog.stdin is not None
            h._watchdog.stdin.close()
            process = h.daemons["d"].process
            assert process is not None
            await process.wait()
            assert process.returncode == -signal.SIGKILL
            await h.eventually(lambda: not alive(child), timeout_s=10, what="child killed")
            assert not alive(daemon)
    finally:
        await h.aclose()
