"""Running `make run`'s native path (scripts/run.sh → `cj dev`) as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.run.compose import ROOT

RUN_SCRIPT = ROOT / "scripts" / "run.sh"
BANNER_END = "Press Ctrl-C"
SAMPLE_RECORDINGS = {
    "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111",  # compact, public
    "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222",  # compact, private
    "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444",  # FreeSWITCH, stereo
}
SAMPLE_CALLS = SAMPLE_RECORDINGS | {
    "0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333",
    "d1f3a5c7-0b2e-4a69-8f14-6c8e0a2b4555",
}


def run_env(**extra: str) -> dict[str, str]:
    """This process's environment without CJ_* settings, in native mode, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CJ_")}
    env.update(
        CJ_DEV_MODE="native",
        CJ_DEV_SKIP_INSTALL="1",  # the test's own virtualenv is the one to use
        VENV=sys.prefix,
        CJ_LOGGING_LEVEL="info",
    )
    env.update(extra)
    return env


@dataclass
class Banner:
    text: str

    @property
    def rest_url(self) -> str:
        return self._find(r"REST API\s+(http://\S+)")

    @property
    def grpc_address(self) -> str:
        return self._find(r"gRPC API\s+(\S+)")

    @property
    def reader_token(self) -> str:
        return self._find(r"reader\s+(\S+)\s+\(search")

    @property
    def agent_token(self) -> str:
        return self._find(r"agent\s+(\S+)\s+\(ingest")

    @property
    def commands(self) -> list[str]:
        """The copy-paste commands, in order."""
        return [line[4:] for line in self.text.splitlines() if line.startswith("  $ ")]

    def _find(self, pattern: str) -> str:
        match = re.search(pattern, self.text)
        assert match is not None, f"{pattern!r} not in the banner:\n{self.text}"
        return match[1]


class NativeRun:
    """`scripts/run.sh` in its own process group; stdout read until the banner."""

    def __init__(self, process: trio.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], log: Path) -> NativeRun:
        with log.open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                ["bash", str(RUN_SCRIPT), *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own group: we can tell nothing is left behind
            )
        return cls(process, log)

    async def banner(self) -> Banner:
        assert self.process.stdout is not None
        text = ""
        while BANNER_END not in text:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"cj dev ended before its banner:\n{self.log_tail()}")
            text += chunk.decode()
        return Banner(text)

    async def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the exit status."""
        self.process.send_signal(signal.SIGINT)
        return await self.process.wait()

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def kill(self) -> None:
        """Clean-up after a failed test: nothing of the group may survive it."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            with trio.move_on_after(10):
                await self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


def log_tail(log: Path, lines: int = 40) -> str:
    """The end of a log file (for failure messages)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def shell(command: str, cwd: Path = ROOT) -> str:
    """Run one printed command as a user would paste it; its stdout."""
    result = await trio.run_process(
        ["bash", "-c", command], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stderr.decode()}"
    return result.stdout.decode()


async def wait_until_stored(
    rest_url: str, token: str, uuids: set[str], log: Path
) -> dict[str, dict[str, Any]]:
    """Poll GET /api/v1/calls/{uuid} until each recording is stored; the records.

    The daemons run in another process, so polling it is the only way to know."""
    records: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=rest_url, headers=headers, timeout=10) as client:
        while len(records) < len(uuids):
            for uuid in sorted(uuids - set(records)):
                response = await client.get(f"/api/v1/calls/{uuid}")
                if response.status_code == 404:
                    continue  # not uploaded yet
                assert response.status_code == 200, response.text
                record = response.json()
                status = (record["recording"] or {}).get("status")
                assert status != "failed", f"{uuid}: {record['recording']}\n{log_tail(log)}"
                if status == "stored":
                    records[uuid] = record
            await trio.sleep(0.2)
    return records


def parse_json(text: str) -> Any:
    return json.loads(text)
