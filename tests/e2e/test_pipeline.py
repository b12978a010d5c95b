"""The whole pipeline as separate processes: agent → cj-api → PostgreSQL queue → encoder.

Calls with recordings of every WAV format a PBX may write are dropped into a spool;
the agent, the API and the encoder run as their own processes on real PostgreSQL
and SeaweedFS. The run is judged by `verify_no_loss` (see tests/e2e/verify.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.calls import CallFactory, Inventory
from tests.e2e.conftest import Deployment
from tests.e2e.stack import Stack
from tests.e2e.verify import settle_and_verify
from tests.promtext import sample, total


async def run_pipeline(
    make_deployment: Callable[..., Deployment], tmp_path: Path, count: int
) -> dict[str, Any]:
    deployment = make_deployment()
    stack = deployment.stack
    factory = CallFactory(tmp_path / "audio")
    inventory = Inventory()
    for _ in range(count):
        inventory.add(factory.make())
    spool = stack.add_spool("pbx-1")
    await stack.start_all(spool)
    began = time.monotonic()
    spool.drop_all(inventory.calls.values())
    report = await settle_and_verify(
        stack, inventory, timeout_s=60 + count / 2, list_permanent=deployment.list_permanent
    )
    formats = sorted({c.recording.subtype for c in inventory.calls.values() if c.recording})
    await check_metrics_add_up(stack)
    return {
        **report.figures(),
        "seconds": round(time.monotonic() - began, 1),
        "formats": len(formats),
    }


async def check_metrics_add_up(stack: Stack) -> None:
    """Every daemon's /metrics tells the same story as the database: recordings in =
    stored + failed + still pending, and the agents' figures match the API's."""
    began = time.time()
    while True:  # the encoder reads its backlog from the database every 0.5 s here
        encoder = await stack.scrape("encoder")
        if sample(encoder, "cj_encoder_backlog_updated_timestamp_seconds") > began:
            break
        await trio.sleep(0.1)
    api = await stack.scrape("api")
    agents = [await stack.scrape(name) for name in stack.agent_names]
    stored = await stack.count("SELECT count(*) FROM recordings WHERE status = 'stored'")
    calls = await stack.count("SELECT count(*) FROM calls")
    uploads = total(api, "cj_api_requests_total", route="UploadRecording", status="OK")
    assert sum(sample(a, "cj_agent_calls_uploaded_total") for a in agents) >= calls
    assert sum(sample(a, "cj_agent_recordings_uploaded_total") for a in agents) == uploads
    pending = sum(
        sample(encoder, "cj_encoder_backlog_recordings", status=status)
        for status in ("uploaded", "encoding")
    )
    failed = sample(encoder, "cj_encoder_backlog_recordings", status="failed")
    duplicates = sum(sample(a, "cj_agent_recordings_duplicate_total") for a in agents)
    assert uploads - duplicates == stored + failed + pending
    assert total(encoder, "cj_encoder_jobs_total", outcome="stored") >= stored
    assert sum(sample(a, "cj_agent_quarantined_files_total") for a in agents) == 0


async def test_calls_with_recordings_of_every_format_arrive_once(
    make_deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    """The quick version: 24 calls, every audio format twice, a few private."""
    with trio.fail_after(120):
        figures = await run_pipeline(make_deployment, tmp_path, 24)
    assert figures["recordings_stored"] == 24
    assert figures["downloads_verified"] + figures["private_refused"] == 24
    assert figures["private_refused"] >= 2


@pytest.mark.slow
async def test_two_hundred_calls_with_recordings_end_to_end(
    make_deployment: Callable[..., Deployment], tmp_path: Path, reliability: Any
) -> None:
    """Issue item 1: 200 calls with recordings of mixed formats."""
    with trio.fail_after(300):
        figures = await run_pipeline(make_deployment, tmp_path, 200)
    assert figures["calls_found"] == 200 and figures["recordings_stored"] == 200
    reliability.record(
        "200 calls with recordings, no fault",
        kind="pipeline",
        summary=(
            f"{figures['formats']} WAV formats (PCM, µ-law, A-law, GSM, IMA/MS ADPCM, float, "
            f"G.721 …, 8–16 kHz, mono and stereo); settled and verified in "
            f"{figures['seconds']} s"
        ),
        **figures,
    )
