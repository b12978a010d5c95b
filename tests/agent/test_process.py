"""`python -m cj_agent` as a real process: systemd notifications, SIGTERM, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fixtures.api import AGENT_TOKEN, RunningApi

from .helpers import SAMPLE_CALLS, WAV, Spool, compact_cdr, server_calls, sha256


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


def agent_env(spool: Spool, server: str, **extra: str) -> dict[str, str]:
    source = {
        "name": "pbx-test",
        "cdr_dir": str(spool.cdr),
        "recordings_dir": str(spool.recordings),
        "timezone": "Europe/Moscow",
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CJ_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env.update(
        {
            "CJ_AGENT_SERVER": server,
            "CJ_AGENT_TOKEN": AGENT_TOKEN,
            "CJ_AGENT_SOURCES": json.dumps([source]),
            "CJ_AGENT_SETTLE_S": "0.05",
            "CJ_AGENT_POLL_MIN_S": "0.02",
            "CJ_AGENT_POLL_MAX_S": "0.2",
            "CJ_LOGGING_FORMAT": "json",
            **extra,
        }
    )
    return env


async def log_events(process: trio.Process) -> AsyncIterator[dict[str, Any]]:
    """The agent's JSON log lines, as they come."""
    assert process.stderr is not None
    buffer = b""
    async for chunk in process.stderr:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                yield json.loads(line)


async def test_systemd_notifications_and_sigterm(
    running_api: RunningApi, spool: Spool, tmp_path: Path
) -> None:
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(tmp_path / "notify.sock"))
    env = agent_env(
        spool,
        running_api.endpoints.grpc_address,
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC="200000",  # pings every 0.1 s
    )
    spool.drop_samples()
    with notify, trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent"], env=env, stderr=subprocess.PIPE
        )
        try:
            ready = (await notify.recv(4096)).decode()
            assert ready.startswith("READY=1\nSTATUS=watching 1 source(s)")
            pings = 0
            status = ""
            while pings < 3 or "5 calls and 3 recordings uploaded" not in status:
                message = (await notify.recv(4096)).decode()
                assert message.startswith("WATCHDOG=1")
                pings += 1
                status = message.partition("STATUS=")[2]
            process.send_signal(signal.SIGTERM)
            while not (message := (await notify.recv(4096)).decode()).startswith("STOPPING=1"):
                assert message.startswith("WATCHDOG=1")
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert spool.cdr_files() == [] and set(server_calls(running_api)) == set(SAMPLE_CALLS)


async def test_killed_process_restarts_and_finishes_the_work(
    running_api: RunningApi, spool: Spool
) -> None:
    documents = [compact_cdr(recording=f"r{i}.wav") for i in range(12)]
    for i, document in enumerate(documents):
        spool.write_cdr(document)
        spool.write_recording(f"r{i}.wav", WAV + bytes([i]))
    env = agent_env(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        first = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent"], env=env, stderr=subprocess.PIPE
        )
        async with aclosing(log_events(first)) as events:
            async for event in events:
                if event["event"] == "call_uploaded":
                    first.kill()  # SIGKILL: no cleanup of any kind
                    break
        assert await first.wait() == -signal.SIGKILL
        assert spool.cdr_files()  # work was left
        second = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent"], env=env, stderr=subprocess.PIPE
        )
        try:
            async with aclosing(log_events(second)) as events:
                async for _ in events:
                    if not spool.cdr_files() and not spool.recording_files():
                        break
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    calls = server_calls(running_api)
    assert set(calls) == {d["uuid"] for d in documents}
    for i, document in enumerate(documents):
        assert calls[document["uuid"]]["sha256"] == sha256(WAV + bytes([i]))
    assert len(running_api.stored_files()) == 12
