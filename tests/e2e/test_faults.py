"""Faults injected while the pipeline runs; each test then demands zero loss.

One fault per test (issue "Prove it loses nothing", item 2): the API killed mid-upload,
the encoder killed mid-encode, PostgreSQL stopped for 10 s, SeaweedFS stopped during
encoding, the temporary storage out of space. The daemons are separate processes;
the moment of each fault is chosen by watching external state (a partial upload file,
a row in `encoding`, a first stored recording), polled at a short interval.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.calls import CallFactory, CallSpec, Inventory, Spool
from tests.e2e.conftest import Deployment
from tests.e2e.harness import Harness
from tests.e2e.stack import AGENT_TOKEN
from tests.e2e.verify import LossReport, settle_and_verify


def drop(spool: Spool, inventory: Inventory, calls: list[CallSpec]) -> None:
    for call in calls:
        inventory.add(call)
    spool.drop_all(calls)


def agent_events(harness: Harness, name: str, *events: str) -> list[dict[str, Any]]:
    return [e for e in harness.events(name) if e.get("event") in events]


async def kill_api_mid_upload(
    deployment: Deployment, tmp_path: Path, *, kills: int, calls: int
) -> tuple[LossReport, list[int], int, int]:
    """Drop `calls` big and `calls` small recordings; `kills` times, kill -9 cj-api while
    an upload is being received, restart it. Returns the figures and what happened."""
    stack, harness = deployment.stack, deployment.stack.harness
    factory = CallFactory(tmp_path / "audio")
    spool = stack.add_spool("pbx-1")
    inventory = Inventory()
    (agent,) = await stack.start_all(spool)
    # Big recordings (16 kHz stereo, 3-5 MB): uploads that last long enough to be caught
    # mid-stream, among ordinary ones.
    big = [factory.make(fmt=("PCM_16", 16000, 2), seconds=25 + n) for n in range(calls)]
    small = [factory.make() for _ in range(calls)]
    drop(spool, inventory, [c for pair in zip(big, small, strict=True) for c in pair])
    debris: set[str] = set()
    in_flight = []
    for _ in range(kills):
        # A new partial file in the temporary storage: an upload is being received.
        await harness.eventually(
            lambda: set(stack.temp_partials()) - debris,
            timeout_s=60,
            interval=0.01,
            what="an upload in progress",
        )
        await harness.kill9("api")
        partials = set(stack.temp_partials()) - debris
        in_flight.append(len(partials))
        debris.update(partials)  # a SIGKILL leaves them (purged by the API after 6 h)
        await harness.restart("api")
    retried = agent_events(harness, agent, "operation_will_be_retried", "server_unavailable")
    assert retried, "the agent never noticed the API going away"
    report = await settle_and_verify(
        stack,
        inventory,
        timeout_s=120,
        list_permanent=deployment.list_permanent,
        allowed_partials=debris,
    )
    assert all(n >= 1 for n in in_flight)
    return report, in_flight, len(retried), len(debris)


async def test_api_killed_mid_upload_quick(
    make_deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    """The quick version for `make test`: one kill, 12 calls."""
    with trio.fail_after(180):
        report, in_flight, retried, _ = await kill_api_mid_upload(
            make_deployment(), tmp_path, kills=1, calls=6
        )
    assert report.recordings_stored == 12 and in_flight[0] >= 1 and retried >= 1


@pytest.mark.slow
async def test_api_killed_mid_upload_and_restarted(
    make_deployment: Callable[..., Deployment], tmp_path: Path, reliability: Any
) -> None:
    """kill -9 cj-api while the agent streams recordings to it (twice), restart it."""
    with trio.fail_after(300):
        report, in_flight, retried, debris = await kill_api_mid_upload(
            make_deployment(), tmp_path, kills=2, calls=24
        )
    reliability.record(
        "kill -9 the API mid-upload (twice), restart",
        kind="fault",
        summary=(
            f"killed with {in_flight[0]} then {in_flight[1]} upload(s) in flight; the agent "
            f"retried ({retried} retry events) and re-sent them; {debris} partial "
            "file(s) of the killed uploads stay in temp/.tmp until the API's 6-hour purge"
        ),
        **report.figures(),
    )


@pytest.mark.slow
async def test_encoder_killed_mid_encode_and_restarted(
    make_deployment: Callable[..., Deployment],
    tmp_path: Path,
    long_recording: Path,
    reliability: Any,
) -> None:
    """kill -9 cj-encoder while it encodes a 40-minute recording, restart it."""
    deployment = make_deployment()
    stack, harness = deployment.stack, deployment.stack.harness
    factory = CallFactory(tmp_path / "audio")
    spool = stack.add_spool("pbx-1")
    inventory = Inventory()
    with trio.fail_after(300):
        await stack.start_all(spool)
        calls = [factory.make(wav=long_recording) for _ in range(2)]
        calls += [factory.make() for _ in range(30)]
        drop(spool, inventory, calls)
        big = (await trio.Path(long_recording).stat()).st_size

        async def encoding_long() -> list[dict[str, Any]]:
            return await stack.aquery(
                "SELECT call_uuid::text AS uuid, attempts FROM recordings"
                " WHERE status = 'encoding' AND original_size = %s",
                (big,),
            )

        rows = await harness.eventually(
            encoding_long, timeout_s=120, interval=0.05, what="a long recording being encoded"
        )
        await harness.kill9("encoder")
        # Dead now: what the database says is what the crash left.
        still = {r["uuid"] for r in await encoding_long()}
        assert {r["uuid"] for r in rows} <= still, "the row left `encoding` before the kill"
        work_left = sorted(p.name for p in stack.work_dir.iterdir())
        await harness.restart("encoder")
        report = await settle_and_verify(
            stack, inventory, timeout_s=180, list_permanent=deployment.list_permanent
        )
        attempts = await stack.aquery(
            "SELECT attempts FROM recordings WHERE call_uuid = ANY(%s::uuid[])", (sorted(still),)
        )
    assert all(row["attempts"] >= 2 for row in attempts)
    reliability.record(
        "kill -9 the encoder mid-encode, restart",
        kind="fault",
        summary=(
            f"killed while {len(still)} 40-minute recording(s) were `encoding`; after the "
            f"{stack.lease_s:g} s lease the restarted encoder claimed and finished them "
            f"(attempts {sorted(r['attempts'] for r in attempts)}); the killed encoder left "
            f"{len(work_left)} work directory(ies) behind in encoder.work_dir"
        ),
        **report.figures(),
    )


@pytest.mark.slow
async def test_postgres_stopped_for_ten_seconds_during_ingest(
    make_deployment: Callable[..., Deployment],
    private_postgres: Any,
    tmp_path: Path,
    reliability: Any,
) -> None:
    """PostgreSQL crashes (immediate stop) mid-ingest and stays down 10 s; the daemons
    ride it out without restarting."""
    cluster = private_postgres.cluster
    deployment = make_deployment(database=private_postgres.url)
    stack, harness = deployment.stack, deployment.stack.harness
    factory = CallFactory(tmp_path / "audio")
    spool = stack.add_spool("pbx-1")
    inventory = Inventory()
    with trio.fail_after(300):
        (agent,) = await stack.start_all(spool)
        pids = {name: harness.pid(name) for name in harness.daemons}
        drop(spool, inventory, [factory.make() for _ in range(80)])
        await harness.eventually(
            lambda: stack.count("SELECT count(*) FROM calls"),
            timeout_s=60,
            interval=0.05,
            what="ingest under way",
        )
        unavailable_before = len(agent_events(harness, agent, "server_unavailable"))
        calls_at_stop = await stack.count("SELECT count(*) FROM calls")
        await trio.to_thread.run_sync(cluster.stop, "immediate")
        down_at = trio.current_time()
        # The outage lasts 10 s by the clock; meanwhile the PBX keeps writing calls and
        # the API must say it is not ready.
        drop(spool, inventory, [factory.make() for _ in range(40)])
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"{stack.rest_url}/readyz")
        assert ready.status_code == 503, ready.text
        await harness.eventually(
            lambda: len(agent_events(harness, agent, "server_unavailable")) > unavailable_before,
            timeout_s=10,
            what="the agent sees the server unavailable",
        )
        await trio.sleep_until(down_at + 10.0)
        down_s = trio.current_time() - down_at
        await trio.to_thread.run_sync(cluster.start)
        drop(spool, inventory, [factory.make() for _ in range(20)])
        report = await settle_and_verify(
            stack, inventory, timeout_s=180, list_permanent=deployment.list_permanent
        )
    # Ridden out, not restarted: the same processes, each started once.
    assert {name: harness.pid(name) for name in harness.daemons} == pids
    assert all(d.starts == 1 and d.running for d in harness.daemons.values())
    reliability.record(
        "PostgreSQL stopped for 10 s during ingest",
        kind="fault",
        summary=(
            f"`pg_ctl stop -m immediate` when {calls_at_stop} of the first 80 calls were in; down "
            f"{down_s:.1f} s while 40 more calls arrived (/readyz answered 503, the agent "
            "backed off); the API, encoder and agent rode it out in the same processes"
        ),
        **report.figures(),
    )


@pytest.mark.slow
async def test_seaweedfs_stopped_during_encoding(
    make_deployment: Callable[..., Deployment],
    seaweedfs_factory: Any,
    tmp_path: Path,
    long_recording: Path,
    reliability: Any,
) -> None:
    """The S3 server of the permanent storage stops while recordings are being encoded."""
    server = seaweedfs_factory()
    deployment = make_deployment(seaweed=server)
    stack, harness = deployment.stack, deployment.stack.harness
    factory = CallFactory(tmp_path / "audio")
    spool = stack.add_spool("pbx-1")
    inventory = Inventory()
    stored = "SELECT count(*) FROM recordings WHERE status = 'stored'"
    with trio.fail_after(300):
        await stack.start_all(spool)
        drop(
            spool,
            inventory,
            [factory.make(wav=long_recording)] + [factory.make() for _ in range(60)],
        )
        await harness.eventually(
            lambda: stack.count(stored), timeout_s=60, interval=0.05, what="a first MP3 stored"
        )
        retries_before = len(harness.events("encoder", "encode_retry"))
        await trio.to_thread.run_sync(server.stop)
        down_at = trio.current_time()
        stored_at_stop = await stack.count(stored)
        # Encoding goes on without S3: more calls keep arriving meanwhile.
        drop(spool, inventory, [factory.make() for _ in range(20)])
        await harness.eventually(
            lambda: len(harness.events("encoder", "encode_retry")) > retries_before,
            timeout_s=30,
            what="the encoder failing to store and scheduling a retry",
        )
        await trio.sleep_until(down_at + 8.0)
        stored_while_down = await stack.count(stored)
        down_s = trio.current_time() - down_at
        await trio.to_thread.run_sync(server.start)
        report = await settle_and_verify(
            stack, inventory, timeout_s=180, list_permanent=deployment.list_permanent
        )
    retries = len(harness.events("encoder", "encode_retry")) - retries_before
    assert stored_at_stop < len(inventory.recordings)
    reliability.record(
        "SeaweedFS (permanent storage) stopped during encoding",
        kind="fault",
        summary=(
            f"stopped with {stored_at_stop} of {len(inventory.recordings)} recordings stored; "
            f"down {down_s:.1f} s (plus its restart), {stored_while_down - stored_at_stop} "
            f"stored meanwhile, {retries} encode retries; all stored once it was back"
        ),
        **report.figures(),
    )


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[bool]:
    """A fixed-size tmpfs at `path` when this machine lets us mount one (root, no
    container restriction); yields whether it did."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(path: Path, leave: int) -> Path:
    """A filler file taking all but `leave` bytes of the filesystem at `path`."""
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    filler = path / "filler.bin"
    with filler.open("wb") as file:
        file.truncate(0)
        block = b"\0" * (1 << 20)
        left = free - leave
        while left > 0:
            left -= file.write(block[: min(len(block), left)])
    return filler


