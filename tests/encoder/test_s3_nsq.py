"""The encoder on the production stack: SeaweedFS (S3) storages and the NSQ queue.

NSQ is the protocol-faithful test peer from tests/queue/nsq_peer.py (no nsqd can be
installed here; real nsqd is exercised in docker compose).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import soundfile
import trio

from cj.config import DatabaseConfig, EncoderConfig, EncoderSettings, QueueConfig, StorageConfig
from cj.db import open_database
from cj.model import RecordingStatus
from cj.queue import open_consumer, open_publisher
from cj.storage import open_storages
from cj_encoder.service import run_encoder
from cj_encoder.worker import JobOutcome
from tests.encoder.test_service import AUDIO, Rig
from tests.fixtures.seaweed import SeaweedFS
from tests.queue.nsq_peer import NsqTestPeer


async def test_encoder_with_seaweedfs_and_nsq(
    database_config: DatabaseConfig, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    temp_bucket, recordings_bucket = seaweedfs.make_bucket("temp"), seaweedfs.make_bucket("rec")
    storage = StorageConfig(
        backends={
            "temp": seaweedfs.storage_config(temp_bucket),
            "recordings": seaweedfs.storage_config(recordings_bucket),
        },
        temporary="temp",
        permanent="recordings",
    )
    peer = NsqTestPeer()
    wav = (AUDIO / "alaw-8k-mono.wav").read_bytes()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.serve)
            queue = QueueConfig(kind="nsq", nsqd_tcp_addresses=(peer.address,), lease_s=60)
            settings = EncoderSettings(
                encoder=EncoderConfig(concurrency=2, work_dir=tmp_path),
                storage=storage,
                queue=queue,
            )
            async with (
                open_database(database_config) as db,
                open_storages(storage) as storages,
                open_publisher(queue, db) as publisher,
                open_consumer(queue, db) as consumer,
            ):
                rig = Rig(db, storages, publisher)  # type: ignore[arg-type]
                shutdown = trio.Event()
                await nursery.start(
                    lambda task_status: run_encoder(
                        settings,
                        db=db,
                        storages=storages,
                        publisher=publisher,
                        consumer=consumer,
                        shutdown=shutdown,
                        on_settled=rig.on_settled,
                        task_status=task_status,
                    )
                )
                call_uuid = await rig.ingest(wav)
                await rig.wait_for(call_uuid, JobOutcome.STORED)
                recording = await rig.recording(call_uuid)
                assert recording.key is not None
                mp3 = tmp_path / "check.mp3"
                await storages.permanent.get_file(recording.key, mp3)
                assert recording.original_key is None
                shutdown.set()
            nursery.cancel_scope.cancel()
    assert recording.status is RecordingStatus.STORED
    assert hashlib.sha256(mp3.read_bytes()).hexdigest() == recording.sha256
    assert soundfile.info(str(mp3)).channels == 2
    client = seaweedfs.client()
    leftovers = client.list_objects_v2(Bucket=temp_bucket).get("KeyCount", 0)
    assert leftovers == 0  # the temporary WAV was removed
