"""`python -m cj_api` as a real process: SIGTERM or SIGINT drains and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.fixtures.api import AGENT_TOKEN


@pytest.mark.parametrize(
    ("signum", "workers"), [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGINT, "2")]
)
async def test_api_process_stops_cleanly(
    database_url: str, tmp_path: Path, signum: int, workers: str
) -> None:
    """One process, or a supervisor passing the signal to its workers (test_workers.py)."""
    env = {
        **os.environ,
        "CJ_DATABASE_URL": database_url,
        "CJ_API_GRPC_PORT": "0",
        "CJ_API_REST_PORT": "0",
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
        "CJ_AUTH_TOKENS": json.dumps([{"name": "a", "token": AGENT_TOKEN, "roles": ["agent"]}]),
        "CJ_LOGGING_FORMAT": "json",
        "CJ_API_WORKERS": workers,
    }
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_api"], env=env, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        seen = b""
        async for chunk in process.stderr:
            seen += chunk
            if b'{"daemon": "cj-api", "event": "running"' in seen:
                break
        process.send_signal(signum)
        async for chunk in process.stderr:
            seen += chunk
        assert await process.wait() == 0, seen.decode()
    assert b"api_stopping" in seen and b'"stopped"' in seen
