"""The whole Call Journal as separate processes: cj-api, cj-encoder and N cj-agents.

Configuration reaches the daemons only through `CJ_*` environment variables, as an
operator would give it (tables as JSON: `CJ_STORAGE_BACKENDS`, `CJ_AUTH_TOKENS`,
`CJ_AGENT_SOURCES`). The queue is PostgreSQL's; leases and the reconciler interval are
short so that recovery from a killed encoder takes seconds, not minutes.

    stack = Stack(harness, root, database_url=url, permanent=seaweed_backend(...))
    await stack.start_api(); await stack.start_encoder()
    spool = stack.add_spool("pbx-1"); await stack.start_agent(spool)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio
from psycopg.rows import dict_row

from cj.pgcluster import free_port
from cj.rpc import CallJournalClient, open_channel
from cj.storage.filesystem import TEMP_DIR
from tests.e2e.calls import Spool
from tests.e2e.harness import Harness

AGENT_TOKEN = "e2e-agent-token-0123456789"
READER_TOKEN = "e2e-reader-token-0123456789"

# One agent token for every spool of a test (spools are named pbx-1 … pbx-8): it
# must own the sources its agents send.
AGENT_SOURCES = [f"pbx-{n}" for n in range(1, 9)]
TOKENS = [
    {"name": "pbx", "token": AGENT_TOKEN, "roles": ["agent"], "sources": AGENT_SOURCES},
    {"name": "ops", "token": READER_TOKEN, "roles": ["reader"]},
]


def seaweed_backend(server: Any, bucket: str) -> dict[str, Any]:
    """An S3 storage on a SeaweedFS test server (tests/fixtures/seaweed.py)."""
    return {
        "kind": "s3",
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "path_style": True,
        # Fail fast while the server is down; the encoder's own retries do the waiting.
        "max_attempts": 2,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 20.0,
    }


def filesystem_backend(path: Path, **extra: Any) -> dict[str, Any]:
    return {"kind": "filesystem", "path": str(path), **extra}


@dataclass
class Stack:
    """One deployment: its database, storages, ports, spools and daemons."""

    harness: Harness
    root: Path
    database_url: str
    permanent: dict[str, Any]
    temp_path: Path | None = None  # filesystem temporary storage (default <root>/temp)
    temp_extra: dict[str, Any] = field(default_factory=dict)
    lease_s: float = 5.0
    encoder_workers: int = 2
    # cj-api worker processes (api.workers): one unless a test measures several.
    api_workers: int | str = 1
    encoder_max_attempts: int = 40
    extra_env: dict[str, str] = field(default_factory=dict)
    spools: list[Spool] = field(default_factory=list)
    grpc_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    encoder_metrics_port: int = field(default_factory=free_port)
    agent_metrics_ports: dict[str, int] = field(default_factory=dict)  # by daemon name

    def __post_init__(self) -> None:
        if self.temp_path is None:
            self.temp_path = self.root / "temp"
        self.temp_path.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    # --- configuration ---------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return self.root / "encoder-work"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def env(self) -> dict[str, str]:
        """The environment every daemon of this deployment shares."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("CJ_")}
        assert self.temp_path is not None
        settings = {
            "CJ_LOGGING_FORMAT": "json",
            "CJ_LOGGING_LEVEL": "info",
            "CJ_DATABASE_URL": self.database_url,
            "CJ_DATABASE_POOL_SIZE": "8",
            "CJ_DATABASE_CONNECT_TIMEOUT_S": "2",
            "CJ_API_HOST": "127.0.0.1",
            "CJ_API_GRPC_PORT": str(self.grpc_port),
            "CJ_API_REST_PORT": str(self.rest_port),
            "CJ_API_GRACE_PERIOD_S": "2",
            "CJ_API_WORKERS": str(self.api_workers),
            # The load test's searchers share one reader token, as the people at one
            # search UI would, and the verifier downloads every recording at once: such
            # a deployment raises that token's limits.
            "CJ_API_SEARCH_CONCURRENCY_PER_TOKEN": "32",
            "CJ_API_SEARCH_RATE_PER_TOKEN": "500",
            "CJ_API_SEARCH_BURST_PER_TOKEN": "1000",
            "CJ_API_DOWNLOAD_CONCURRENCY_PER_TOKEN": "32",
            "CJ_API_DOWNLOAD_RATE_PER_TOKEN": "500",
            "CJ_API_DOWNLOAD_BURST_PER_TOKEN": "1000",
            "CJ_AUTH_TOKENS": json.dumps(TOKENS),
            "CJ_STORAGE_BACKENDS": json.dumps(
                {
                    "temp": filesystem_backend(self.temp_path, **self.temp_extra),
                    "recordings": self.permanent,
                }
            ),
            "CJ_STORAGE_TEMPORARY": "temp",
            "CJ_STORAGE_PERMANENT": "recordings",
            "CJ_QUEUE_KIND": "postgres",
            "CJ_QUEUE_LEASE_S": str(self.lease_s),
            "CJ_QUEUE_POLL_INTERVAL_S": "1",
            "CJ_ENCODER_CONCURRENCY": str(self.encoder_workers),
            "CJ_ENCODER_RECONCILE_INTERVAL_S": "2",
            "CJ_ENCODER_RETRY_BASE_S": "0.5",
            "CJ_ENCODER_RETRY_MAX_S": "2",
            # Enough attempts to ride out the outages these tests cause (≥ 60 s).
            "CJ_ENCODER_MAX_ATTEMPTS": str(self.encoder_max_attempts),
            "CJ_ENCODER_GRACE_PERIOD_S": "2",
            "CJ_ENCODER_WORK_DIR": str(self.work_dir),
            "CJ_ENCODER_METRICS_PORT": str(self.encoder_metrics_port),
            "CJ_ENCODER_METRICS_REFRESH_S": "0.5",
            "CJ_AGENT_SERVER": self.grpc_address,
            "CJ_AGENT_TOKEN": AGENT_TOKEN,
            "CJ_AGENT_POLL_MIN_S": "0.05",
            "CJ_AGENT_POLL_MAX_S": "0.5",
            "CJ_AGENT_SETTLE_S": "0.2",
            "CJ_AGENT_RECORDING_WAIT_S": "60",
            "CJ_AGENT_REQUEST_TIMEOUT_S": "30",
            "CJ_AGENT_GRACE_PERIOD_S": "2",
        }
        return {**base, **settings, **self.extra_env}

    # --- daemons ---------------------------------------------------------------------

    async def start_api(self, *, wait: bool = True) -> None:
        await self.harness.start(
            "api", [sys.executable, "-m", "cj_api"], self.env(), ready=self.rest_ready, wait=wait
        )

    async def start_encoder(self, *, wait: bool = True) -> None:
        await self.harness.start(
            "encoder", [sys.executable, "-m", "cj_encoder"], self.env(), wait=wait
        )

    def add_spool(self, name: str) -> Spool:
        if name not in AGENT_SOURCES:
            raise ValueError(f"spool {name!r}: the agent token writes only {AGENT_SOURCES}")
        spool = Spool(self.root / "spools" / name, name).make()
        self.spools.append(spool)
        return spool

    async def start_agent(self, spool: Spool, *, wait: bool = True, **source: Any) -> str:
        """An agent watching `spool`; its daemon name is `agent-<spool name>`."""
        env = self.env()
        env["CJ_AGENT_SOURCES"] = json.dumps([spool.source_config(**source)])
        name = f"agent-{spool.name}"
        port = self.agent_metrics_ports.setdefault(name, free_port())
        env["CJ_AGENT_METRICS_PORT"] = str(port)
        await self.harness.start(name, [sys.executable, "-m", "cj_agent"], env, wait=wait)
        return name

    async def start_all(self, *spools: Spool) -> list[str]:
        """API, encoder and an agent per spool, started together; returns once every
        one is ready (the agents' daemon names are returned)."""
        await self.start_api(wait=False)
        await self.start_encoder(wait=False)
        names = [await self.start_agent(spool, wait=False) for spool in spools]
        for name in ("api", "encoder", *names):
            await self.harness.wait_ready(name)
        return names

    @property
    def agent_names(self) -> list[str]:
        return [n for n in self.harness.daemons if n.startswith("agent-")]

    async def rest_ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"{self.rest_url}/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # --- clients ---------------------------------------------------------------------

    def rest(self, token: str | None = READER_TOKEN, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        options.setdefault("timeout", 30.0)
        return httpx.AsyncClient(base_url=self.rest_url, headers=headers, **options)

    @asynccontextmanager
    async def grpc(self, token: str = READER_TOKEN) -> AsyncIterator[CallJournalClient]:
        async with open_channel(self.grpc_address, token=token, default_timeout_s=30) as channel:
            yield CallJournalClient(channel)

    # --- looking behind the API's back ------------------------------------------------

    async def scrape(self, daemon: str) -> str:
        """The /metrics page of `api`, `encoder` or an agent (by daemon name)."""
        if daemon == "api":
            url = f"{self.rest_url}/metrics"
        elif daemon == "encoder":
            url = f"http://127.0.0.1:{self.encoder_metrics_port}/metrics"
        else:
            url = f"http://127.0.0.1:{self.agent_metrics_ports[daemon]}/metrics"
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(url)
        response.raise_for_status()
        return response.text

    def query(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        """Rows of one query on the deployment's database (blocking: call in a thread)."""
        with psycopg.connect(self.database_url, row_factory=dict_row, connect_timeout=5) as conn:
            cursor = conn.execute(sql.encode(), tuple(params))
            return cursor.fetchall() if cursor.description else []

    async def aquery(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        return await trio.to_thread.run_sync(self.query, sql, params)

    async def count(self, sql: str, params: Sequence[object] = ()) -> int:
        rows = await self.aquery(sql, params)
        return int(next(iter(rows[0].values())))

    def temp_objects(self) -> list[str]:
        """Committed objects in the temporary storage (WAVs not yet encoded)."""
        assert self.temp_path is not None
        root = self.temp_path
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != TEMP_DIR
        )

    def temp_partials(self) -> list[str]:
        """Uploads in progress (or abandoned by a crash) in the temporary storage."""
        assert self.temp_path is not None
        directory = self.temp_path / TEMP_DIR
        try:
            return sorted(p.name for p in directory.iterdir())
        except FileNotFoundError:
            return []
