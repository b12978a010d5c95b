"""The recording state machine and the reconciler, against a real PostgreSQL."""

from __future__ import annotations

import uuid

import trio

from cj.db import Database
from cj.db.ingest import upsert_call
from cj.db.recordings import (
    CreateOutcome,
    claim_for_encoding,
    create_recording,
    extend_lease,
    forget_original,
    get_recording,
    mark_failed,
    mark_stored,
    release_for_retry,
    requeue_failed,
)
from cj.model import RecordingStatus
from cj.queue.base import EncodeJob
from cj.queue.postgres import PostgresPublisher
from cj.reconcile import reconcile_once
from tests.factories import make_call

SHA_A, SHA_B = "a" * 64, "b" * 64


async def new_recording(db: Database, sha: str = SHA_A) -> uuid.UUID:
    call = make_call()
    await db.run(lambda c: upsert_call(c, call))
    created = await db.run(
        lambda c: create_recording(
            c, call.uuid, original_name="x.wav", size=10, sha256=sha, storage="temp", key="k"
        )
    )
    assert created.outcome is CreateOutcome.CREATED
    return call.uuid


def stored_kwargs() -> dict[str, object]:
    return {
        "storage": "recordings",
        "key": "2026/03/02/x.mp3",
        "size": 5,
        "sha256": SHA_B,
        "content_type": "audio/mpeg",
        "duration_ms": 1000,
        "sample_rate": 8000,
        "channels": 2,
    }


async def test_create_is_idempotent_and_detects_conflicts(db: Database) -> None:
    call_uuid = await new_recording(db)
    again = await db.run(
        lambda c: create_recording(
            c, call_uuid, original_name="y.wav", size=10, sha256=SHA_A, storage="t", key="k2"
        )
    )
    assert again.outcome is CreateOutcome.DUPLICATE and again.recording.original_key == "k"
    other = await db.run(
        lambda c: create_recording(
            c, call_uuid, original_name="x.wav", size=10, sha256=SHA_B, storage="t", key="k"
        )
    )
    assert other.outcome is CreateOutcome.CONFLICT


async def test_happy_path_and_idempotent_claims(db: Database) -> None:
    call_uuid = await new_recording(db)
    claimed = await db.run(lambda c: claim_for_encoding(c, call_uuid, 60))
    assert claimed is not None and claimed.status is RecordingStatus.ENCODING
    assert claimed.attempts == 1
    # A duplicate job while the lease is live finds nothing to do.
    assert await db.run(lambda c: claim_for_encoding(c, call_uuid, 60)) is None
    assert await db.run(lambda c: extend_lease(c, call_uuid, 60))
    stored = await db.run(lambda c: mark_stored(c, call_uuid, **stored_kwargs()))  # type: ignore[arg-type]
    assert stored is not None and stored.status is RecordingStatus.STORED
    assert stored.original_key == "k"  # kept until the WAV is really deleted
    await db.run(lambda c: forget_original(c, call_uuid))
    final = await db.run(lambda c: get_recording(c, call_uuid))
    assert final is not None and final.original_key is None and final.key == "2026/03/02/x.mp3"
    # Stored is final: no claim, no second store.
    assert await db.run(lambda c: claim_for_encoding(c, call_uuid, 60)) is None
    assert await db.run(lambda c: mark_stored(c, call_uuid, **stored_kwargs())) is None  # type: ignore[arg-type]


async def test_expired_lease_can_be_claimed_again(db: Database) -> None:
    call_uuid = await new_recording(db)
    await db.run(lambda c: claim_for_encoding(c, call_uuid, 60))
    await db.run(lambda c: c.execute("UPDATE recordings SET lease_until = now() - interval '1s'"))
    again = await db.run(lambda c: claim_for_encoding(c, call_uuid, 60))
    assert again is not None and again.attempts == 2


async def test_failure_and_requeue(db: Database) -> None:
    call_uuid = await new_recording(db)
    await db.run(lambda c: claim_for_encoding(c, call_uuid, 60))
    await db.run(lambda c: release_for_retry(c, call_uuid, "storage down", 30))
    retried = await db.run(lambda c: get_recording(c, call_uuid))
    assert retried is not None and retried.status is RecordingStatus.UPLOADED
    assert retried.last_error == "storage down"
    await db.run(lambda c: claim_for_encoding(c, call_uuid, 60))
    await db.run(lambda c: mark_failed(c, call_uuid, "undecodable: not a WAV"))
    failed = await db.run(lambda c: get_recording(c, call_uuid))
    assert failed is not None and failed.status is RecordingStatus.FAILED
    assert failed.original_key == "k"  # the WAV is kept
    assert await db.run(lambda c: claim_for_encoding(c, call_uuid, 60)) is None
    assert await db.run(lambda c: requeue_failed(c, uuid.uuid4())) == []
    assert await db.run(lambda c: requeue_failed(c)) == [call_uuid]
    back = await db.run(lambda c: get_recording(c, call_uuid))
    assert back is not None and back.status is RecordingStatus.UPLOADED and back.attempts == 0


async def _job_uuids(db: Database) -> list[uuid.UUID]:
    rows = await db.run(lambda c: c.execute("SELECT body FROM jobs ORDER BY id").fetchall())
    return [EncodeJob.from_bytes(bytes(r["body"])).call_uuid for r in rows]


async def test_reconciler_requeues_only_forgotten_recordings(db: Database) -> None:
    publisher = PostgresPublisher(db, "cj-encode")
    forgotten = await new_recording(db)
    fresh = await new_recording(db)
    dead_encoder = await new_recording(db)
    live_encoder = await new_recording(db)
    waiting_retry = await new_recording(db)
    stored = await new_recording(db)
    for u in (dead_encoder, live_encoder, waiting_retry, stored):
        await db.run(lambda c, u=u: claim_for_encoding(c, u, 600))
    await db.run(lambda c: release_for_retry(c, waiting_retry, "s3 down", 3600))
    await db.run(lambda c: mark_stored(c, stored, **stored_kwargs()))  # type: ignore[arg-type]
    await db.run(
        lambda c: c.execute(
            "UPDATE recordings SET updated_at = now() - interval '1 hour' WHERE call_uuid <> %s",
            (fresh,),
        )
    )
    await db.run(
        lambda c: c.execute(
            "UPDATE recordings SET lease_until = now() - interval '1 s' WHERE call_uuid = %s",
            (dead_encoder,),
        )
    )
    with trio.fail_after(20):
        assert await reconcile_once(db, publisher, stale_after_s=300) == 2
        assert sorted(await _job_uuids(db)) == sorted([forgotten, dead_encoder])
        back = await db.run(lambda c: get_recording(c, dead_encoder))
        assert back is not None and back.status is RecordingStatus.UPLOADED
        # The stale clock restarted: an immediate second pass publishes nothing more.
        assert await reconcile_once(db, publisher, stale_after_s=300) == 0
