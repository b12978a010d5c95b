"""The encoder daemon end to end: real PostgreSQL, real storages, the PostgreSQL queue.

Completion is observed through `run_encoder`'s `on_settled` hook, never by sleeping.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import soundfile
import trio

from cj.config import DatabaseConfig, EncoderConfig, EncoderSettings, QueueConfig
from cj.db import Database, open_database
from cj.db.ingest import upsert_call
from cj.db.recordings import claim_for_encoding, create_recording, get_recording
from cj.model import Recording, RecordingStatus
from cj.queue.base import EncodeJob
from cj.queue.postgres import PostgresPublisher, open_postgres_consumer
from cj.storage import FilesystemStorage, MemoryStorage, Storage, Storages, StorageUnavailable
from cj_api.service import wav_key
from cj_encoder.service import run_encoder
from cj_encoder.worker import JobOutcome, mp3_key
from tests.factories import make_call

AUDIO = Path(__file__).resolve().parents[1] / "data" / "audio"  # copies of shared/samples

QUEUE = QueueConfig(kind="postgres", lease_s=60, poll_interval_s=3600)


def settings(**encoder: object) -> EncoderSettings:
    config = {"concurrency": 2, "retry_base_s": 0.01, "retry_max_s": 0.05, **encoder}
    return EncoderSettings(encoder=EncoderConfig(**config), queue=QUEUE)  # type: ignore[arg-type]


@dataclass
class Rig:
    db: Database
    storages: Storages
    publisher: PostgresPublisher
    settled: list[tuple[uuid.UUID, JobOutcome]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def on_settled(self, call_uuid: uuid.UUID, outcome: JobOutcome) -> None:
        self.settled.append((call_uuid, outcome))
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, call_uuid: uuid.UUID, *outcomes: JobOutcome) -> JobOutcome:
        while True:
            for seen, outcome in self.settled:
                if seen == call_uuid and outcome in outcomes:
                    return outcome
            await self.changed.wait()

    async def ingest(self, wav: bytes, *, name: str = "call.wav") -> uuid.UUID:
        """What cj_api does for an upload: call row, WAV in temp storage, row, job."""
        call = make_call()
        sha = hashlib.sha256(wav).hexdigest()
        key = wav_key(call.uuid, sha)
        async with self.storages.temporary.open_upload(key) as upload:
            await upload.write(wav)
            await upload.commit()
        await self.db.run(lambda c: upsert_call(c, call))
        await self.db.run(
            lambda c: create_recording(
                c,
                call.uuid,
                original_name=name,
                size=len(wav),
                sha256=sha,
                storage=self.storages.temporary.name,
                key=key,
            )
        )
        await self.publisher.publish(EncodeJob(call.uuid))
        return call.uuid

    async def recording(self, call_uuid: uuid.UUID) -> Recording:
        recording = await self.db.run(lambda c: get_recording(c, call_uuid))
        assert recording is not None
        return recording

    @asynccontextmanager
    async def encoder(self, config: EncoderSettings | None = None) -> AsyncIterator[trio.Event]:
        config = config or settings()
        shutdown = trio.Event()
        async with open_postgres_consumer(self.db, QUEUE) as consumer, trio.open_nursery() as n:
            await n.start(
                lambda task_status: run_encoder(
                    config,
                    db=self.db,
                    storages=self.storages,
                    publisher=self.publisher,
                    consumer=consumer,
                    shutdown=shutdown,
                    on_settled=self.on_settled,
                    task_status=task_status,
                )
            )
            yield shutdown
            shutdown.set()


def make_storages(tmp_path: Path, permanent: Storage | None = None) -> Storages:
    temp = FilesystemStorage("temp", tmp_path / "temp")
    perm = permanent or FilesystemStorage("recordings", tmp_path / "recordings")
    return Storages({"temp": temp, perm.name: perm}, temporary="temp", permanent=perm.name)


@pytest.fixture
async def rig(database_config: DatabaseConfig, tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_database(database_config) as db:
        yield Rig(db, make_storages(tmp_path), PostgresPublisher(db, QUEUE.topic))


@pytest.mark.parametrize(
    ("sample", "channels_in", "seconds"),
    [
        ("pcm16-8k-mono.wav", 1, None),
        ("mulaw-8k-mono.wav", 1, None),
        ("pcm16-16k-stereo.wav", 2, None),
    ],
)
async def test_recordings_become_stereo_mp3_in_permanent_storage(
    rig: Rig, sample: str, channels_in: int, seconds: float | None
) -> None:
    wav = (AUDIO / sample).read_bytes()
    info = soundfile.info(str(AUDIO / sample))
    with trio.fail_after(60):
        call_uuid = await rig.ingest(wav)
        async with rig.encoder():
            assert await rig.wait_for(call_uuid, JobOutcome.STORED) is JobOutcome.STORED
    recording = await rig.recording(call_uuid)
    assert recording.status is RecordingStatus.STORED
    assert recording.storage == "recordings" and recording.content_type == "audio/mpeg"
    call = make_call()  # same BASE_TIME as the ingested call
    assert recording.key == mp3_key(call_uuid, call.started_at)
    assert recording.key.startswith("2026/03/02/")
    assert recording.channels == channels_in and recording.sample_rate == info.samplerate
    assert recording.duration_ms is not None
    assert abs(recording.duration_ms - info.duration * 1000) <= 30
    assert recording.original_key is None and recording.attempts == 1
    permanent = rig.storages.permanent
    assert isinstance(permanent, FilesystemStorage)
    mp3 = permanent.path_for(recording.key)
    assert hashlib.sha256(mp3.read_bytes()).hexdigest() == recording.sha256
    assert soundfile.info(str(mp3)).channels == 2
    assert list((rig.storages.temporary.path_for("x").parent.parent).rglob("*.wav")) == []  # type: ignore[attr-defined]
    jobs = await rig.db.run(lambda c: c.execute("SELECT count(*) AS n FROM jobs").fetchone())
    assert jobs is not None and jobs["n"] == 0


async def test_a_repeated_job_changes_nothing(rig: Rig) -> None:
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    with trio.fail_after(60):
        call_uuid = await rig.ingest(wav)
        async with rig.encoder():
            await rig.wait_for(call_uuid, JobOutcome.STORED)
            before = await rig.recording(call_uuid)
            await rig.publisher.publish(EncodeJob(call_uuid))
            assert await rig.wait_for(call_uuid, JobOutcome.NOTHING_TO_DO)
    after = await rig.recording(call_uuid)
    assert after == before


async def test_undecodable_recording_fails_once_and_keeps_the_wav(rig: Rig) -> None:
    garbage = b"RIFF" + os.urandom(4000)
    with trio.fail_after(60):
        call_uuid = await rig.ingest(garbage)
        async with rig.encoder():
            assert await rig.wait_for(call_uuid, JobOutcome.FAILED, JobOutcome.STORED) is (
                JobOutcome.FAILED
            )
    recording = await rig.recording(call_uuid)
    assert recording.status is RecordingStatus.FAILED
    assert recording.last_error and "undecodable" in recording.last_error
    assert recording.original_key is not None
    assert await rig.storages.temporary.exists(recording.original_key)
    assert [o for u, o in rig.settled if u == call_uuid] == [JobOutcome.FAILED]
    jobs = await rig.db.run(lambda c: c.execute("SELECT count(*) AS n FROM jobs").fetchone())
    assert jobs is not None and jobs["n"] == 0  # not retried forever


async def test_storage_outage_is_retried_with_backoff(
    database_config: DatabaseConfig, tmp_path: Path
) -> None:
    permanent = MemoryStorage("recordings")
    permanent.fail(StorageUnavailable, ops={"put_file"}, times=2)
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    async with open_database(database_config) as db:
        rig = Rig(db, make_storages(tmp_path, permanent), PostgresPublisher(db, QUEUE.topic))
        with trio.fail_after(60):
            call_uuid = await rig.ingest(wav)
            async with rig.encoder():
                await rig.wait_for(call_uuid, JobOutcome.STORED)
        recording = await rig.recording(call_uuid)
    assert [o for _, o in rig.settled] == [JobOutcome.RETRY, JobOutcome.RETRY, JobOutcome.STORED]
    assert recording.attempts == 3 and recording.status is RecordingStatus.STORED
    assert recording.key in permanent.objects


async def test_gives_up_after_max_attempts_and_keeps_the_wav(
    database_config: DatabaseConfig, tmp_path: Path
) -> None:
    permanent = MemoryStorage("recordings")
    permanent.fail(StorageUnavailable, ops={"put_file"})
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    async with open_database(database_config) as db:
        rig = Rig(db, make_storages(tmp_path, permanent), PostgresPublisher(db, QUEUE.topic))
        with trio.fail_after(60):
            call_uuid = await rig.ingest(wav)
            async with rig.encoder(settings(max_attempts=3)):
                await rig.wait_for(call_uuid, JobOutcome.FAILED)
        recording = await rig.recording(call_uuid)
    assert recording.status is RecordingStatus.FAILED and recording.attempts == 3
    assert recording.last_error and "gave up after 3 attempts" in recording.last_error
    assert recording.original_key is not None
    assert await rig.storages.temporary.exists(recording.original_key)


class GatedStorage(MemoryStorage):
    """put_file waits at a gate, so a test can act while a job is mid-flight."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reached = trio.Event()
        self.gate = trio.Event()

    async def put_file(self, key: str, path: Path) -> object:  # type: ignore[override]
        self.reached.set()
        await self.gate.wait()
        return await super().put_file(key, path)


