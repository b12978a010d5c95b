"""Fixtures for the API tests (REST here; the gRPC tests may reuse the service ones).

- `service_stack`: a `CallJournalService` wired to real things: a fresh migrated
  PostgreSQL database (`database_config`), the storages of `api_storage_config`
  (filesystem under tmp_path by default; override the fixture for S3), the PostgreSQL
  job queue, the tokens of `api_auth_config` (AGENT_TOKEN, READER_TOKEN, BOTH_TOKEN).
- `rest_server`: `create_rest_app` on that service, served by `serve_rest` on
  127.0.0.1 port 0; `rest_server.client(token)` is an httpx client whose every answer is
  checked against the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from pydantic import SecretStr

from cj.auth import Authenticator
from cj.config import (
    ApiConfig,
    AuthConfig,
    DatabaseConfig,
    FilesystemStorageConfig,
    Role,
    StorageConfig,
    TokenConfig,
)
from cj.db import Database, open_database
from cj.queue.postgres import PostgresPublisher
from cj.storage import FilesystemStorage, S3Storage, Storages, open_storages
from cj.storage.filesystem import TEMP_DIR
from cj_api.metrics import ApiMetrics
from cj_api.rest import create_rest_app
from cj_api.rest_server import serve_rest
from cj_api.service import CallJournalService
from tests.api.openapi_check import ResponseChecker
from tests.fixtures.api import TEST_SOURCES

AGENT_TOKEN = "agent-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
BOTH_TOKEN = "admin-token-0123456789abcdef"
ENCODE_TOPIC = "cj-encode-test"
MAX_RECORDING_BYTES = 4 * 1024 * 1024
SETUP_TIMEOUT_S = 30


@pytest.fixture
def api_auth_config() -> AuthConfig:
    """Tokens: `pbx-1` (agent), `ops` (reader), `admin` (every role); the agent tokens
    write their own name's source and the suite's TEST_SOURCES."""
    return AuthConfig(
        tokens=(
            TokenConfig(
                name="pbx-1",
                token=SecretStr(AGENT_TOKEN),
                roles=frozenset({Role.AGENT}),
                sources=("pbx-1", *TEST_SOURCES),
            ),
            TokenConfig(name="ops", token=SecretStr(READER_TOKEN), roles=frozenset({Role.READER})),
            TokenConfig(
                name="admin",
                token=SecretStr(BOTH_TOKEN),
                roles=frozenset(Role),
                sources=("admin", *TEST_SOURCES),
            ),
        )
    )


@pytest.fixture
def api_storage_config(tmp_path: Path) -> StorageConfig:
    """Filesystem storages `temp` and `recordings` under tmp_path (no fsync: tests)."""
    return StorageConfig(
        backends={
            "temp": FilesystemStorageConfig(kind="filesystem", path=tmp_path / "temp", fsync=False),
            "recordings": FilesystemStorageConfig(
                kind="filesystem", path=tmp_path / "recordings", fsync=False
            ),
        },
        temporary="temp",
        permanent="recordings",
    )


@pytest.fixture
def api_config() -> ApiConfig:
    return ApiConfig(host="127.0.0.1", rest_port=0, max_recording_bytes=MAX_RECORDING_BYTES)


@dataclass
class ServiceStack:
    """A CallJournalService and the real things behind it, for looking behind its back."""

    service: CallJournalService
    db: Database
    storages: Storages
    publisher: PostgresPublisher
    metrics: ApiMetrics
    authenticator: Authenticator
    config: ApiConfig
    seaweed: Any = None  # the SeaweedFS server when the temporary storage is S3

    async def query(self, sql: str, *params: object) -> list[dict[str, Any]]:
        """Rows of a read-only query against the service's database."""
        with trio.fail_after(10):
            return await self.db.run(lambda conn: conn.execute(sql, params).fetchall())

    async def temporary_debris(self) -> list[str]:
        """Traces of unfinished uploads in the temporary storage (temp files, multipart
        uploads in progress)."""
        storage = self.storages.temporary
        if isinstance(storage, FilesystemStorage):
            temp = storage.root / TEMP_DIR
            return sorted(p.name for p in temp.iterdir()) if temp.exists() else []
        assert isinstance(storage, S3Storage) and self.seaweed is not None
        client = self.seaweed.client()
        answer = await trio.to_thread.run_sync(
            lambda: client.list_multipart_uploads(Bucket=storage.bucket)
        )
        return [upload["Key"] for upload in answer.get("Uploads", [])]

    async def temporary_objects(self) -> list[str]:
        """Keys of the objects committed to the temporary storage."""
        storage = self.storages.temporary
        if isinstance(storage, FilesystemStorage):
            root = storage.root
            if not root.exists():
                return []
            return sorted(
                str(p.relative_to(root))
                for p in root.rglob("*")
                if p.is_file() and TEMP_DIR not in p.relative_to(root).parts
            )
        assert isinstance(storage, S3Storage) and self.seaweed is not None
        client = self.seaweed.client()
        answer = await trio.to_thread.run_sync(
            lambda: client.list_objects_v2(Bucket=storage.bucket)
        )
        return sorted(o["Key"] for o in answer.get("Contents", []))


