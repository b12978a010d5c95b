"""Tailing Master.csv against the real API server: real files, real gRPC, PostgreSQL.

The tests wait on the agent's counters (`agent.stats`) or its log, never on sleeps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from cj.cdr import CdrFormat
from cj.cdr.asterisk import parse_cdr_csv_line
from cj.cdr.asterisk_call import call_uuid
from cj.config import AgentSettings
from cj_agent.stats import AgentStats
from cj_agent.tail_state import STATE_FILE
from tests.fixtures.api import RunningApi

from .helpers import WAV, Spool, agent_settings, running_agent, server_calls, sha256, with_source
from .test_process import agent_env, log_events

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "asterisk" / "Master.csv"
SOURCE = "pbx-test"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


def tail_settings(spool: Spool, server: str, **changes: Any) -> AgentSettings:
    settings = agent_settings(spool, server)
    source: dict[str, Any] = {
        "format": CdrFormat.ASTERISK_CSV,
        "cdr_patterns": ("Master.csv",),
        "timezone": "Europe/Berlin",
        "tail_settle_s": 0.05,
        "tail_linger_s": 0.2,
    }
    source.update(changes)
    return with_source(settings, **source)


def call_line(linkedid: str, n: int, *, leg: int = 0, disposition: str = "ANSWERED") -> bytes:
    """One Master.csv line (21 columns) of call `linkedid`; `leg` tells ring-group legs apart."""
    answered = disposition == "ANSWERED"
    answer = '"2026-03-02 10:00:05"' if answered else ""
    billsec = 30 + leg if answered else 0
    return (
        f'"","+49301{n:05d}","600","from-trunk","""+49301{n:05d}"" <+49301{n:05d}>",'
        f'"PJSIP/trunk_a-{n:08x}","PJSIP/{201 + leg}-{n + leg:08x}","Dial","PJSIP/201&PJSIP/202",'
        f'"2026-03-02 10:00:00",{answer},"2026-03-02 10:00:40",40,{billsec},"{disposition}",'
        f'"DOCUMENTATION","{linkedid}","","","{linkedid}",{leg}\n'
    ).encode()


def sample_uuids(data: bytes) -> set[str]:
    return {str(call_uuid(SOURCE, parse_cdr_csv_line(line).key)) for line in data.splitlines()}


def legs_on_server(api: RunningApi) -> dict[str, int]:
    rows = api.query("SELECT uuid::text AS uuid, raw FROM calls")
    return {str(row["uuid"]): len(row["raw"]["legs"]) for row in rows}  # type: ignore[index]


def expected_legs(data: bytes) -> dict[str, int]:
    keys = Counter(parse_cdr_csv_line(line).key for line in data.splitlines())
    return {str(call_uuid(SOURCE, key)): count for key, count in keys.items()}


def committed(spool: Spool, name: str = "Master.csv") -> int | None:
    path = spool.cdr / "state" / STATE_FILE
    if not path.exists():
        return None
    mark = json.loads(path.read_text())["files"].get(name)
    return None if mark is None else int(mark["offset"])


def committed_mark(spool: Spool) -> tuple[int, int] | None:
    path = spool.cdr / "state" / STATE_FILE
    if not path.exists():
        return None
    mark = json.loads(path.read_text())["files"]["Master.csv"]
    return int(mark["ino"]), int(mark["offset"])


def offset_is(spool: Spool, offset: int) -> Callable[[AgentStats], bool]:
    return lambda stats: committed(spool) == offset


async def test_master_csv_imports_as_calls_and_the_offset_is_committed(
    running_api: RunningApi, spool: Spool
) -> None:
    data = SAMPLE.read_bytes()
    (spool.cdr / "Master.csv").write_bytes(data)
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(data)))
            assert agent.stats.lines_read == 8 and agent.stats.lines_refused == 0
    assert legs_on_server(running_api) == expected_legs(data)
    rows = running_api.query("SELECT direction, source, private FROM calls")
    assert Counter(str(row["direction"]) for row in rows) == {
        "inbound": 2,
        "outbound": 2,
        "internal": 2,
    }
    assert {row["source"] for row in rows} == {SOURCE}
    assert sum(bool(row["private"]) for row in rows) == 1
    assert (spool.cdr / "Master.csv").read_bytes() == data  # the PBX's file is never touched


