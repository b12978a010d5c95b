"""`cj calls search|get|download` against a real API over REST."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio
from psycopg.rows import dict_row

from cj.db.ingest import upsert_call
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, RunningApi
from tests.run.compose import ROOT

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a Tuesday, 12:00 in Moscow
WAV = b"RIFF" + b"\x00" * 40 + b"cj-cli-test-audio" * 100


def store_calls(api: RunningApi, count: int, **overrides: Any) -> list[str]:
    calls = [
        make_call(
            caller="+7 (900) 280-04-21",
            started_at=START + timedelta(minutes=i),
            **overrides,
        )
        for i in range(count)
    ]
    with psycopg.connect(api.database_url, row_factory=dict_row) as conn:
        for call in calls:
            upsert_call(conn, call)
    return [str(call.uuid) for call in calls]


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def cj(api: RunningApi, *args: str, token: str | None = READER_TOKEN) -> Result:
    """`cj calls ARGS` as a separate process, as a person runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CJ_")}
    env.update({"CJ_CLIENT_URL": api.endpoints.rest_url, "CJ_CLIENT_TIMEZONE": "Europe/Moscow"})
    if token is not None:
        env["CJ_CLIENT_TOKEN"] = token
    done = await trio.run_process(
        [sys.executable, "-c", "from cj.cli import main; main()", "calls", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_search_by_a_number_written_another_way_pages_and_shows_local_time(
    running_api: RunningApi,
) -> None:
    uuids = store_calls(running_api, 3)
    with trio.fail_after(30):
        first = await cj(running_api, "search", "--phone", "8 900 2800421", "--limit", "2")
        everything = await cj(
            running_api, "search", "--phone", "9002800421", "--limit", "2", "--all", "--json"
        )
        window = await cj(
            running_api, "search", "--from", "2026-11-24 12:01", "--to", "2026-11-24 12:02"
        )
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].split()[:3] == ["started", "dir", "caller"]
    assert len(lines) == 3  # header + a page of 2, newest first
    assert lines[1].startswith("2026-11-24 12:02:00") and uuids[2] in lines[1]
    assert "--page-token" in first.stderr
    records = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [r["call"]["uuid"] for r in records] == uuids[::-1]
    assert window.exit_code == 0 and uuids[1] in window.stdout and uuids[0] not in window.stdout


async def test_get_and_download_and_refusals(running_api: RunningApi) -> None:
    (call_uuid,) = store_calls(running_api, 1)
    (private_uuid,) = store_calls(running_api, 1, private=True)
    headers = {
        "authorization": f"Bearer {AGENT_TOKEN}",
        "content-type": "audio/wav",
        "x-content-sha256": hashlib.sha256(WAV).hexdigest(),
    }
    target = Path(running_api.root) / "out.wav"
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=running_api.endpoints.rest_url) as client:
            for uuid in (call_uuid, private_uuid):
                put = await client.put(
                    f"/api/v1/calls/{uuid}/recording", content=WAV, headers=headers
                )
                assert put.status_code == 201, put.text
        shown = await cj(running_api, "get", call_uuid)
        fetched = await cj(running_api, "download", call_uuid, "-o", str(target))
        private = await cj(running_api, "download", private_uuid, "-o", str(target) + ".2")
        wrong = await cj(running_api, "search", "--phone", "1", token=AGENT_TOKEN)
        missing = await cj(running_api, "search", "--phone", "1", token=None)
        bad_time = await cj(running_api, "search", "--from", "tuesday", "--to", "now")
    assert shown.exit_code == 0 and "12:00:00" in shown.stdout and "uploaded" in shown.stdout
    assert fetched.exit_code == 0, fetched.output
    assert await trio.Path(target).read_bytes() == WAV
    assert private.exit_code == 1 and "private" in private.output
    assert not await trio.Path(str(target) + ".2").exists()
    assert wrong.exit_code == 1 and "reader" in wrong.output
    assert missing.exit_code == 1 and "no token" in missing.output
    assert bad_time.exit_code == 2 and "not a time" in bad_time.output
