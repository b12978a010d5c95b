"""Prometheus metrics and health of one encoder process (a registry per encoder).

Names follow Prometheus conventions: `_total` counters, units in names (`_seconds`,
`_bytes`). The backlog comes from the database (the source of truth, shared by every
encoder), refreshed every `BACKLOG_REFRESH_S` by `run_backlog_refresh`, never per scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import structlog
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cj.db import Database
from cj.db.recordings import count_backlog
from cj.storage import FilesystemStorage, Storage
from cj.telemetry import Health

log = structlog.get_logger(__name__)

BACKLOG_REFRESH_S = 15.0
ENCODE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STORAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class EncoderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "cj_encoder_jobs",
            "Deliveries handled, by outcome (stored, failed, retry, nothing_to_do).",
            ["outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "cj_encoder_attempts",
            "Encode attempts started (a recording claimed for encoding).",
            registry=self.registry,
        )
        self.failures = Counter(
            "cj_encoder_failures",
            "Failed attempts by reason: undecodable, original_missing, gave_up (each marks "
            "the recording failed) or transient (retried later).",
            ["reason"],
            registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "cj_encoder_encode_seconds",
            "Time spent decoding a WAV and encoding its MP3, failed attempts included.",
            buckets=ENCODE_BUCKETS,
            registry=self.registry,
        )
        self.storage_seconds = Histogram(
            "cj_encoder_storage_operation_seconds",
            "Time of storage operations, by storage and operation (get, put, delete).",
            ["storage", "operation"],
            buckets=STORAGE_BUCKETS,
            registry=self.registry,
        )
        self.encoded_bytes = Counter(
            "cj_encoder_encoded_bytes",
            "Bytes of MP3 written to permanent storage.",
            registry=self.registry,
        )
        self.busy_workers = Gauge(
            "cj_encoder_busy_workers",
            "Workers encoding right now.",
            registry=self.registry,
        )
        self.workers = Gauge("cj_encoder_workers", "Workers configured.", registry=self.registry)
        self.backlog = Gauge(
            "cj_encoder_backlog_recordings",
            "Recordings by status (uploaded, encoding: waiting or being encoded; failed: "
            "gave up), from the database.",
            ["status"],
            registry=self.registry,
        )
        self.oldest = Gauge(
            "cj_encoder_backlog_oldest_age_seconds",
            "Age of the oldest recording in each backlog status.",
            ["status"],
            registry=self.registry,
        )
        self.backlog_updated = Gauge(
            "cj_encoder_backlog_updated_timestamp_seconds",
            "When the backlog figures were last read from the database (Unix time).",
            registry=self.registry,
        )
        self.filesystem_free = Gauge(
            "cj_storage_filesystem_free_bytes",
            "Free bytes on the filesystem of each filesystem storage (for unprivileged users).",
            ["storage"],
            registry=self.registry,
        )
        self.filesystem_size = Gauge(
            "cj_storage_filesystem_size_bytes",
            "Size of the filesystem of each filesystem storage.",
            ["storage"],
            registry=self.registry,
        )
        self.quota = Gauge(
            "cj_storage_quota_bytes",
            "The configured quota of each filesystem storage that has one.",
            ["storage"],
            registry=self.registry,
        )
        self.quota_used = Gauge(
            "cj_storage_quota_used_bytes",
            "Bytes counted against the quota (as last counted by this process).",
            ["storage"],
            registry=self.registry,
        )
        self._backlog_ok = False
        self.telemetry_port: int | None = None  # where /metrics is served, once it is

    @contextmanager
    def timed_storage(self, storage: str, operation: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.storage_seconds.labels(storage, operation).observe(time.perf_counter() - began)

    async def refresh_storage(self, storages: Iterable[Storage]) -> None:
        """Space left on filesystem storages (statvfs, in a worker thread)."""
        local = [s for s in storages if isinstance(s, FilesystemStorage)]

        def measure() -> list[tuple[FilesystemStorage, os.statvfs_result | None]]:
            results: list[tuple[FilesystemStorage, os.statvfs_result | None]] = []
            for storage in local:
                path = storage.root.absolute()
                while not path.exists() and path != path.parent:
                    path = path.parent  # not created yet: the filesystem it will be on
                try:
                    results.append((storage, os.statvfs(path)))
                except OSError:
                    results.append((storage, None))
            return results

        for storage, stat in await trio.to_thread.run_sync(measure):
            if stat is not None:
                self.filesystem_free.labels(storage.name).set(stat.f_bavail * stat.f_frsize)
                self.filesystem_size.labels(storage.name).set(stat.f_blocks * stat.f_frsize)
            if storage.quota_bytes:
                self.quota.labels(storage.name).set(storage.quota_bytes)
                used = storage.known_usage
                if used is not None:
                    self.quota_used.labels(storage.name).set(used)

    async def refresh_backlog(self, db: Database) -> None:
        try:
            counts = await db.run(count_backlog)
        except Exception as exc:
            self._backlog_ok = False
            log.warning("backlog_refresh_failed", error=str(exc))
            return
        for status, (count, oldest_s) in counts.items():
            self.backlog.labels(status.value).set(count)
            self.oldest.labels(status.value).set(oldest_s)
        self.backlog_updated.set(time.time())
        self._backlog_ok = True

    def health(self, *, stopping: bool) -> Health:
        checks = {"database": "ok" if self._backlog_ok else "unreachable", "stopping": stopping}
        return Health(healthy=self._backlog_ok and not stopping, checks=checks)


async def run_backlog_refresh(
    metrics: EncoderMetrics,
    db: Database,
    storages: Iterable[Storage] = (),
    *,
    interval_s: float = BACKLOG_REFRESH_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh the backlog and storage gauges now, then every `interval_s`."""
    storages = list(storages)
    await metrics.refresh_backlog(db)
    await metrics.refresh_storage(storages)
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        await metrics.refresh_backlog(db)
        await metrics.refresh_storage(storages)
