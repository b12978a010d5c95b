"""The encoder's /metrics and /healthz: real encodes counted, backlog read from SQL."""

from __future__ import annotations

import httpx
import trio

from cj.queue.postgres import open_postgres_consumer
from cj_encoder.metrics import EncoderMetrics
from cj_encoder.service import run_encoder
from cj_encoder.worker import JobOutcome
from tests.encoder.test_service import AUDIO, QUEUE, Rig, rig, settings
from tests.promtext import sample

__all__ = ["rig"]  # the fixture, shared with test_service


async def test_encodes_failures_and_backlog_are_served(rig: Rig) -> None:
    good = (AUDIO / "pcm16-8k-mono.wav").read_bytes()
    metrics = EncoderMetrics()
    config = settings(metrics_port=0)
    with trio.fail_after(60):
        stored = await rig.ingest(good)
        broken = await rig.ingest(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
        shutdown = trio.Event()
        async with open_postgres_consumer(rig.db, QUEUE) as consumer, trio.open_nursery() as n:
            await n.start(
                lambda task_status: run_encoder(
                    config,
                    db=rig.db,
                    storages=rig.storages,
                    publisher=rig.publisher,
                    consumer=consumer,
                    shutdown=shutdown,
                    on_settled=rig.on_settled,
                    metrics=metrics,
                    task_status=task_status,
                )
            )
            await rig.wait_for(stored, JobOutcome.STORED)
            await rig.wait_for(broken, JobOutcome.FAILED)
            await metrics.refresh_backlog(rig.db)
            assert metrics.telemetry_port is not None
            base = f"http://127.0.0.1:{metrics.telemetry_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                page = await client.get("/metrics")
                health = await client.get("/healthz")
                missing = await client.get("/nothing")
            shutdown.set()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert sample(text, "cj_encoder_jobs_total", outcome="stored") == 1
    assert sample(text, "cj_encoder_jobs_total", outcome="failed") == 1
    assert sample(text, "cj_encoder_failures_total", reason="undecodable") == 1
    assert sample(text, "cj_encoder_attempts_total") == 2
    assert sample(text, "cj_encoder_encode_seconds_count") == 2  # the failed decode too
    assert sample(text, "cj_encoder_backlog_recordings", status="failed") == 1
    assert sample(text, "cj_encoder_backlog_recordings", status="uploaded") == 0
    assert sample(text, "cj_encoder_busy_workers") == 0
    assert sample(text, "cj_encoder_encoded_bytes_total") > 0
    assert (
        sample(
            text,
            "cj_encoder_storage_operation_seconds_count",
            storage="recordings",
            operation="put",
        )
        == 1
    )
    assert sample(text, "cj_storage_filesystem_free_bytes", storage="temp") > 0
    assert sample(text, "cj_storage_filesystem_size_bytes", storage="recordings") > 0
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert missing.status_code == 404


async def test_healthz_is_unhealthy_while_the_database_is_unreadable(rig: Rig) -> None:
    metrics = EncoderMetrics()
    with trio.fail_after(30):
        await metrics.refresh_backlog(rig.db)
        assert metrics.health(stopping=False).healthy
        assert not metrics.health(stopping=True).healthy
        await rig.db.run(lambda c: c.execute("ALTER TABLE recordings RENAME TO recordings_x"))
        try:
            await metrics.refresh_backlog(rig.db)
        finally:
            await rig.db.run(lambda c: c.execute("ALTER TABLE recordings_x RENAME TO recordings"))
    report = metrics.health(stopping=False)
    assert not report.healthy and report.checks["database"] == "unreachable"
