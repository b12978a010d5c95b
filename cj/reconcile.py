"""The reconciler: the database is the truth, the queue only the wake-up call.

A recording left `uploaded` past the stale time (its job message was lost, e.g. by an
nsqd restart that kept messages only in memory, or the publish failed after the row
was committed), or `encoding` past its lease (its encoder died), gets a new job. A
spare job is harmless: encoders claim recordings with a conditional update, so a
duplicate finds nothing to do and is acknowledged.
"""

from __future__ import annotations

import functools
import random

import structlog
import trio

from cj.db import Database, DatabaseError
from cj.db.recordings import stale_recordings, touch_requeued
from cj.queue.base import EncodeJob, JobPublisher, QueueError

log = structlog.get_logger(__name__)


async def reconcile_once(
    db: Database, publisher: JobPublisher, *, stale_after_s: float, batch: int = 1000
) -> int:
    """Re-publish jobs for forgotten recordings; returns how many were re-published."""
    total = 0
    while True:
        stale = await db.run(
            lambda conn: stale_recordings(conn, older_than_s=stale_after_s, limit=batch)
        )
        if not stale:
            return total
        await publisher.publish_many([EncodeJob(call_uuid) for call_uuid in stale])
        await db.run(functools.partial(touch_requeued, call_uuids=stale))
        total += len(stale)
        log.info("recordings_requeued", count=len(stale))
        if len(stale) < batch:
            return total


async def run_reconciler(
    db: Database,
    publisher: JobPublisher,
    *,
    interval_s: float,
    stale_after_s: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reconcile every `interval_s` (±10% jitter, so several encoders spread out)."""
    task_status.started()
    while True:
        try:
            await reconcile_once(db, publisher, stale_after_s=stale_after_s)
        except (DatabaseError, QueueError) as exc:
            log.warning("reconcile_failed", error=str(exc))
        await trio.sleep(interval_s * random.uniform(0.9, 1.1))
