"""Prometheus metrics of one API process (a registry per server, so tests can run many).

With several worker processes (`api.workers`, cj_api/workers.py) a scrape reaches one
worker, yet must count them all: the supervisor starts the workers with
`PROMETHEUS_MULTIPROC_DIR` set, so prometheus_client keeps every worker's values in
files there (one per process, kept after it exits: counters never go back), and
`render` sums those files (prometheus_client's multiprocess mode). The metrics here are
counters and histograms only, which sum without any per-metric setting.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # prometheus_client chose where values live when it was imported, from the
        # environment: then a scrape answers every process's files, summed.
        directory = os.environ.get(MULTIPROC_ENV)
        self.multiprocess_dir = Path(directory) if directory else None
        if self.multiprocess_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        else:
            self._exposed = self.registry
        self.requests = Counter(
            "cj_api_requests",
            "Requests answered, by protocol, route (REST) or method (gRPC), and status.",
            ["protocol", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cj_api_request_duration_seconds",
            "Time to answer a request, by protocol and route or method.",
            ["protocol", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.uploaded_bytes = Counter(
            "cj_api_uploaded_bytes",
            "Bytes of recordings accepted into temporary storage.",
            registry=self.registry,
        )
        self.downloaded_bytes = Counter(
            "cj_api_downloaded_bytes",
            "Bytes of recordings sent to clients.",
            registry=self.registry,
        )
        self.replica_fallback_reads = Counter(
            "cj_api_replica_fallback_reads",
            "Reads (searches, GetCall) sent to the primary because database.read_url failed.",
            registry=self.registry,
        )

    def observe(self, protocol: str, route: str, status: str, seconds: float) -> None:
        self.requests.labels(protocol, route, status).inc()
        self.latency.labels(protocol, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self._exposed)
