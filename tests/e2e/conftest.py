"""Fixtures of the end-to-end tests: the process harness and whole deployments.

- `harness`: daemons as processes for one test, all killed at teardown; when the test
  fails, every daemon's log tail is attached to the report.
- `make_stack(**options)`: a `Stack` on the test's fresh database (the session's
  PostgreSQL), its filesystem temporary storage and an S3 bucket on the session's
  SeaweedFS (or on `permanent=` given).
- `private_postgres`: a PostgreSQL cluster of the test's own, to stop and start.
- `long_recording`: a 40-minute GSM WAV (4 MB) whose encode takes seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cj.db.migrate import migrate
from cj.pgcluster import LocalCluster
from tests.e2e.calls import write_long_gsm
from tests.e2e.harness import Harness
from tests.e2e.stack import Stack, seaweed_backend
from tests.e2e.verify import s3_lister
from tests.fixtures.postgres import start_private_cluster

HARNESS_KEY = pytest.StashKey[Harness]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    harness = item.stash.get(HARNESS_KEY, None)
    if harness is not None and report.failed:
        report.sections.append(("daemon logs", harness.report()))
    return report


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "logs", cwd=tmp_path / "run")
    request.node.stash[HARNESS_KEY] = h
    try:
        yield h
    finally:
        await h.aclose()


@dataclass
class Deployment:
    """A Stack plus how to list its permanent storage."""

    stack: Stack
    list_permanent: Callable[[], list[str]]
    seaweed: Any
    bucket: str


@pytest.fixture
def make_deployment(
    harness: Harness, tmp_path: Path, database_url: str, seaweedfs: Any
) -> Callable[..., Deployment]:
    def make(*, seaweed: Any = None, database: str | None = None, **options: Any) -> Deployment:
        server = seaweed or seaweedfs
        bucket = server.make_bucket("e2e")
        stack = Stack(
            harness=harness,
            root=tmp_path,
            database_url=database or database_url,
            permanent=seaweed_backend(server, bucket),
            **options,
        )
        return Deployment(stack, s3_lister(server, bucket), server, bucket)

    return make


@dataclass
class PrivatePostgres:
    cluster: LocalCluster
    url: str


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under tmp_path: the server account must traverse the parents (see pgcluster).
    base = Path(tempfile.mkdtemp(prefix="cj-e2e-pg-"))
    try:
        cluster = start_private_cluster(base)
        try:
            cluster.create_database("calljournal")
            url = cluster.url("calljournal")
            migrate(url)
            yield PrivatePostgres(cluster, url)
        finally:
            cluster.stop(mode="immediate")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per session: writing it takes a few seconds."""
    return write_long_gsm(tmp_path_factory.mktemp("long-audio") / "long.wav", seconds=40 * 60)