async def test_graceful_shutdown_finishes_the_job_in_flight(
    database_config: DatabaseConfig, tmp_path: Path
) -> None:
    permanent = GatedStorage("recordings")
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    async with open_database(database_config) as db:
        rig = Rig(db, make_storages(tmp_path, permanent), PostgresPublisher(db, QUEUE.topic))
        with trio.fail_after(60):
            call_uuid = await rig.ingest(wav)
            async with rig.encoder(settings(grace_period_s=30)) as shutdown:
                await permanent.reached.wait()
                shutdown.set()  # SIGTERM while the job is in flight
                permanent.gate.set()
                await rig.wait_for(call_uuid, JobOutcome.STORED)
        assert (await rig.recording(call_uuid)).status is RecordingStatus.STORED


async def test_cancelled_mid_job_comes_back_and_completes_exactly_once(
    database_config: DatabaseConfig, tmp_path: Path
) -> None:
    permanent = GatedStorage("recordings")
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    async with open_database(database_config) as db:
        rig = Rig(db, make_storages(tmp_path, permanent), PostgresPublisher(db, QUEUE.topic))
        with trio.fail_after(60):
            call_uuid = await rig.ingest(wav)
            with trio.CancelScope() as crash:
                async with rig.encoder():
                    await permanent.reached.wait()
                    crash.cancel()  # the process dies mid-job
            assert permanent.objects == {}
            assert (await rig.recording(call_uuid)).status is RecordingStatus.UPLOADED
            permanent.gate.set()
            async with rig.encoder():
                await rig.wait_for(call_uuid, JobOutcome.STORED)
        recording = await rig.recording(call_uuid)
    assert recording.status is RecordingStatus.STORED and recording.attempts == 2
    assert list(permanent.objects) == [recording.key]


