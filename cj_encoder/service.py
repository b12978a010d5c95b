"""The encoder daemon: consume encode jobs, N at a time, and reconcile periodically."""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Callable

import structlog
import trio

from cj.config import EncoderSettings
from cj.db import Database, open_database
from cj.queue import (
    ConsumerStopped,
    JobConsumer,
    JobPublisher,
    open_consumer,
    open_publisher,
)
from cj.reconcile import run_reconciler
from cj.storage import Storages, open_storages
from cj.telemetry import Health, serve_telemetry
from cj_encoder.metrics import EncoderMetrics, run_backlog_refresh
from cj_encoder.worker import JobContext, JobOutcome, process, remove_orphaned_work_dirs

log = structlog.get_logger(__name__)


async def serve(
    settings: EncoderSettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled, or until `shutdown` is set (then drain gracefully).

    Graceful shutdown stops taking jobs, lets encodes in flight finish within
    `encoder.grace_period_s`, then cancels the rest, which are released to the queue
    for another encoder (or the next start) to redo.
    """
    client_id = f"cj-encoder-{socket.gethostname()}-{os.getpid()}"
    async with (
        open_database(settings.database, wait=False, name="cj-encoder") as db,
        open_storages(settings.storage) as storages,
        open_publisher(settings.queue, db, client_id=client_id) as publisher,
        open_consumer(settings.queue, db, client_id=client_id) as consumer,
    ):
        await run_encoder(
            settings,
            db=db,
            storages=storages,
            publisher=publisher,
            consumer=consumer,
            shutdown=shutdown,
            task_status=task_status,
        )


async def run_encoder(
    settings: EncoderSettings,
    *,
    db: Database,
    storages: Storages,
    publisher: JobPublisher,
    consumer: JobConsumer,
    shutdown: trio.Event | None = None,
    on_settled: Callable[[uuid.UUID, JobOutcome], None] | None = None,
    metrics: EncoderMetrics | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The encoder on given dependencies (tests pass in-memory or faulty ones).

    `on_settled` is called after every delivery with its outcome. With
    `encoder.metrics_port` set, /metrics and /healthz are served there.
    """
    config = settings.encoder
    metrics = metrics or EncoderMetrics()
    metrics.workers.set(config.workers)
    orphans = await trio.to_thread.run_sync(remove_orphaned_work_dirs, config.work_dir)
    if orphans:
        log.info("orphaned_work_dirs_removed", count=orphans)
    ctx = JobContext(
        db=db,
        storages=storages,
        config=config,
        lease_s=settings.queue.lease_s,
        encode_limiter=trio.CapacityLimiter(config.workers),
        metrics=metrics,
    )
    stopping = False

    async def health() -> Health:
        return metrics.health(stopping=stopping)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                run_backlog_refresh,
                metrics,
                db,
                [storages.temporary, storages.permanent],
                interval_s=config.metrics_refresh_s,
            )
        )
        if config.metrics_port is not None:
            metrics.telemetry_port = await nursery.start(
                serve_telemetry, config.metrics_host, config.metrics_port, metrics.registry, health
            )
        await nursery.start(
            functools.partial(
                run_reconciler,
                db,
                publisher,
                interval_s=config.reconcile_interval_s,
                stale_after_s=settings.queue.lease_s,
            )
        )
        workers = trio.CancelScope()
        workers_done = trio.Event()
        nursery.start_soon(
            _run_workers, ctx, consumer, config.workers, workers, workers_done, on_settled
        )
        log.info(
            "encoder_started",
            workers=config.workers,
            queue=settings.queue.kind,
            permanent=storages.permanent.name,
        )
        task_status.started()
        if shutdown is None:
            await trio.sleep_forever()
        else:
            await shutdown.wait()
        stopping = True
        log.info("encoder_stopping", grace_period_s=config.grace_period_s)
        await consumer.stop_receiving()
        workers.deadline = trio.current_time() + config.grace_period_s
        await workers_done.wait()
        nursery.cancel_scope.cancel()


async def _run_workers(
    ctx: JobContext,
    consumer: JobConsumer,
    count: int,
    scope: trio.CancelScope,
    done: trio.Event,
    on_settled: Callable[[uuid.UUID, JobOutcome], None] | None,
) -> None:
    try:
        with scope:
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(_worker, ctx, consumer, on_settled)
    finally:
        done.set()


async def _worker(
    ctx: JobContext,
    consumer: JobConsumer,
    on_settled: Callable[[uuid.UUID, JobOutcome], None] | None,
) -> None:
    while True:
        try:
            delivery = await consumer.receive()
        except ConsumerStopped:
            return
        ctx.metrics.busy_workers.inc()
        try:
            outcome = await process(ctx, delivery)
        finally:
            ctx.metrics.busy_workers.dec()
        ctx.metrics.jobs.labels(outcome.value).inc()
        if on_settled is not None:
            on_settled(delivery.job.call_uuid, outcome)