@pytest.mark.slow
async def test_temporary_storage_full_then_freed(
    make_deployment: Callable[..., Deployment], tmp_path: Path, reliability: Any
) -> None:
    """Out of space in temporary storage: uploads are refused with a clear "full"
    (calls keep flowing, nothing leaves the spool unsent); freeing space resumes them."""
    temp = tmp_path / "small-temp"
    with small_filesystem(temp, "4m") as mounted:
        quota = 0 if mounted else 4 * 1024 * 1024
        extra = {} if mounted else {"quota_bytes": quota}
        deployment = make_deployment(temp_path=temp, temp_extra=extra)
        stack, harness = deployment.stack, deployment.stack.harness
        factory = CallFactory(tmp_path / "audio")
        spool = stack.add_spool("pbx-1")
        inventory = Inventory()
        with trio.fail_after(300):
            (agent,) = await stack.start_all(spool)
            if mounted:
                filler = fill(temp, leave=24 * 1024)
            else:  # the API scans the quota's usage at its first write: include the filler
                filler = temp / "filler.bin"
                filler.write_bytes(b"\0" * (quota - 24 * 1024))
            calls = [factory.make(fmt=("PCM_16", 16000, 2), seconds=2.0) for _ in range(20)]
            drop(spool, inventory, calls)

            async def all_calls_added() -> bool:
                return await stack.count("SELECT count(*) FROM calls") == len(calls)

            await harness.eventually(
                all_calls_added, timeout_s=60, what="calls added although recordings cannot be"
            )

            def full_errors() -> list[dict[str, Any]]:
                return [e for e in harness.events(agent) if "full" in str(e.get("error", ""))]

            await harness.eventually(
                full_errors, timeout_s=60, what="the agent told storage is full"
            )
            call = calls[0]
            assert call.wav is not None and call.recording is not None
            async with stack.rest(AGENT_TOKEN) as rest:
                refused = await rest.put(
                    f"/api/v1/calls/{call.uuid}/recording",
                    content=call.wav.read_bytes(),
                    headers={
                        "Content-Type": "audio/wav",
                        "X-Content-SHA256": call.recording.sha256,
                    },
                )
            assert refused.status_code == 503, refused.text
            message = refused.json()["error"]["message"]
            assert "full" in message, message
            assert await stack.count("SELECT count(*) FROM recordings") == 0
            # Nothing was deleted unsent: every recording still waits in the spool.
            assert len(spool.leftovers()["recordings"]) == len(calls)
            full_seen = len(full_errors())
            filler.unlink()
            if not mounted:
                await harness.kill9("api")  # the quota is measured once per process
                await harness.restart("api")
            report = await settle_and_verify(
                stack, inventory, timeout_s=180, list_permanent=deployment.list_permanent
            )
    mechanism = "a 4 MiB tmpfs" if mounted else "a 4 MiB quota (no mount here; API restarted)"
    reliability.record(
        "temporary storage out of space, then freed",
        kind="fault",
        summary=(
            f"{mechanism} filled to 24 KiB free: uploads answered UNAVAILABLE / 503 "
            f"\u201c{message}\u201d ({full_seen} agent log line(s) say so) while the 20 calls "
            "were added and every WAV stayed in the spool; once the filler was deleted all "
            "were uploaded and encoded"
        ),
        **report.figures(),
    )
