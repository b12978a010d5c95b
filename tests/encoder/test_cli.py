"""`cj-encoder` commands: retry-failed, and the daemon as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import trio
from click.testing import CliRunner

from cj.db.ingest import upsert_call
from cj.db.recordings import create_recording, mark_failed
from cj_encoder.__main__ import cli
from tests.factories import make_call


def _failed_recording(url: str) -> uuid.UUID:
    from psycopg.rows import dict_row

    call = make_call()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        upsert_call(conn, call)  # type: ignore[arg-type]
        create_recording(
            conn,  # type: ignore[arg-type]
            call.uuid,
            original_name="a.wav",
            size=1,
            sha256="c" * 64,
            storage="temp",
            key="k",
        )
        mark_failed(conn, call.uuid, "undecodable audio")  # type: ignore[arg-type]
    return call.uuid


def test_retry_failed_requeues_and_publishes(database_url: str) -> None:
    call_uuid = _failed_recording(database_url)
    runner = CliRunner()
    env = {"CJ_DATABASE_URL": database_url}
    missing = runner.invoke(cli, ["retry-failed", "--call", str(uuid.uuid4())], env=env)
    assert missing.exit_code == 1 and "has no failed recording" in missing.output
    result = runner.invoke(cli, ["retry-failed", "--call", str(call_uuid)], env=env)
    assert result.exit_code == 0, result.output
    assert "re-queued 1 failed recording(s)" in result.output
    with psycopg.connect(database_url) as conn:
        status = conn.execute("SELECT status, attempts FROM recordings").fetchone()
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert status == ("uploaded", 0)
    assert jobs == (1,)


async def test_daemon_exits_cleanly_on_sigterm(database_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CJ_DATABASE_URL": database_url,
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
        "CJ_LOGGING_FORMAT": "json",
    }
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_encoder"],
            env=env,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        seen = b""
        async for chunk in process.stderr:
            seen += chunk
            if b'"running"' in seen:
                break
        process.send_signal(signal.SIGTERM)
        async for chunk in process.stderr:
            seen += chunk
        assert await process.wait() == 0, seen.decode()
    assert b"encoder_stopping" in seen and b'"stopped"' in seen
