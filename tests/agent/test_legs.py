"""A call recorded as two legs (MixMonitor r()/t()) arrives as one stereo MP3.

Real files, a real agent in this process, a real cj-api on PostgreSQL with filesystem
storages, and the real encoder on the same database and storages: the MP3 is
downloaded, decoded and its channels compared with the legs' tones.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
import trio

from cj.config import AfterSuccess, DatabaseConfig, EncoderConfig, EncoderSettings
from cj.db import open_database
from cj.proto import calljournal_pb2 as pb
from cj.queue.postgres import PostgresPublisher, open_postgres_consumer
from cj.rpc import CallJournalClient
from cj.storage import FilesystemStorage, Storages
from cj_encoder.service import run_encoder
from cj_encoder.worker import JobOutcome
from tests.audio.helpers import decode_libsndfile
from tests.fixtures.api import READER_TOKEN, RunningApi

from .helpers import Spool, agent_settings, compact_cdr, running_agent, server_calls

RATE = 8000
MP3_FRAME = 1152  # samples per MPEG-1 Layer III frame; fewer at 8 kHz (576)
UNIQUEID = "1772432104.7"
STEM = f"exten-1002-79161234567-20260302-091504-{UNIQUEID}"  # FreePBX MixMonitor name


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


def tone(path: Path, hz: float, seconds: float, subtype: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * RATE)) / RATE
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * hz * t), RATE, subtype=subtype)
    return path


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


class Outcomes:
    """The encoder's outcome per call, awaited through its `on_settled` hook."""

    def __init__(self) -> None:
        self.seen: dict[uuid.UUID, JobOutcome] = {}
        self._changed = trio.Event()

    def on_settled(self, call_uuid: uuid.UUID, outcome: JobOutcome) -> None:
        self.seen[call_uuid] = outcome
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, call_uuid: uuid.UUID) -> JobOutcome:
        while call_uuid not in self.seen:
            await self._changed.wait()
        return self.seen[call_uuid]


@asynccontextmanager
async def running_encoder(api: RunningApi, database: DatabaseConfig) -> AsyncIterator[Outcomes]:
    """The encoder on the API's database, queue and storages."""
    root, queue = api.root, api.settings.queue
    storages = Storages(
        {
            "temp": FilesystemStorage("temp", root / "temp"),
            "recordings": FilesystemStorage("recordings", root / "recordings"),
        },
        temporary="temp",
        permanent="recordings",
    )
    outcomes = Outcomes()
    settings = EncoderSettings(encoder=EncoderConfig(concurrency=1), queue=queue)
    shutdown = trio.Event()
    async with (
        open_database(database) as db,
        open_postgres_consumer(db, queue) as consumer,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            lambda task_status: run_encoder(
                settings,
                db=db,
                storages=storages,
                publisher=PostgresPublisher(db, queue.topic),
                consumer=consumer,
                shutdown=shutdown,
                on_settled=outcomes.on_settled,
                task_status=task_status,
            )
        )
        yield outcomes
        shutdown.set()


async def test_split_legs_become_one_stereo_mp3_caller_left_callee_right(
    running_api: RunningApi, database_config: DatabaseConfig, spool: Spool, tmp_path: Path
) -> None:
    day = spool.recordings / "2026" / "03" / "02"  # FreePBX's dated directory
    caller = tone(day / f"{STEM}-in.wav", 440, 3.0, "PCM_16")
    callee = tone(day / f"{STEM}-out.wav", 1000, 1.7, "ULAW")
    document = compact_cdr(recording=f"uniqueid:{UNIQUEID}")
    call_uuid = uuid.UUID(document["uuid"])
    spool.write_cdr(document)
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 3)
        assert not caller.exists() and not callee.exists() and spool.cdr_files() == []
        scratch = spool.pending / ".merged" / "pbx-test"
        assert not scratch.exists() or list(scratch.iterdir()) == []
        row = server_calls(running_api)[str(call_uuid)]
        assert row["recording"] == f"{STEM}.wav"
        async with running_encoder(running_api, database_config) as outcomes:
            assert await outcomes.wait_for(call_uuid) is JobOutcome.STORED
        async with running_api.client(READER_TOKEN) as reader:
            header, body = await _download(reader, call_uuid)
    assert header.content_type == "audio/mpeg"
    mp3 = tmp_path / "call.mp3"
    mp3.write_bytes(body)
    decoded = decode_libsndfile(mp3)
    assert decoded.channels == 2 and decoded.sample_rate == RATE
    assert abs(decoded.frames - 3 * RATE) <= MP3_FRAME  # the longer leg, not stretched
    both = decoded.samples[int(0.2 * RATE) : int(1.5 * RATE)]
    assert abs(dominant_hz(both[:, 0], RATE) - 440) < 10
    assert abs(dominant_hz(both[:, 1], RATE) - 1000) < 10
    left_only = decoded.samples[int(2.0 * RATE) : int(2.8 * RATE)]
    assert abs(dominant_hz(left_only[:, 0], RATE) - 440) < 10
    assert np.sqrt(np.mean(left_only[:, 1] ** 2)) < 0.01  # silence after the callee's leg
    assert np.sqrt(np.mean(both[:, 1] ** 2)) > 0.2


