"""Recordings of tailed Master.csv calls, as Asterisk and FreePBX write them.

Real files, a real agent in this process, a real cj-api on PostgreSQL (and, for the
two-leg call, the real encoder): MixMonitor r()/t() legs named by paths in lastdata
become one stereo MP3; a FreePBX call whose CDR names no file is found by its uniqueid
in the dated directory; a call without a recording costs no walk of the tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from cj.cdr.asterisk_call import call_uuid
from cj.config import DatabaseConfig
from cj_encoder.worker import JobOutcome
from tests.audio.helpers import decode_libsndfile
from tests.fixtures.api import READER_TOKEN, RunningApi

from .helpers import WAV, Spool, running_agent, server_calls, sha256
from .test_legs import RATE, STEM, UNIQUEID, _download, dominant_hz, running_encoder, tone
from .test_tail import SOURCE, offset_is, tail_settings

MONITOR = "/var/spool/asterisk/monitor/2026/03/02"  # FreePBX's own directory, in lastdata


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


def freepbx_line(*, lastapp: str = "Dial", lastdata: str = "PJSIP/1002,30,tT") -> bytes:
    """The inbound call 79161234567 → extension 1002 of samples/asterisk/recordings."""
    data = lastdata.replace('"', '""')
    return (
        f'"","79161234567","1002","from-trunk","""79161234567"" <79161234567>",'
        f'"PJSIP/trunk_a-00000011","PJSIP/1002-00000012","{lastapp}","{data}",'
        f'"2026-03-02 09:15:04","2026-03-02 09:15:06","2026-03-02 09:15:10",6,4,"ANSWERED",'
        f'"DOCUMENTATION","{UNIQUEID}","","","{UNIQUEID}",1\n'
    ).encode()


def moscow(spool: Spool, server: str, **changes: Any) -> Any:
    return tail_settings(spool, server, timezone="Europe/Moscow", **changes)


def recording_names(api: RunningApi) -> dict[str, str | None]:
    """calls.recording_name by uuid: what the server was told."""
    rows = api.query("SELECT uuid::text AS uuid, recording_name FROM calls")
    return {str(row["uuid"]): row["recording_name"] for row in rows}  # type: ignore[misc]


MIXMONITOR = (
    f"{MONITOR}/{STEM}.wav,b r({MONITOR}/{STEM}-in.wav) t({MONITOR}/{STEM}-out.wav)".replace(
        " ", ""
    )
)


async def test_mixmonitor_legs_of_a_tailed_call_become_one_stereo_mp3(
    running_api: RunningApi, database_config: DatabaseConfig, spool: Spool, tmp_path: Path
) -> None:
    day = spool.recordings / "2026" / "03" / "02"
    caller = tone(day / f"{STEM}-in.wav", 440, 2.0, "PCM_16")
    callee = tone(day / f"{STEM}-out.wav", 1000, 1.2, "PCM_16")
    line = freepbx_line(lastapp="MixMonitor", lastdata=MIXMONITOR)
    (spool.cdr / "Master.csv").write_bytes(line)
    uuid = call_uuid(SOURCE, UNIQUEID)
    with trio.fail_after(60):
        async with running_agent(moscow(spool, running_api.endpoints.grpc_address)) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 3)
            await agent.stats.wait_until(offset_is(spool, len(line)))
        assert not caller.exists() and not callee.exists() and spool.pending_files() == []
        assert server_calls(running_api)[str(uuid)]["recording"] == f"{STEM}.wav"
        assert recording_names(running_api)[str(uuid)] == f"{STEM}.wav"  # not the path
        async with running_encoder(running_api, database_config) as outcomes:
            assert await outcomes.wait_for(uuid) is JobOutcome.STORED
        async with running_api.client(READER_TOKEN) as reader:
            _header, body = await _download(reader, uuid)
    mp3 = tmp_path / "call.mp3"
    mp3.write_bytes(body)
    decoded = decode_libsndfile(mp3)
    assert decoded.channels == 2
    both = decoded.samples[int(0.2 * RATE) : int(1.0 * RATE)]
    assert abs(dominant_hz(both[:, 0], RATE) - 440) < 10  # the caller, left
    assert abs(dominant_hz(both[:, 1], RATE) - 1000) < 10  # the callee, right
    left_only = decoded.samples[int(1.4 * RATE) : int(1.9 * RATE)]
    assert np.sqrt(np.mean(left_only[:, 1] ** 2)) < 0.01  # the shorter leg padded


