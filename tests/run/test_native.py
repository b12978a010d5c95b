"""`make run` without Docker: scripts/run.sh → `cj dev`, end to end, as a user would.

The printed commands are run exactly as printed (cp, curl), the recordings are checked
after a download, and Ctrl-C must leave nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile
import trio

from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, open_channel
from tests.run.compose import ROOT
from tests.run.native import (
    SAMPLE_CALLS,
    SAMPLE_RECORDINGS,
    NativeRun,
    run_env,
    shell,
    wait_until_stored,
)

PUBLIC = "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111"
PRIVATE = "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the tour's commands use curl")


def healthcheck(kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), kind],
        env={**run_env(), **env},
        capture_output=True,
        text=True,
        check=False,
    )


async def test_make_run_natively_serves_the_tour(database_url: str, tmp_path: Path) -> None:
    var = tmp_path / "var"
    run = await NativeRun.start(
        ["--var", str(var), "--grpc-port", "0", "--rest-port", "0"],
        run_env(CJ_DATABASE_URL=database_url),
        tmp_path / "cj-dev.log",
    )
    try:
        with trio.fail_after(60):
            banner = await run.banner()
            cp, search, interval, get, download, private = banner.commands
            assert cp.startswith("cp ") and "samples/compact/*" in cp
            # 1. The samples into the spool, with the printed command.
            await shell(cp)
            records = await wait_until_stored(
                banner.rest_url, banner.reader_token, SAMPLE_RECORDINGS, run.log
            )
            assert {r["recording"]["content_type"] for r in records.values()} == {"audio/mpeg"}

            # 2. The printed searches find the samples.
            found = json.loads(await shell(search))
            assert {c["call"]["uuid"] for c in found["calls"]} == {
                PUBLIC,
                "0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333",
                "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444",
            }
            in_interval = json.loads(await shell(interval))
            assert {c["call"]["uuid"] for c in in_interval["calls"]} == SAMPLE_CALLS
            one = json.loads(await shell(get))
            assert one["call"]["uuid"] == PUBLIC and one["recording"]["status"] == "stored"

            # 3. The printed download gives a stereo MP3.
            await shell(download)
            (mp3,) = (var / "downloads").glob(f"{PUBLIC}.mp3")
            info = soundfile.info(str(mp3))
            assert info.format == "MP3" and info.channels == 2
            headers = {"Authorization": f"Bearer {banner.reader_token}"}
            async with httpx.AsyncClient(base_url=banner.rest_url, headers=headers) as client:
                head = await client.head(f"/api/v1/calls/{PUBLIC}/recording")
                assert head.status_code == 200
                assert head.headers["content-type"] == "audio/mpeg"
                # 4. The private recording is refused.
                refused = await client.get(f"/api/v1/calls/{PRIVATE}/recording")
                assert refused.status_code == 403
            assert json.loads(await shell(private))["error"]["code"] == "PERMISSION_DENIED"

            # 5. gRPC at the printed address answers the same search.
            async with open_channel(
                banner.grpc_address, token=banner.reader_token, default_timeout_s=10
            ) as channel:
                reply = await CallJournalClient(channel).search_by_phone(
                    pb.SearchByPhoneRequest(phone="+7 916 123-45-67")
                )
            assert [c.call.uuid for c in reply.calls] == [PUBLIC]

            # 6. The image's health checks pass against the running system.
            for kind, env in {
                "api": {"CJ_API_REST_PORT": banner.rest_url.rsplit(":", 1)[1]},
                "encoder": {"CJ_DATABASE_URL": database_url},
                "agent": {
                    "CJ_AGENT_SOURCES": json.dumps(
                        [{"name": "local", "cdr_dir": str(var / "spool"), "recordings_dir": "."}]
                    )
                },
            }.items():
                result = await trio.to_thread.run_sync(lambda k=kind, e=env: healthcheck(k, **e))
                assert result.returncode == 0, f"{kind}: {result.stderr}"

            # 7. The agent archived what the server acknowledged.
            archived = {p.name for p in (var / "archive").rglob("*") if p.is_file()}
            assert len(archived) == 8 and f"{PUBLIC}.wav" in archived
            assert not list((var / "spool").glob("*.json"))
            tokens = json.loads((var / "tokens.json").read_text())
            assert tokens == {"agent": banner.agent_token, "reader": banner.reader_token}
            assert (var / "tokens.json").stat().st_mode & 0o077 == 0

            # 8. Ctrl-C: a clean exit, nothing left running.
            status = await run.interrupt()
        assert status == 0, run.log_tail()
        assert not run.group_alive()
        log = run.log.read_text()
        assert "agent_stopping" in log and "api_stopping" in log and "encoder_stopping" in log
        assert log.index("agent_stopping") < log.index("api_stopping")
    finally:
        await run.kill()


async def test_a_health_check_fails_when_the_api_is_down(tmp_path: Path) -> None:
    result = healthcheck("api", CJ_API_REST_PORT="1")
    assert result.returncode == 1 and "unhealthy" in result.stderr
    result = healthcheck(
        "agent",
        CJ_AGENT_SOURCES=json.dumps(
            [{"name": "x", "cdr_dir": str(tmp_path / "no"), "recordings_dir": "."}]
        ),
    )
    assert result.returncode == 1 and "is not a directory" in result.stderr


async def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [
                "bash",
                str(ROOT / "scripts" / "run.sh"),
                "--var",
                str(tmp_path / "var"),
                "--grpc-port",
                "0",
                "--rest-port",
                "0",
            ],
            env=run_env(CJ_DATABASE_URL="postgresql://cj@127.0.0.1:1/nothing"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot connect to the database" in result.stderr.decode()
    assert result.stdout == b""  # no banner


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory PostgreSQL's account can enter when we are root (/tmp, mode 0755);
    pytest's tmp_path is private to us."""
    path = Path(tempfile.mkdtemp(prefix="cj-run-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
async def test_make_run_on_a_private_cluster_keeps_the_data(reachable_dir: Path) -> None:
    """The real native path: a private cluster in var/pg, stopped by Ctrl-C, reused."""
    var = reachable_dir / "var"
    args = ["--var", str(var), "--grpc-port", "0", "--rest-port", "0"]
    first = await NativeRun.start(args, run_env(), reachable_dir / "first.log")
    try:
        with trio.fail_after(90):
            banner = await first.banner()
            assert f"private cluster in {var / 'pg'}" in banner.text
            for name in (f"{PUBLIC}.json", f"{PUBLIC}.wav"):
                shutil.copy(ROOT / "samples" / "compact" / name, var / "spool" / name)
            await wait_until_stored(banner.rest_url, banner.reader_token, {PUBLIC}, first.log)
            assert await first.interrupt() == 0, first.log_tail()
    finally:
        await first.kill()
    assert not first.group_alive()
    assert not (var / "pg" / "postmaster.pid").exists(), "PostgreSQL was left running"
    assert "postgres_stopped" in first.log.read_text()

    second = await NativeRun.start(args, run_env(), reachable_dir / "second.log")
    try:
        with trio.fail_after(90):
            again = await second.banner()
            assert again.reader_token == banner.reader_token  # tokens are kept
            headers = {"Authorization": f"Bearer {again.reader_token}"}
            async with httpx.AsyncClient(base_url=again.rest_url, headers=headers) as client:
                response = await client.get(f"/api/v1/calls/{PUBLIC}")
            assert response.status_code == 200
            assert response.json()["recording"]["status"] == "stored"  # the data is kept
            assert await second.interrupt() == 0, second.log_tail()
    finally:
        await second.kill()
    assert not (var / "pg" / "postmaster.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
async def test_as_root_a_var_postgres_cannot_enter_is_a_clear_error(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with trio.fail_after(30):
        result = await trio.run_process(
            ["bash", str(ROOT / "scripts" / "run.sh"), "--var", str(private / "var")],
            env=run_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "cannot enter" in message and "--var" in message and "CJ_DATABASE_URL" in message
