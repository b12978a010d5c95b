"""A live cj-api for hostile-input tests, served from a thread of this process.

Schemathesis calls the API synchronously (requests) and Hypothesis runs each example
of an async test in a fresh `trio.run`, so the server cannot live in a test's own
Trio loop: `hostile_api` runs `cj_api.app.serve` in its own thread and `trio.run`,
on 127.0.0.1 port 0, for a whole module, on a fresh migrated database and
filesystem storages. State accumulates across examples on purpose: the invariants
(no partial object, no row without its object) must hold after every one of them.

`bounded_api(**api_overrides)` starts one with other `ApiConfig` values (short
timeouts for the bounds tests).

No secret in any log (issue 11): every token configured for a server of this suite is
remembered in `CONFIGURED_TOKENS`, every test's captured output (stdout, stderr, log
records, in every phase) is kept in `CAPTURED_OUTPUT`, and at the end of the session
(and in `test_zz_no_secrets_in_logs.py`) none of those tokens may appear in any of it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg.rows import dict_row
from pydantic import SecretStr

from cj.config import ApiSettings, DatabaseConfig
from cj.storage.filesystem import TEMP_DIR
from cj_api.app import ApiEndpoints, serve
from tests.fixtures.api import ADMIN_TOKEN, AGENT_TOKEN, READER_TOKEN, api_settings
from tests.fixtures.postgres import PostgresServer

START_TIMEOUT_S = 30.0
MAX_RECORDING_BYTES = 1024 * 1024

# --- no secret in any log ----------------------------------------------------------------

CONFIGURED_TOKENS: set[str] = {AGENT_TOKEN, READER_TOKEN, ADMIN_TOKEN}
CAPTURED_OUTPUT: list[tuple[str, str]] = []  # (where, text)


def remember_output(where: str, text: str) -> None:
    """Add output captured outside pytest (a server process's stderr) to the scan."""
    CAPTURED_OUTPUT.append((where, text))


def token_leaks() -> list[str]:
    """Where a configured token appears in captured output (empty: none)."""
    leaks = []
    for where, text in CAPTURED_OUTPUT:
        for token in CONFIGURED_TOKENS:
            at = text.find(token)
            if at >= 0:
                excerpt = text[max(0, at - 120) : at + len(token) + 120].replace(token, "<TOKEN>")
                leaks.append(f"{where}: a configured token in {excerpt!r}")
    return leaks


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown":  # its sections hold the setup's and the call's too
        return
    for name, text in report.sections:
        if text:
            remember_output(f"{report.nodeid} ({name})", text)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = token_leaks()
    if leaks:
        print("\nSECRET IN LOGS (issue 11):\n" + "\n".join(leaks))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _info_logs_captured() -> Iterator[None]:
    """Let INFO records of the standard logging tree (hypercorn, purerpc) reach the
    capture, as they would reach a production log."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(before)


@dataclass
class ThreadedApi:
    """cj-api (gRPC + REST) running in a thread; `start()` returns once it listens."""

    settings: ApiSettings
    root: Path
    endpoints: ApiEndpoints | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _token: trio.lowlevel.TrioToken | None = None
    _shutdown: trio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def rest_url(self) -> str:
        assert self.endpoints is not None
        return self.endpoints.rest_url

    @property
    def grpc_address(self) -> str:
        assert self.endpoints is not None
        return self.endpoints.grpc_address

    @property
    def rest_port(self) -> int:
        assert self.endpoints is not None
        return self.endpoints.rest_port

    @property
    def temp_root(self) -> Path:
        return self.root / "temp"

    def start(self) -> None:
        CONFIGURED_TOKENS.update(t.token.get_secret_value() for t in self.settings.auth.tokens)
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("cj-api did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"cj-api failed to start: {self._error!r}") from self._error

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._shutdown = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self.endpoints = await nursery.start(
                    functools.partial(serve, self.settings, shutdown=self._shutdown)
                )
                self._ready.set()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise

    def stop(self) -> None:
        if self._token is not None and self._shutdown is not None:
            try:
                trio.from_thread.run_sync(self._shutdown.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)

    # --- looking behind its back -----------------------------------------------------

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        url = self.settings.database.url.get_secret_value()
        with psycopg.connect(url, row_factory=dict_row) as conn:
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def partial_uploads(self) -> list[str]:
        directory = self.temp_root / TEMP_DIR
        try:
            return sorted(p.name for p in directory.iterdir())
        except FileNotFoundError:
            return []

    def temp_objects(self) -> dict[str, tuple[int, str]]:
        """Committed objects of the temporary storage: key → (size, sha256)."""
        root = self.temp_root
        objects = {}
        if root.exists():
            for path in root.rglob("*"):
                relative = path.relative_to(root)
                if path.is_file() and relative.parts[0] != TEMP_DIR:
                    data = path.read_bytes()
                    objects[str(relative)] = (len(data), hashlib.sha256(data).hexdigest())
        return objects


@contextmanager
def bounded_api(
    postgres_server: PostgresServer,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
    **api_overrides: Any,
) -> Iterator[ThreadedApi]:
    """A ThreadedApi on a fresh database, `ApiConfig` fields replaced by `api_overrides`."""
    name = f"cj_hostile_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template=template_database)
    root = tmp_path_factory.mktemp("hostile-api")
    database = DatabaseConfig(url=SecretStr(url), pool_size=4, connect_timeout_s=5.0)
    settings = api_settings(database, root, max_recording_bytes=MAX_RECORDING_BYTES)
    if api_overrides:
        settings = dataclasses.replace(
            settings, api=dataclasses.replace(settings.api, **api_overrides)
        )
    api = ThreadedApi(settings, root)
    api.start()
    try:
        yield api
    finally:
        api.stop()
        postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def hostile_api(
    postgres_server: PostgresServer,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ThreadedApi]:
    with bounded_api(postgres_server, template_database, tmp_path_factory) as api:
        yield api