async def test_a_late_leg_is_awaited_across_a_restart(
    running_api: RunningApi, spool: Spool
) -> None:
    """The pending note carries the legs: a restarted agent merges them."""
    day = spool.recordings / "2026" / "03" / "02"
    tone(day / f"{STEM}-in.wav", 440, 1.0, "PCM_16")
    callee = tone(spool.recordings.parent / "later.wav", 1000, 0.5, "PCM_16")
    line = freepbx_line(lastapp="MixMonitor", lastdata=MIXMONITOR)
    (spool.cdr / "Master.csv").write_bytes(line)
    uuid = str(call_uuid(SOURCE, UNIQUEID))
    settings = moscow(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.late_waiting >= 1)
            await agent.stats.wait_until(offset_is(spool, len(line)))
        note = json.loads((spool.pending / f"{uuid}.json").read_text())
        assert note["rnam"] == f"{STEM}.wav"
        assert note["cj_recording"] == {
            "name": f"{MONITOR}/{STEM}.wav",
            "legs": [f"{MONITOR}/{STEM}-in.wav", f"{MONITOR}/{STEM}-out.wav"],
        }
        callee.rename(day / f"{STEM}-out.wav")
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 3)
    assert spool.pending_files() == [] and list(day.iterdir()) == []
    assert server_calls(running_api)[uuid]["recording"] == f"{STEM}.wav"


async def test_a_freepbx_call_is_found_by_its_uniqueid_in_the_dated_directory(
    running_api: RunningApi, spool: Spool
) -> None:
    day = spool.recordings / "2026" / "03" / "02"
    day.mkdir(parents=True)
    (day / f"{STEM}.wav").write_bytes(WAV)
    (day / "exten-1003-1001-20260302-100000-1772434800.9.wav").write_bytes(WAV)  # another call
    line = freepbx_line()
    (spool.cdr / "Master.csv").write_bytes(line)
    uuid = str(call_uuid(SOURCE, UNIQUEID))
    with trio.fail_after(30):
        async with running_agent(moscow(spool, running_api.endpoints.grpc_address)) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 2)
            await agent.stats.wait_until(offset_is(spool, len(line)))
    calls = server_calls(running_api)
    assert calls[uuid]["recording"] == f"{STEM}.wav" and calls[uuid]["sha256"] == sha256(WAV)
    assert recording_names(running_api)[uuid] == f"{STEM}.wav"  # not `uniqueid:…`
    assert sorted(p.name for p in day.iterdir()) == [
        "exten-1003-1001-20260302-100000-1772434800.9.wav"
    ]
    assert agent.stats.recording_tree_walks == 0


async def test_a_tailed_call_without_a_recording_costs_no_tree_walk(
    running_api: RunningApi, spool: Spool
) -> None:
    # A deep archive a whole-tree search would enter (300 files below old/…).
    for n in range(3):
        deep = spool.recordings / "old" / f"y{n}" / "m" / "d"
        deep.mkdir(parents=True)
        for k in range(100):
            (deep / f"exten-1-2-20200101-000000-{n}.{k}.wav").write_bytes(b"")
    line = freepbx_line()
    (spool.cdr / "Master.csv").write_bytes(line)
    uuid = str(call_uuid(SOURCE, UNIQUEID))
    with trio.fail_after(30):
        async with running_agent(moscow(spool, running_api.endpoints.grpc_address)) as agent:
            await agent.stats.wait_until(offset_is(spool, len(line)))
    stats = agent.stats
    assert stats.calls_uploaded == 1 and stats.recordings_uploaded == 0
    assert stats.recording_lookups >= 1 and stats.recording_tree_walks == 0
    assert stats.recording_lookup_entries <= stats.recording_lookups  # the top level: old/
    assert recording_names(running_api) == {uuid: None}  # no lookup key on the server
    assert spool.pending_files() == [] and stats.late_waiting == 0
