"""The agent's /metrics and /healthz, against the real API and a real spool."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio

from cj.pgcluster import free_port
from tests.fixtures.api import RunningApi
from tests.promtext import sample

from .helpers import Spool, agent_settings, running_agent


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


async def test_uploads_and_backlog_are_counted(running_api: RunningApi, spool: Spool) -> None:
    spool.drop_samples()
    settings = agent_settings(spool, running_api.endpoints.grpc_address, metrics_port=0)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 8)
            await agent.metrics.refresh_backlog()
            base = f"http://127.0.0.1:{agent.metrics.telemetry_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                text = (await client.get("/metrics")).text
                health = await client.get("/healthz")
    assert sample(text, "cj_agent_calls_uploaded_total") == 5
    assert sample(text, "cj_agent_recordings_uploaded_total") == 3
    assert sample(text, "cj_agent_quarantined_files_total") == 0
    assert sample(text, "cj_agent_requests_total", operation="UploadRecording") == 3
    assert sample(text, "cj_agent_backlog_files", source="pbx-test", directory="cdr") == 0
    assert sample(text, "cj_agent_oldest_pending_file_age_seconds", source="pbx-test") == 0
    assert time.time() - sample(text, "cj_agent_last_success_timestamp_seconds") < 60
    assert sample(text, "cj_agent_server_connected") == 1
    assert health.status_code == 200 and health.json()["checks"]["files_waiting"] == 0


async def test_files_waiting_for_an_absent_server_make_it_unhealthy(spool: Spool) -> None:
    spool.drop_samples()
    settings = agent_settings(
        spool, f"127.0.0.1:{free_port()}", metrics_port=0, unhealthy_after_s=60
    )
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.metrics.refresh_backlog()
            assert agent.metrics.health().healthy  # just started: not silent for long yet
            agent.metrics.started -= 120  # as if it had been running for two minutes
            base = f"http://127.0.0.1:{agent.metrics.telemetry_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                text = (await client.get("/metrics")).text
                health = await client.get("/healthz")
    assert sample(text, "cj_agent_backlog_files", source="pbx-test", directory="cdr") == 5
    assert sample(text, "cj_agent_backlog_bytes", source="pbx-test", directory="cdr") > 0
    assert sample(text, "cj_agent_oldest_pending_file_age_seconds", source="pbx-test") >= 0
    assert sample(text, "cj_agent_last_success_timestamp_seconds") == 0
    assert health.status_code == 503
    assert health.json()["checks"]["files_waiting"] >= 5