@asynccontextmanager
async def open_service_stack(
    database_config: DatabaseConfig,
    storage_config: StorageConfig,
    auth_config: AuthConfig,
    api_config: ApiConfig,
    *,
    wait_for_database: bool = True,
) -> AsyncIterator[ServiceStack]:
    """A service on real dependencies, for the duration of the block."""
    async with (
        open_database(database_config, wait=wait_for_database) as db,
        open_storages(storage_config) as storages,
    ):
        metrics = ApiMetrics()
        publisher = PostgresPublisher(db, ENCODE_TOPIC)
        service = CallJournalService(
            db=db, storages=storages, publisher=publisher, config=api_config, metrics=metrics
        )
        yield ServiceStack(
            service=service,
            db=db,
            storages=storages,
            publisher=publisher,
            metrics=metrics,
            authenticator=Authenticator(auth_config),
            config=api_config,
        )


@pytest.fixture
def api_seaweed() -> Any:
    """The SeaweedFS server behind S3 storages in `api_storage_config`, if any (modules
    that override `api_storage_config` with S3 override this too)."""
    return None


@pytest.fixture
async def service_stack(
    database_config: DatabaseConfig,
    api_storage_config: StorageConfig,
    api_auth_config: AuthConfig,
    api_config: ApiConfig,
    api_seaweed: Any,
) -> AsyncIterator[ServiceStack]:
    async with open_service_stack(
        database_config, api_storage_config, api_auth_config, api_config
    ) as stack:
        stack.seaweed = api_seaweed
        yield stack


@dataclass
class RestServer:
    """The REST app served on 127.0.0.1; `client(token)` talks to it."""

    port: int
    stack: ServiceStack
    app: Any
    checker: ResponseChecker
    _shutdown: trio.Event = field(default_factory=trio.Event)
    _stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None, **options: Any) -> httpx.AsyncClient:
        """An httpx client for this server; every answer is checked against OpenAPI."""
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

        async def check(response: httpx.Response) -> None:
            await response.aread()
            self.checker.check(response)

        options.setdefault("timeout", 20.0)
        return httpx.AsyncClient(
            base_url=self.url, headers=headers, event_hooks={"response": [check]}, **options
        )

    async def shutdown(self) -> None:
        """Graceful shutdown; returns once the server stopped, i.e. every request in
        flight (or aborted by its client) has been completely handled."""
        self._shutdown.set()
        await self._stopped.wait()


@asynccontextmanager
async def running_rest_server(
    stack: ServiceStack, *, grace_period_s: float = 5.0, **app_options: Any
) -> AsyncIterator[RestServer]:
    """Serve `create_rest_app(stack…)` on 127.0.0.1 port 0 for the duration of the block."""
    app = create_rest_app(
        stack.service,
        stack.authenticator,
        stack.metrics,
        max_recording_bytes=stack.config.max_recording_bytes,
        **app_options,
    )
    shutdown, stopped = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        try:
            await serve_rest(
                app,
                host="127.0.0.1",
                port=0,
                shutdown_trigger=shutdown.wait,
                grace_period_s=grace_period_s,
                task_status=task_status,
            )
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(SETUP_TIMEOUT_S):
            port = await nursery.start(run)
        server = RestServer(port, stack, app, ResponseChecker(), shutdown, stopped)
        yield server
        shutdown.set()
        with trio.move_on_after(10):
            await stopped.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def rest_server(service_stack: ServiceStack) -> AsyncIterator[RestServer]:
    async with running_rest_server(service_stack) as server:
        yield server


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


async def raw_exchange(port: int, request: bytes, *, hang_up: bool = False) -> RawResponse | None:
    """Send `request` as raw bytes on a new connection to 127.0.0.1:`port`.

    With `hang_up`, close the connection right after sending and return None (a client
    that went away). Otherwise read until the server closes the connection (send
    `Connection: close`) and parse the answer.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        if hang_up:
            return None
        data = b""
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
        except trio.BrokenResourceError:
            pass  # a reset after the answer: what we read is what we got
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body)
