"""cj-api with `database.read_url`: a real streaming replica (pg_basebackup -R) of a
private primary, both started here from the machine's PostgreSQL binaries.

Searches and GetCall read the replica (shown by pausing its replay: a call stored on the
primary is not found until replay resumes); the download decision is taken on the
primary (a call made private while replay is paused is refused though the replica still
says public); with the replica stopped, searches fall back to the primary and count it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from cj.config import DatabaseConfig
from cj.db import open_database
from cj.db.migrate import migrate
from cj.pgcluster import LocalCluster, find_pg_bin, free_port
from cj_api.app import ApiEndpoints, serve
from cj_api.replica import ReplicaReads
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, api_settings

pytestmark = pytest.mark.skipif(find_pg_bin() is None, reason="no PostgreSQL server binaries")

TIMEOUT_S = 20
DBNAME = "cj_replica"
# Full page writes are a must for a consistent base backup; the rest stays fast.
PRIMARY_SETTINGS = ("full_page_writes=on", "wal_level=replica", "max_wal_senders=4")


@dataclass
class Replicated:
    primary: LocalCluster
    standby: LocalCluster

    def primary_url(self) -> str:
        return self.primary.url(DBNAME)

    def standby_url(self) -> str:
        return self.standby.url(DBNAME)

    def replay(self, *, paused: bool) -> None:
        fn = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            conn.execute(f"SELECT {fn}()")
            if paused:  # the pause takes effect asynchronously
                for _ in range(10_000):
                    state = conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                    if state and state[0] == "paused":
                        break

    async def caught_up(self) -> None:
        """Wait until the standby has replayed everything the primary wrote so far."""
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            # The insert position: with synchronous_commit off (a fast test cluster) the
            # write position may not yet include the last commits.
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                if done and done[0]:
                    return
                await trio.sleep(0.01)  # polling a condition, bounded by the caller


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    base = Path(tempfile.mkdtemp(prefix="cj-test-replica-"))
    base.chmod(0o755)
    primary = LocalCluster(
        data_dir=base / "primary", port=free_port(), fast=True, extra_settings=PRIMARY_SETTINGS
    )
    standby: LocalCluster | None = None
    try:
        primary.init()
        primary.start()
        primary.create_database(DBNAME)
        migrate(primary.url(DBNAME))
        standby = primary.base_backup(base / "standby", free_port())
        standby.start()
        yield Replicated(primary, standby)
    finally:
        if standby is not None:
            standby.stop(mode="immediate")
        primary.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Api:
    endpoints: ApiEndpoints

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.endpoints.rest_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


@pytest.fixture
async def api(replicated: Replicated, tmp_path: Path) -> AsyncIterator[Api]:
    database = DatabaseConfig(
        url=SecretStr(replicated.primary_url()),
        read_url=SecretStr(replicated.standby_url()),
        pool_size=4,
        read_pool_size=2,
        connect_timeout_s=2.0,
    )
    settings = api_settings(database, tmp_path)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        endpoints: ApiEndpoints = await nursery.start(
            functools.partial(serve, settings, shutdown=shutdown)
        )
        yield Api(endpoints)
        shutdown.set()


def new_call(**overrides: Any) -> dict[str, Any]:
    """A call with a phone number of its own, so a search finds it and nothing else."""
    number = "7916" + str(uuid.uuid4().int)[:7]
    body: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "source": "pbx-1",
        "caller_number": number,
        "destination_number": "84957001020",
        "direction": "inbound",
        "started_at": "2026-03-02T06:00:00Z",
        "ended_at": "2026-03-02T06:01:05Z",
        "duration_s": 65,
        "billsec": 60,
        "private": False,
    }
    body.update(overrides)
    return body


async def store(api: Api, call: dict[str, Any], recording: bytes | None = None) -> None:
    async with api.client(AGENT_TOKEN) as agent:
        added = await agent.post("/api/v1/calls", json=call)
        assert added.status_code in (200, 201), added.text
        if recording is not None:
            uploaded = await agent.put(
                f"/api/v1/calls/{call['uuid']}/recording",
                content=recording,
                headers={
                    "Content-Type": "audio/wav",
                    "X-Content-SHA256": hashlib.sha256(recording).hexdigest(),
                },
            )
            assert uploaded.status_code in (200, 201), uploaded.text


async def found(api: Api, call: dict[str, Any]) -> list[str]:
    async with api.client(READER_TOKEN) as reader:
        got = await reader.get(
            "/api/v1/calls", params={"phone": call["caller_number"], "exact": "true"}
        )
    assert got.status_code == 200, got.text
    return [item["call"]["uuid"] for item in got.json()["calls"]]


async def test_searches_and_lookups_read_the_replica(api: Api, replicated: Replicated) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = new_call()
        replicated.replay(paused=True)
        try:
            await store(api, call)  # on the primary
            assert await found(api, call) == []  # the paused replica has not seen it
            async with api.client(READER_TOKEN) as reader:
                missing = await reader.get(f"/api/v1/calls/{call['uuid']}")
            assert missing.status_code == 404
        finally:
            replicated.replay(paused=False)
        await replicated.caught_up()
        assert await found(api, call) == [call["uuid"]]


async def test_a_call_made_private_during_lag_is_refused_for_download(
    api: Api, replicated: Replicated
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = new_call()
        data = b"RIFF" + os.urandom(20_000)
        await store(api, call, data)
        await replicated.caught_up()
        path = f"/api/v1/calls/{call['uuid']}/recording"
        async with api.client(READER_TOKEN) as reader:
            allowed = await reader.get(path)
            assert (allowed.status_code, allowed.content) == (200, data)
            replicated.replay(paused=True)
            try:
                await store(api, {**call, "private": True})  # ingest may set private
                seen = await reader.get(f"/api/v1/calls/{call['uuid']}")
                refused = await reader.get(path)
            finally:
                replicated.replay(paused=False)
        assert seen.status_code == 200 and seen.json()["call"]["private"] is False  # replica: stale
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
        assert data not in refused.content


async def test_with_the_replica_down_searches_fall_back_to_the_primary(
    api: Api, replicated: Replicated
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = new_call()
        await store(api, call)
        await replicated.caught_up()
        assert await found(api, call) == [call["uuid"]]
        async with api.client(READER_TOKEN) as reader:
            before = await reader.get("/metrics")
        assert fallback_reads(before.text) == 0
        await trio.to_thread.run_sync(functools.partial(replicated.standby.stop, "immediate"))
        try:
            later = new_call()
            await store(api, later)  # only the primary has it: the fallback must read there
            assert await found(api, later) == [later["uuid"]]
            assert await found(api, call) == [call["uuid"]]
            async with api.client(READER_TOKEN) as reader:
                after = await reader.get("/metrics")
                ready = await reader.get("/readyz")
            assert fallback_reads(after.text) >= 2
            assert ready.status_code == 200  # the replica is optional
        finally:
            await trio.to_thread.run_sync(replicated.standby.start)


def fallback_reads(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("cj_api_replica_fallback_reads_total "):
            return float(line.split()[1])
    raise AssertionError("cj_api_replica_fallback_reads_total is not exported")


def in_recovery(conn: Any) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
    return bool(row["standby"])


async def test_replica_reads_fall_back_and_retry_the_replica_after_a_while(
    replicated: Replicated,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        config = DatabaseConfig(
            url=SecretStr(replicated.primary_url()), pool_size=2, connect_timeout_s=2.0
        )
        replica_config = dataclasses.replace(config, url=SecretStr(replicated.standby_url()))
        registry = CollectorRegistry()
        fallbacks = Counter("fallbacks", "test", registry=registry)
        count = functools.partial(registry.get_sample_value, "fallbacks_total")
        now = [0.0]
        async with (
            open_database(config, name="test-primary") as primary,
            open_database(replica_config, name="test-replica") as replica,
        ):
            reads = ReplicaReads(replica, primary, fallbacks, retry_s=5.0, clock=lambda: now[0])
            assert await reads.run(in_recovery) is True  # the standby answers
            await trio.to_thread.run_sync(functools.partial(replicated.standby.stop, "immediate"))
            try:
                assert await reads.run(in_recovery) is False  # the primary answered instead
                assert reads.replica_down and count() == 1
                await trio.to_thread.run_sync(replicated.standby.start)
                now[0] = 4.9  # within retry_s: the replica is not tried yet
                assert await reads.run(in_recovery) is False
                assert count() == 2
                now[0] = 5.0
                assert await reads.run(in_recovery) is True
                assert not reads.replica_down and count() == 2
            finally:
                if not replicated.standby.running:
                    await trio.to_thread.run_sync(replicated.standby.start)