async def test_a_half_written_line_waits_for_its_newline(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    first = call_line("1772443200.1", 1)
    master.write_bytes(first)
    second = call_line("1772443200.2", 2)
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(first)))
            with master.open("ab") as file:
                file.write(second[:50])
            polls = agent.stats.polls
            await agent.stats.wait_until(lambda s: s.polls >= polls + 5)
            assert agent.stats.lines_read == 1 and committed(spool) == len(first)
            with master.open("ab") as file:
                file.write(second[50:])
            await agent.stats.wait_until(offset_is(spool, len(first) + len(second)))
            assert agent.stats.lines_read == 2 and agent.stats.lines_refused == 0
    assert legs_on_server(running_api) == expected_legs(first + second)


async def test_a_late_leg_is_merged_and_the_call_sent_again(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    legs = [
        call_line("1772443200.7", 7, leg=0, disposition="NO ANSWER"),
        call_line("1772443200.7", 7, leg=1),
    ]
    master.write_bytes(legs[0])
    settings = tail_settings(spool, running_api.endpoints.grpc_address, tail_linger_s=60.0)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)
            # Sent with one leg, but still open: the offset stays before its first line.
            assert committed(spool) == 0
            with master.open("ab") as file:
                file.write(legs[1])
            await agent.stats.wait_until(lambda s: s.calls_uploaded >= 2)
    uuid = str(call_uuid(SOURCE, "1772443200.7"))
    assert legs_on_server(running_api) == {uuid: 2}
    billsec = running_api.query("SELECT billsec FROM calls")[0]["billsec"]
    assert billsec == 31  # the answering leg's


async def test_rotation_finishes_the_old_file_then_reads_the_new(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    old = [call_line(f"1772443300.{n}", n) for n in range(3)]
    new = [call_line(f"1772443400.{n}", 10 + n) for n in range(2)]
    master.write_bytes(old[0])
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(old[0])))
            # logrotate: the file is renamed, the PBX writes its last lines to the old
            # descriptor, then opens a new Master.csv.
            master.rename(spool.cdr / "Master.csv.1")
            with (spool.cdr / "Master.csv.1").open("ab") as file:
                file.write(old[1] + old[2])
            master.write_bytes(b"".join(new))
            await agent.stats.wait_until(offset_is(spool, len(b"".join(new))))
            assert agent.stats.lines_read == 5
    assert legs_on_server(running_api) == expected_legs(b"".join(old + new))
    state = json.loads((spool.cdr / "state" / STATE_FILE).read_text())["files"]["Master.csv"]
    assert state["ino"] == master.stat().st_ino


async def test_truncation_reads_the_file_again_from_the_start(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    before = b"".join(call_line(f"1772443500.{n}", n) for n in range(3))
    after = call_line("1772443600.1", 20)
    master.write_bytes(before)
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(before)))
            with master.open("r+b") as file:
                file.truncate(0)
                file.write(after)
            await agent.stats.wait_until(offset_is(spool, len(after)))
    assert legs_on_server(running_api) == expected_legs(before + after)


async def test_an_unreadable_line_is_quarantined_and_the_rest_imported(
    running_api: RunningApi, spool: Spool
) -> None:
    good = call_line("1772443700.1", 1)
    bad = good.replace(b'"2026-03-02 10:00:00"', b'"yesterday"')
    data = bad + good
    (spool.cdr / "Master.csv").write_bytes(data)
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(data)))
            assert agent.stats.lines_refused == 1
    assert spool.failed_files() == ["Master.csv.0.line", "Master.csv.0.line.error"]
    assert (spool.failed / "Master.csv.0.line").read_bytes() == bad
    reason = (spool.failed / "Master.csv.0.line.error").read_text()
    assert reason.startswith("unreadable CDR line: start: must be 'YYYY-MM-DD HH:MM:SS'")
    assert set(legs_on_server(running_api)) == sample_uuids(good)


def process_env(spool: Spool, server: str) -> dict[str, str]:
    env = agent_env(spool, server)
    source = json.loads(env["CJ_AGENT_SOURCES"])[0]
    source.update(
        format="asterisk_csv",
        cdr_patterns=["Master.csv"],
        timezone="Europe/Berlin",
        tail_settle_s=0.05,
        tail_linger_s=30.0,  # longer than the test: the offset is held before open calls
    )
    env["CJ_AGENT_SOURCES"] = json.dumps([source])
    return env