async def _download(
    reader: CallJournalClient, call_uuid: uuid.UUID
) -> tuple[pb.DownloadHeader, bytes]:
    async with reader.download_recording(str(call_uuid)) as parts:
        header = (await anext(parts)).header
        body = b"".join([part.chunk async for part in parts])
    return header, body


def _legs(spool: Spool) -> tuple[Path, Path]:
    day = spool.recordings / "2026" / "03" / "02"
    return (
        tone(day / f"{STEM}-in.wav", 440, 1.0, "PCM_16"),
        tone(day / f"{STEM}-out.wav", 1000, 0.6, "PCM_16"),
    )


async def test_a_redone_merge_is_the_same_upload(running_api: RunningApi, spool: Spool) -> None:
    """Restarted after the upload but before the legs were finished: the legs are merged
    again into the same bytes, the server answers duplicate, a stale scratch file from
    the crash is cleared, and the legs are archived under their own names."""
    caller, callee = _legs(spool)
    originals = caller.read_bytes(), callee.read_bytes()
    document = compact_cdr(recording=f"uniqueid:{UNIQUEID}")
    cdr = spool.write_cdr(document)
    settings = agent_settings(
        spool, running_api.endpoints.grpc_address, after_success=AfterSuccess.ARCHIVE
    )
    archived = spool.archive / "2026-03-02"
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 3)
        assert spool.archived() == sorted(
            f"2026-03-02/{name}" for name in (cdr.name, caller.name, callee.name)
        )
        assert (archived / caller.name).read_bytes() == originals[0]
        # The state a crash between the acknowledgement and the finishing leaves.
        for path in (caller, callee):
            (archived / path.name).rename(path)
        (archived / cdr.name).rename(cdr)
        scratch = spool.pending / ".merged" / "pbx-test"
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / f"{document['uuid']}.wav").write_bytes(b"half a merge")
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 3)
    assert agent.stats.recordings_uploaded == 1 and agent.stats.recordings_duplicate == 1
    assert not caller.exists() and not callee.exists() and spool.cdr_files() == []
    assert list(scratch.iterdir()) == []
    assert spool.failed_files() == []
    rows = running_api.query("SELECT original_name FROM recordings")
    assert rows == [{"original_name": f"{STEM}.wav"}]


async def test_the_call_waits_for_its_late_leg(running_api: RunningApi, spool: Spool) -> None:
    caller, callee = _legs(spool)
    callee_audio = callee.read_bytes()
    callee.unlink()
    document = compact_cdr(recording=f"uniqueid:{UNIQUEID}")
    spool.write_cdr(document)
    settings = agent_settings(spool, running_api.endpoints.grpc_address, recording_wait_s=0.3)
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_late >= 1)
            assert spool.pending_files() == [f"{document['uuid']}.json"]
            assert server_calls(running_api)[document["uuid"]]["sha256"] is None
            assert caller.exists()  # one leg is not a recording
            callee.write_bytes(callee_audio)
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1)
            await agent.stats.wait_until(lambda s: s.late_waiting == 0 and s.files_done >= 3)
    assert not caller.exists() and not callee.exists() and spool.pending_files() == []
    assert server_calls(running_api)[document["uuid"]]["recording"] == f"{STEM}.wav"