async def test_hard_crash_is_recovered_when_the_leases_expire(rig: Rig) -> None:
    """kill -9 mid-job: no cleanup ran; the row and the job stay leased until expiry."""
    wav = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    with trio.fail_after(60):
        call_uuid = await rig.ingest(wav)
        async with open_postgres_consumer(rig.db, QUEUE) as dead:
            await dead.receive()  # taken by the encoder that will die
        await rig.db.run(lambda c: claim_for_encoding(c, call_uuid, 600))
        # Time passes beyond both leases.
        await rig.db.run(
            lambda c: c.execute(
                "UPDATE jobs SET available_at = now() - interval '1 s';"
                "UPDATE recordings SET lease_until = now() - interval '1 s'"
            )
        )
        async with rig.encoder():
            await rig.wait_for(call_uuid, JobOutcome.STORED)
    recording = await rig.recording(call_uuid)
    assert recording.status is RecordingStatus.STORED and recording.attempts == 2


def test_orphaned_work_dirs_of_dead_encoders_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cj_encoder.worker import remove_orphaned_work_dirs, work_dir_prefix

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f"{work_dir_prefix(int(dead.stdout))}abc"
    mine = tmp_path / f"{work_dir_prefix()}def"
    unrelated = tmp_path / "cj-encode-notapid"
    for directory in (orphan, mine, unrelated):
        directory.mkdir()
        (directory / "in.wav").write_bytes(b"RIFF")
    assert remove_orphaned_work_dirs(tmp_path) == 1
    assert not orphan.exists() and mine.exists() and unrelated.exists()