async def test_killed_while_the_file_grows_no_line_is_lost_or_doubled(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    before = [call_line(f"1772444000.{n}", n) for n in range(30)]
    ring = [
        call_line("1772445000.1", 99, leg=0, disposition="NO ANSWER"),
        call_line("1772445000.1", 99, leg=1),
    ]
    while_running = [call_line(f"1772446000.{n}", 100 + n) for n in range(10)] + [ring[0]]
    while_dead = [ring[1]] + [call_line(f"1772447000.{n}", 200 + n) for n in range(10)]
    everything = b"".join(before + while_running + while_dead)
    master.write_bytes(b"".join(before))
    env = process_env(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        first = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent"], env=env, stderr=subprocess.PIPE
        )
        uploaded = 0
        async with aclosing(log_events(first)) as events:
            async for event in events:
                if event["event"] != "call_uploaded":
                    continue
                uploaded += 1
                if uploaded == 1:
                    with master.open("ab") as file:
                        file.write(b"".join(while_running))
                if event.get("linkedid") == "1772445000.1":
                    first.kill()  # SIGKILL: the ring group's second leg is not written yet
                    break
        assert await first.wait() == -signal.SIGKILL
        with master.open("ab") as file:
            file.write(b"".join(while_dead))
        second = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cj_agent"], env=env, stderr=subprocess.PIPE
        )
        want = expected_legs(everything)
        try:
            async with aclosing(log_events(second)) as events:
                async for event in events:
                    if event["event"] == "call_uploaded" and legs_on_server(running_api) == want:
                        break
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    assert legs_on_server(running_api) == want
    assert len(want) == 51 and want[str(call_uuid(SOURCE, "1772445000.1"))] == 2
    assert master.read_bytes() == everything


async def test_a_file_rotated_while_the_agent_was_stopped_is_finished_first(
    running_api: RunningApi, spool: Spool
) -> None:
    master = spool.cdr / "Master.csv"
    old = [call_line(f"1772448000.{n}", n) for n in range(3)]
    new = call_line("1772448100.1", 50)
    master.write_bytes(old[0])
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(old[0])))
        # Stopped: the file is rotated, its last lines written after the offset.
        master.rename(spool.cdr / "Master.csv.1")
        with (spool.cdr / "Master.csv.1").open("ab") as file:
            file.write(old[1] + old[2])
        master.write_bytes(new)
        inode = master.stat().st_ino
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: committed_mark(spool) == (inode, len(new)))
            assert agent.stats.lines_read == 3  # old[1], old[2], new: nothing read twice
    assert legs_on_server(running_api) == expected_legs(b"".join(old) + new)


async def test_an_unreadable_state_file_is_set_aside_and_the_file_read_again(
    running_api: RunningApi, spool: Spool
) -> None:
    data = SAMPLE.read_bytes()
    (spool.cdr / "Master.csv").write_bytes(data)
    state = spool.cdr / "state"
    state.mkdir()
    (state / STATE_FILE).write_text('{"files": {"Master.csv": {"offset": "x"')
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(offset_is(spool, len(data)))
    assert (state / (STATE_FILE + ".corrupt")).exists()
    assert legs_on_server(running_api) == expected_legs(data)


async def test_the_recording_named_in_the_userfield_is_uploaded(
    running_api: RunningApi, spool: Spool
) -> None:
    line = call_line("1772449000.1", 1).replace(
        b'"1772449000.1","",""', b'"1772449000.1","rec=in-1772449000.1.wav;tag=private",""'
    )
    assert b"rec=in-1772449000.1.wav" in line
    (spool.cdr / "Master.csv").write_bytes(line)
    spool.write_recording("in-1772449000.1.wav", WAV)
    settings = tail_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 2)
            await agent.stats.wait_until(offset_is(spool, len(line)))
    uuid = str(call_uuid(SOURCE, "1772449000.1"))
    calls = server_calls(running_api)
    assert calls[uuid]["sha256"] == sha256(WAV) and calls[uuid]["private"] is True
    assert calls[uuid]["recording"] == "in-1772449000.1.wav"
    assert spool.recording_files() == [] and spool.pending_files() == []
    assert legs_on_server(running_api) == {uuid: 1}  # the full call, not the note
