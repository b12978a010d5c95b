"""`cj-agent backfill` against the real API server: import, resume, filters, CLI, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from cj.cdr import CdrOptions
from cj.pgcluster import free_port
from cj_agent.backfill import BackfillPlan, BackfillSummary, FailureReport, run_backfill
from cj_agent.uploader import ServerLink
from tests.fixtures.api import AGENT_TOKEN, RunningApi

from .helpers import WAV, compact_cdr, server_calls, sha256
from .test_process import agent_env

DAY = 86400
EPOCH = 1772432104  # 2026-03-02 06:15:04 UTC


@dataclass
class Archive:
    root: Path
    calls: dict[str, bytes | None]  # uuid -> recording bytes

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in self.root.rglob("*")
            if p.is_file()
        }


def make_archive(root: Path, count: int, *, recording_every: int = 3, days: int = 2) -> Archive:
    """`count` compact CDRs over `days` days; every `recording_every`-th has a recording.
    CDRs and recordings live in different subdirectories, as PBX archives often do."""
    calls: dict[str, bytes | None] = {}
    for i in range(count):
        day = i % days
        cdr_dir = root / f"day-{day}" / "cdr"
        rec_dir = root / f"day-{day}" / "recordings"
        cdr_dir.mkdir(parents=True, exist_ok=True)
        rec_dir.mkdir(parents=True, exist_ok=True)
        call_uuid = str(uuid.uuid4())
        data = None
        name = None
        if i % recording_every == 0:
            name = f"{call_uuid}.wav"
            data = WAV[:4000] + i.to_bytes(4, "big")
            (rec_dir / name).write_bytes(data)
        start = EPOCH + day * DAY + i
        document = compact_cdr(
            call_uuid, recording=name, epos=start, epoa=start + 6, epoe=start + 64, stti=""
        )
        (cdr_dir / f"{call_uuid}.json").write_text(json.dumps(document))
        calls[call_uuid] = data
    return Archive(root, calls)


def plan_for(archive: Archive, **options: Any) -> BackfillPlan:
    return BackfillPlan(
        paths=(archive.root,),
        options=CdrOptions(timezone="Europe/Moscow", source="pbx-archive"),
        **options,
    )


def link_to(api: RunningApi, concurrency: int = 4) -> ServerLink:
    return ServerLink.for_config(
        api.endpoints.grpc_address,
        token=AGENT_TOKEN,
        tls=False,
        tls_ca_file=None,
        request_timeout_s=30,
        concurrency=concurrency,
    )


async def backfill(
    api: RunningApi | None, plan: BackfillPlan, report: Path, **kwargs: Any
) -> BackfillSummary:
    link = link_to(api, plan.jobs) if api is not None else None
    return await run_backfill(plan, link, report=FailureReport(report), **kwargs)


async def test_import_then_a_rerun_skips_everything(
    running_api: RunningApi, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "archive", 60)
    (archive.root / "day-0" / "cdr" / "broken.json").write_text("{not json")
    lonely = compact_cdr(recording="nowhere.wav")
    (archive.root / "day-1" / "cdr" / "lonely.json").write_text(json.dumps(lonely))
    before = archive.snapshot()
    report = tmp_path / "report.jsonl"
    with trio.fail_after(60):
        summary = await backfill(running_api, plan_for(archive), report)
    assert not summary.cancelled
    assert summary.found == 62 and summary.done == 62
    assert summary.calls_added == 61 and summary.recordings_uploaded == 20
    assert summary.failed == 2
    failures = [json.loads(line) for line in report.read_text().splitlines()]
    reasons = sorted(failure["reason"].split(":")[0] for failure in failures)
    assert reasons == [
        "recording nowhere.wav not found under the given paths (call sent without it)",
        "unparsable CDR",
    ]
    calls = server_calls(running_api)
    assert len(calls) == 61 and calls[lonely["uuid"]]["sha256"] is None
    for call_uuid, data in archive.calls.items():
        assert calls[call_uuid]["sha256"] == (sha256(data) if data else None)
        assert calls[call_uuid]["source"] == "pbx-archive"
    with trio.fail_after(60):
        again = await backfill(running_api, plan_for(archive), tmp_path / "again.jsonl")
    assert again.calls_added == 0 and again.recordings_uploaded == 0
    assert again.already_present == 61 and again.recordings_skipped == 20
    assert again.failed == 2  # the same two problems, reported again
    assert archive.snapshot() == before  # backfill never touches its sources


class CancelAfter:
    """A progress sink that cancels the run (as Ctrl-C would) after `calls` calls."""

    def __init__(self, calls: int, scope: trio.CancelScope) -> None:
        self.calls = calls
        self.done = 0
        self.scope = scope

    def set_total(self, calls: int) -> None:
        pass

    def advance(self, calls: int = 0, bytes_: int = 0) -> None:
        self.done += calls
        if self.done >= self.calls:
            self.scope.cancel()


async def test_cancelled_then_resumed_imports_everything_once(
    running_api: RunningApi, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "archive", 2500, recording_every=50)
    plan = plan_for(archive, jobs=2)
    scope = trio.CancelScope()
    with trio.fail_after(60):
        first = await backfill(
            running_api,
            plan,
            tmp_path / "r1.jsonl",
            progress=CancelAfter(1000, scope),
            cancel_scope=scope,
        )
    assert first.cancelled and 1000 <= first.done < 2500
    present = len(server_calls(running_api))
    assert 0 < present < 2500
    with trio.fail_after(60):
        second = await backfill(running_api, plan, tmp_path / "r2.jsonl")
    assert not second.cancelled and second.failed == 0
    # A batch the server was committing when the first run was cancelled may have
    # landed after `present` was counted: cancelling a write is not atomic.
    assert second.calls_added + second.already_present == 2500
    assert second.already_present >= present
    calls = server_calls(running_api)
    assert set(calls) == set(archive.calls)
    for call_uuid, data in archive.calls.items():
        assert calls[call_uuid]["sha256"] == (sha256(data) if data else None)
    assert len(running_api.stored_files()) == 50


async def test_since_and_until_select_calls_by_start_time(
    running_api: RunningApi, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "archive", 20, days=4)
    day = datetime.fromtimestamp(EPOCH, UTC).replace(hour=0, minute=0, second=0)
    plan = plan_for(
        archive,
        since=day.replace(day=day.day + 1),
        until=day.replace(day=day.day + 3),
    )
    with trio.fail_after(60):
        summary = await backfill(running_api, plan, tmp_path / "r.jsonl")
    assert summary.calls_added == 10 and summary.out_of_range == 10
    # Days 1 and 2 of the four are in [since, until).
    assert len(server_calls(running_api)) == 10


async def test_dry_run_counts_and_sends_nothing(running_api: RunningApi, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "archive", 30, recording_every=3)
    (archive.root / "bad.json").write_text("[]")
    with trio.fail_after(60):
        summary = await backfill(None, plan_for(archive, dry_run=True), tmp_path / "r.jsonl")
    assert summary.found == 31 and summary.done == 31
    assert summary.recordings_found == 10 and summary.recording_bytes_found == 10 * 4004
    assert summary.failed == 1 and summary.calls_added == 0
    assert server_calls(running_api) == {}


def test_plan_refuses_nonsense() -> None:
    options = CdrOptions()
    with pytest.raises(ValueError, match="at least one path"):
        BackfillPlan(paths=(), options=options)
    with pytest.raises(ValueError, match="--since must be before --until"):
        BackfillPlan(
            paths=(Path(),),
            options=options,
            since=datetime(2026, 3, 2, tzinfo=UTC),
            until=datetime(2026, 3, 1, tzinfo=UTC),
        )


async def test_cli_reports_failures_in_a_file_and_exits_1(
    running_api: RunningApi, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "archive", 9)
    (archive.root / "broken.json").write_text("{")
    report = tmp_path / "failures.jsonl"
    env = agent_env_for(tmp_path, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        result = await trio.run_process(
            [
                sys.executable,
                "-m",
                "cj_agent",
                "backfill",
                str(archive.root),
                "--report",
                str(report),
                "--since",
                "2026-03-01",
            ],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 1, out + result.stderr.decode()
    assert "calls added:          9" in out and "failures:             1" in out
    assert f"failures are listed in {report}" in out
    assert json.loads(report.read_text())["file"].endswith("broken.json")
    assert len(server_calls(running_api)) == 9


async def test_ctrl_c_stops_a_waiting_backfill_promptly(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "archive", 5)
    # Nobody listens there: the backfill waits for the server, retrying.
    env = agent_env_for(tmp_path, f"127.0.0.1:{free_port()}")
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent", "backfill", str(archive.root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None and process.stdout is not None
        seen = b""
        async for chunk in process.stderr:
            seen += chunk
            if b"server_unavailable" in seen:
                break
        process.send_signal(signal.SIGINT)
        with trio.fail_after(3):  # "within a second", with room for a loaded machine
            status = await process.wait()
        output = b""
        while chunk := await process.stdout.receive_some(65536):
            output += chunk
    assert status == 130
    text = output.decode()
    assert text.startswith("interrupted: backfill summary") and "run the same command again" in text


def agent_env_for(tmp_path: Path, server: str) -> dict[str, str]:
    spool = tmp_path / "unused"
    from .helpers import Spool

    return agent_env(Spool(spool).make(), server)


async def test_lookups_are_found_by_uniqueid_and_legs_are_counted_not_merged(
    running_api: RunningApi, tmp_path: Path
) -> None:
    """Backfill's subset of the resolution contract (cj_agent/backfill_recordings.py)."""
    root = tmp_path / "archive"
    day = root / "monitor" / "2026" / "03" / "02"
    day.mkdir(parents=True)
    (root / "cdr").mkdir()
    mixed = "exten-1002-79161234567-20260302-091504-1772432104.7.wav"
    (day / mixed).write_bytes(WAV)
    for suffix in ("in", "out"):
        (day / f"out-2000-1001-20260302-100000-1772434800.9-{suffix}.wav").write_bytes(WAV)
    documents = {
        "found": compact_cdr(recording="uniqueid:1772432104.7"),
        "legs": compact_cdr(recording="uniqueid:1772434800.9"),
        "none": compact_cdr(recording="uniqueid:1772439999.1"),
    }
    for name, document in documents.items():
        (root / "cdr" / f"{name}.json").write_text(json.dumps(document))
    report = tmp_path / "report.jsonl"
    with trio.fail_after(60):
        summary = await backfill(running_api, plan_for(Archive(root, {})), report)
    assert summary.calls_added == 3 and summary.recordings_uploaded == 1
    assert summary.failed == 0 and summary.recordings_not_merged == 1
    assert any("recordings not sent:  1" in line for line in summary.lines())
    uuids = {name: document["uuid"] for name, document in documents.items()}
    calls = server_calls(running_api)
    assert calls[uuids["found"]]["recording"] == mixed
    rows = running_api.query("SELECT uuid::text AS uuid, recording_name FROM calls")
    names = {str(row["uuid"]): row["recording_name"] for row in rows}
    assert names == {uuids["found"]: mixed, uuids["legs"]: None, uuids["none"]: None}
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [line["call_uuid"] for line in lines] == [uuids["legs"]]
    assert "not merged by backfill" in lines[0]["reason"]
    assert (day / mixed).exists()  # backfill never moves or deletes
