"""Prometheus metrics and health of one agent (a registry per agent).

Counters come from `AgentStats` and the server link at scrape time (reading integers is
all a scrape does). The backlog — files waiting in each source's CDR, recordings and
pending directories, their bytes and the oldest one's age — needs directory listings,
so `run_backlog_scan` refreshes it in a worker thread every `BACKLOG_REFRESH_S`,
looking at no more than `MAX_SCANNED` entries per directory.

/healthz is unhealthy when files wait and the server has acknowledged nothing for
`agent.unhealthy_after_s` (the agent cannot deliver), or when the agent is stopping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cj.config import AgentConfig, AgentSourceConfig
from cj.telemetry import Health
from cj_agent.stats import AgentStats
from cj_agent.uploader import ServerLink
from cj_agent.watch import compile_patterns

log = structlog.get_logger(__name__)

BACKLOG_REFRESH_S = 10.0
MAX_SCANNED = 100_000

# AgentStats counter → (metric name without _total, help)
_COUNTERS = {
    "calls_uploaded": ("cj_agent_calls_uploaded", "Calls the server acknowledged."),
    "recordings_uploaded": (
        "cj_agent_recordings_uploaded",
        "Recordings the server acknowledged (new or duplicate).",
    ),
    "recordings_duplicate": (
        "cj_agent_recordings_duplicate",
        "Recordings the server already had.",
    ),
    "files_done": ("cj_agent_files_done", "Files deleted or archived after acknowledgement."),
    "quarantined": (
        "cj_agent_quarantined_files",
        "Files moved to a failed/ directory, with the reason next to them.",
    ),
    "errors": ("cj_agent_errors", "Unexpected failures (the file stays for a retry)."),
}
_GAUGES = {
    "in_progress": ("cj_agent_calls_in_progress", "CDRs and late recordings handled now."),
    "late_waiting": ("cj_agent_late_recordings", "Recordings awaited in pending/."),
}


@dataclass(frozen=True)
class DirectoryBacklog:
    files: int
    bytes: int
    oldest_mtime: float | None  # time.time() scale


def scan_backlog(
    directory: Path, patterns: Sequence[str], limit: int = MAX_SCANNED
) -> DirectoryBacklog:
    """Files in `directory` (not below) matching `patterns`; a missing one is empty."""
    pattern = compile_patterns(patterns)
    files = size = 0
    oldest: float | None = None
    try:
        with os.scandir(directory) as entries:
            for count, entry in enumerate(entries):
                if count >= limit:
                    break
                if not pattern.fullmatch(entry.name):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we looked
                files += 1
                size += stat.st_size
                oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return DirectoryBacklog(files, size, oldest)


def _backlog_dirs(source: AgentSourceConfig) -> Iterator[tuple[str, Path, Sequence[str]]]:
    yield "cdr", source.cdr_dir, source.cdr_patterns
    yield "pending", source.late_dir, source.cdr_patterns
    if source.recordings_dir != source.cdr_dir or tuple(source.recording_patterns) != tuple(
        source.cdr_patterns
    ):
        yield "recordings", source.recordings_dir, source.recording_patterns


class AgentMetrics:
    def __init__(self, config: AgentConfig, stats: AgentStats, link: ServerLink) -> None:
        self.config = config
        self.stats = stats
        self.link = link
        self.registry = CollectorRegistry()
        self.registry.register(_StatsCollector(stats, link))
        self.backlog_files = Gauge(
            "cj_agent_backlog_files",
            "Files waiting, by source and directory (cdr, recordings, pending).",
            ["source", "directory"],
            registry=self.registry,
        )
        self.backlog_bytes = Gauge(
            "cj_agent_backlog_bytes",
            "Bytes of the files waiting, by source and directory.",
            ["source", "directory"],
            registry=self.registry,
        )
        self.oldest = Gauge(
            "cj_agent_oldest_pending_file_age_seconds",
            "Age (since its last change) of the oldest file waiting, by source.",
            ["source"],
            registry=self.registry,
        )
        self.started = time.time()
        self.stopping = False
        self.telemetry_port: int | None = None  # where /metrics is served, once it is
        self._waiting = 0

    async def refresh_backlog(self) -> None:
        def scan() -> list[tuple[str, str, DirectoryBacklog]]:
            return [
                (source.name, kind, scan_backlog(path, patterns))
                for source in self.config.sources
                for kind, path, patterns in _backlog_dirs(source)
            ]

        results = await trio.to_thread.run_sync(scan)
        now = time.time()
        oldest: dict[str, float | None] = {s.name: None for s in self.config.sources}
        waiting = 0
        for source, kind, backlog in results:
            self.backlog_files.labels(source, kind).set(backlog.files)
            self.backlog_bytes.labels(source, kind).set(backlog.bytes)
            waiting += backlog.files
            if backlog.oldest_mtime is not None:
                current = oldest[source]
                oldest[source] = (
                    backlog.oldest_mtime if current is None else min(current, backlog.oldest_mtime)
                )
        for source, mtime in oldest.items():
            self.oldest.labels(source).set(0 if mtime is None else max(0.0, now - mtime))
        self._waiting = waiting

    def health(self) -> Health:
        now = time.time()
        last = self.link.last_success
        silent_s = now - (last if last is not None else self.started)
        stuck = self._waiting > 0 and silent_s > self.config.unhealthy_after_s
        checks: dict[str, object] = {
            "server_connected": self.link.connected,
            "seconds_since_last_acknowledgement": None if last is None else round(now - last, 1),
            "files_waiting": self._waiting,
            "stopping": self.stopping,
        }
        if self.link.last_error:
            checks["last_error"] = self.link.last_error[:200]
        return Health(healthy=not stuck and not self.stopping, checks=checks)


class _StatsCollector(Collector):
    def __init__(self, stats: AgentStats, link: ServerLink) -> None:
        self._stats = stats
        self._link = link

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        for field_name, (name, help_text) in _COUNTERS.items():
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], getattr(self._stats, field_name))
            yield family
        for field_name, (name, help_text) in _GAUGES.items():
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], getattr(self._stats, field_name))
            yield gauge
        requests = CounterMetricFamily(
            "cj_agent_requests",
            "Requests the server answered, by operation (AddCalls, UploadRecording, …).",
            labels=["operation"],
        )
        for operation, count in sorted(self._link.succeeded.items()):
            requests.add_metric([operation], count)
        yield requests
        errors = CounterMetricFamily(
            "cj_agent_request_errors",
            "Requests refused or failed, by operation and gRPC status code.",
            labels=["operation", "code"],
        )
        for (operation, code), count in sorted(self._link.errors.items()):
            errors.add_metric([operation, code], count)
        yield errors
        last = GaugeMetricFamily(
            "cj_agent_last_success_timestamp_seconds",
            "When the server last acknowledged a request (Unix time; 0: never).",
        )
        last.add_metric([], self._link.last_success or 0.0)
        yield last
        connected = GaugeMetricFamily(
            "cj_agent_server_connected", "1 while the agent holds a working connection."
        )
        connected.add_metric([], 1.0 if self._link.connected else 0.0)
        yield connected


async def run_backlog_scan(
    metrics: AgentMetrics,
    *,
    interval_s: float = BACKLOG_REFRESH_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh the backlog gauges now, then every `interval_s`, until cancelled."""
    await metrics.refresh_backlog()
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        try:
            await metrics.refresh_backlog()
        except OSError as exc:
            log.warning("backlog_scan_failed", error=str(exc))
