"""The agent against the real API server (gRPC, PostgreSQL, filesystem storage).

Real time, real sockets, real files; the tests wait on the agent's progress counters
and on files, never on sleeps.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import pytest
import trio

from cj.backoff import GrpcBackoff
from cj.config import AfterSuccess, AgentSettings, AgentSourceConfig, DatabaseConfig
from cj.pgcluster import free_port
from cj_agent import Agent, AgentConfigError, serve
from cj_agent.systemd import Notifier
from cj_agent.uploader import ServerLink
from cj_api.app import serve as serve_api
from tests.fixtures.api import AGENT_TOKEN, RunningApi, api_settings

from .helpers import (
    SAMPLE_CALLS,
    SAMPLE_RECORDINGS,
    WAV,
    Spool,
    agent_settings,
    compact_cdr,
    running_agent,
    server_calls,
    sha256,
)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


async def test_samples_are_uploaded_and_the_spool_emptied(
    running_api: RunningApi, spool: Spool
) -> None:
    spool.drop_samples()
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(
                lambda s: s.calls_uploaded >= 5 and s.recordings_uploaded >= 3 and s.files_done >= 8
            )
    assert spool.cdr_files() == [] and spool.recording_files() == []
    assert spool.failed_files() == [] and spool.pending_files() == []
    calls = server_calls(running_api)
    assert set(calls) == set(SAMPLE_CALLS)
    for call_uuid, recording in SAMPLE_CALLS.items():
        row = calls[call_uuid]
        assert row["source"] == "pbx-test"
        if recording is None:
            assert row["sha256"] is None
        else:
            assert row["recording"] == recording
            assert row["sha256"] == sha256(SAMPLE_RECORDINGS[recording].read_bytes())
    assert calls["c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222"]["private"] is True
    # The WAVs are in the server's temporary storage, byte for byte.
    stored = {hashlib.sha256(p.read_bytes()).hexdigest() for p in running_api.stored_files()}
    assert {sha256(p.read_bytes()) for p in SAMPLE_RECORDINGS.values()} <= stored


async def test_archive_keeps_names_under_the_call_date(
    running_api: RunningApi, spool: Spool
) -> None:
    spool.drop_samples()
    settings = agent_settings(
        spool, running_api.endpoints.grpc_address, after_success=AfterSuccess.ARCHIVE
    )
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 8)
    assert spool.cdr_files() == [] and spool.recording_files() == []
    archived = spool.archived()
    assert "2026-03-02/5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.json" in archived
    assert "2026-03-02/5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav" in archived
    assert "2026-03-03/9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.cdr.json" in archived
    assert len(archived) == 8


async def test_malformed_cdrs_are_quarantined_with_the_reason(
    running_api: RunningApi, spool: Spool
) -> None:
    good = compact_cdr()
    spool.write_cdr(good)
    (spool.cdr / "truncated.json").write_text('{"uuid": "0a6d4f18-77c2-4d0e')
    (spool.cdr / "not-a-cdr.json").write_text('{"hello": "world"}')
    spool.write_cdr(compact_cdr(durs="sixty"), "bad-duration.json")
    spool.write_cdr(compact_cdr(uuid="not-a-uuid"), "bad-uuid.json")
    (spool.cdr / "notes.txt").write_text("not matching the patterns")
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.quarantined >= 4 and s.calls_uploaded >= 1)
    assert spool.cdr_files() == ["notes.txt"]
    quarantined = spool.failed_files()
    for name in ("truncated.json", "not-a-cdr.json", "bad-duration.json", "bad-uuid.json"):
        assert name in quarantined and f"{name}.error" in quarantined
    reasons = {
        name: (spool.failed / f"{name}.error").read_text()
        for name in ("truncated.json", "not-a-cdr.json", "bad-duration.json", "bad-uuid.json")
    }
    assert reasons["bad-duration.json"].startswith("unparsable CDR: durs")
    assert reasons["bad-uuid.json"].startswith("unparsable CDR: uuid")
    assert "an unknown format (fields: hello)" in reasons["not-a-cdr.json"]
    assert "JSON" in reasons["truncated.json"]
    # The quarantined files are intact, and only the good call reached the server.
    assert (spool.failed / "truncated.json").read_text() == '{"uuid": "0a6d4f18-77c2-4d0e'
    assert set(server_calls(running_api)) == {good["uuid"]}


async def test_recording_names_cannot_leave_the_recordings_directory(
    running_api: RunningApi, spool: Spool
) -> None:
    outside = spool.root / "secret.wav"
    outside.write_bytes(b"RIFF not for upload")
    dots = spool.write_cdr(compact_cdr(recording=".."), "dots.json")
    backslash = spool.write_cdr(compact_cdr(recording="..\\..\\secret.wav"), "backslash.json")
    (spool.recordings / "link.wav").symlink_to(outside)
    via_link = compact_cdr(recording="link.wav")
    spool.write_cdr(via_link, "symlink.json")
    # A path is reduced to its base name: this one is looked for inside only.
    relative = compact_cdr(recording="../secret.wav")
    spool.write_cdr(relative, "relative.json")
    settings = agent_settings(spool, running_api.endpoints.grpc_address, recording_wait_s=0.3)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.quarantined >= 3 and s.recordings_late >= 1)
    failed = spool.failed_files()
    assert {dots.name, backslash.name, "symlink.json"} <= set(failed)
    assert (spool.failed / "dots.json.error").read_text().startswith("unparsable CDR: rnam")
    assert "backslash" in (spool.failed / "backslash.json.error").read_text()
    assert (
        "leads out of the recordings directory" in (spool.failed / "symlink.json.error").read_text()
    )
    calls = server_calls(running_api)
    # The call with the relative name was sent alone and waits for secret.wav *inside*.
    assert set(calls) == {relative["uuid"]}
    assert calls[relative["uuid"]]["sha256"] is None
    assert spool.pending_files() == ["relative.json"]
    assert outside.read_bytes() == b"RIFF not for upload"
    assert running_api.stored_files() == []


async def test_late_recording_is_sent_when_it_appears_even_after_a_restart(
    running_api: RunningApi, spool: Spool
) -> None:
    document = compact_cdr(recording="late.wav")
    spool.write_cdr(document)
    settings = agent_settings(spool, running_api.endpoints.grpc_address, recording_wait_s=0.2)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.recordings_late >= 1)
        # The call is on the server without its recording; its CDR waits in pending/.
        assert server_calls(running_api)[document["uuid"]]["sha256"] is None
        assert spool.cdr_files() == [] and spool.pending_files() == [f"{document['uuid']}.json"]
        spool.write_recording("late.wav")
        async with running_agent(settings) as agent:
            assert agent.stats.late_waiting == 1
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1 and s.files_done >= 2)
            await agent.stats.wait_until(lambda s: s.late_waiting == 0)
    assert server_calls(running_api)[document["uuid"]]["sha256"] == sha256(WAV)
    assert spool.pending_files() == [] and spool.recording_files() == []


async def test_recording_written_after_its_cdr_is_awaited(
    running_api: RunningApi, spool: Spool
) -> None:
    document = compact_cdr(recording="slow.wav")
    settings = agent_settings(spool, running_api.endpoints.grpc_address, recording_wait_s=30)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            spool.write_cdr(document)
            await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)
            assert spool.cdr_files() == [f"{document['uuid']}.json"]  # waits for slow.wav
            spool.write_recording("slow.wav")
            await agent.stats.wait_until(lambda s: s.files_done >= 2)
    assert server_calls(running_api)[document["uuid"]]["sha256"] == sha256(WAV)
    assert spool.cdr_files() == [] and spool.pending_files() == []


async def test_duplicates_are_harmless_and_conflicts_quarantined(
    running_api: RunningApi, spool: Spool
) -> None:
    first = compact_cdr(recording="a.wav")
    settings = agent_settings(
        spool, running_api.endpoints.grpc_address, after_success=AfterSuccess.ARCHIVE
    )
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            spool.write_cdr(first)
            spool.write_recording("a.wav")
            await agent.stats.wait_until(lambda s: s.files_done >= 2)
            # The PBX (or an operator) drops the very same files again: no harm done.
            spool.write_cdr(first)
            spool.write_recording("a.wav")
            await agent.stats.wait_until(lambda s: s.files_done >= 4)
            assert agent.stats.recordings_duplicate == 1
            # The same call with a different recording: the server keeps the first.
            spool.write_recording("a.wav", WAV[:-100])
            spool.write_cdr(first)
            await agent.stats.wait_until(lambda s: s.quarantined >= 2)
    calls = server_calls(running_api)
    assert list(calls) == [first["uuid"]] and calls[first["uuid"]]["sha256"] == sha256(WAV)
    assert len(running_api.stored_files()) == 1
    # Identical files archived once; the conflicting pair is quarantined with the reason.
    assert spool.archived() == sorted([f"2026-03-02/{first['uuid']}.json", "2026-03-02/a.wav"])
    failed = spool.failed_files()
    assert {"a.wav", "a.wav.error", f"{first['uuid']}.json"} <= set(failed)
    reason = (spool.failed / "a.wav.error").read_text()
    assert "already has a different recording" in reason and "ALREADY_EXISTS" in reason


async def test_a_cdr_still_being_written_is_not_read(running_api: RunningApi, spool: Spool) -> None:
    document = compact_cdr()
    text = json_text(document)
    path = spool.cdr / f"{document['uuid']}.json"
    pieces = [text[i : i + 40] for i in range(0, len(text), 40)]
    settings = agent_settings(spool, running_api.endpoints.grpc_address, settle_s=1.0)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            for piece in pieces:
                # One more piece after every poll: the file never stays unchanged for
                # settle_s, as when FreeSWITCH writes it in place.
                polls = agent.stats.polls
                await agent.stats.wait_until(lambda s, polls=polls: s.polls > polls)
                with path.open("a") as file:
                    file.write(piece)
                assert agent.stats.in_progress == 0 and agent.stats.quarantined == 0
            await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)
    assert agent.stats.quarantined == 0 and spool.failed_files() == []
    assert set(server_calls(running_api)) == {document["uuid"]}


def json_text(document: dict[str, object]) -> str:
    import json

    return json.dumps(document, indent=2)


async def test_server_down_then_up_loses_and_duplicates_nothing(
    database_config: DatabaseConfig, tmp_path: Path, spool: Spool
) -> None:
    port = free_port()
    settings = agent_settings(spool, f"127.0.0.1:{port}")
    api = dataclasses.replace(
        api_settings(database_config, tmp_path / "server"),
        api=dataclasses.replace(
            api_settings(database_config, tmp_path).api, grpc_port=port, grace_period_s=1
        ),
    )
    spool.drop_samples()
    # Fast retries keep the test short; the schedule itself is test_uploader's subject.
    link = ServerLink.for_config(
        settings.agent.server, token=AGENT_TOKEN, tls=False, tls_ca_file=None, request_timeout_s=5
    )
    link._backoff = GrpcBackoff(base_s=0.05)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            agent: Agent = await nursery.start(
                functools.partial(serve, settings, link=link, notifier=Notifier(None))
            )
            await agent.stats.wait_until(lambda s: link.failures >= 3)
            # Nothing reached a server, so nothing was touched.
            assert len(spool.cdr_files()) == 5 and len(spool.recording_files()) == 3
            assert "cannot connect" in (link.last_error or "")
            server_stop = trio.Event()
            server_gone = trio.Event()

            async def run_server(*, task_status: trio.TaskStatus[object]) -> None:
                await serve_api(api, shutdown=server_stop, task_status=task_status)
                server_gone.set()  # serve returns once its listeners are closed

            await nursery.start(run_server)
            await agent.stats.wait_until(lambda s: s.files_done >= 8)
            # The server goes away again and comes back: new files wait, then go.
            server_stop.set()
            await server_gone.wait()
            spool.write_cdr(later := compact_cdr(recording="later.wav"))
            spool.write_recording("later.wav")
            failures = link.failures
            await agent.stats.wait_until(lambda s: link.failures >= failures + 2)
            assert spool.recording_files() == ["later.wav"]
            await nursery.start(serve_api, api)
            await agent.stats.wait_until(lambda s: s.files_done >= 10)
            nursery.cancel_scope.cancel()
    running = RunningApi(None, api, tmp_path / "server")  # type: ignore[arg-type]
    calls = server_calls(running)
    assert set(calls) == {*SAMPLE_CALLS, later["uuid"]}
    assert calls[later["uuid"]]["sha256"] == sha256(WAV)
    assert len(running.stored_files()) == 4
    assert spool.cdr_files() == [] and spool.recording_files() == []


async def test_killed_at_any_moment_and_restarted_uploads_everything_once(
    running_api: RunningApi, spool: Spool
) -> None:
    documents = []
    for i in range(40):
        recording = f"rec-{i}.wav" if i % 2 == 0 else None
        documents.append(compact_cdr(recording=recording))
        spool.write_cdr(documents[-1])
        if recording is not None:
            spool.write_recording(recording, WAV + i.to_bytes(2, "big"))
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    restarts = 0
    with trio.fail_after(90):
        while spool.cdr_files() or spool.recording_files():
            restarts += 1
            async with running_agent(settings) as agent:
                # A hard stop (cancellation, as good as a kill for the files) after a few
                # more files: in the middle of parsing, adding, uploading or archiving.
                step = 1 + restarts % 4
                await agent.stats.wait_until(
                    lambda s, step=step: (
                        s.files_done >= step or not (spool.cdr_files() or spool.recording_files())
                    )
                )
    assert restarts >= 5
    calls = server_calls(running_api)
    assert set(calls) == {d["uuid"] for d in documents}
    for i, document in enumerate(documents):
        expected = sha256(WAV + i.to_bytes(2, "big")) if i % 2 == 0 else None
        assert calls[document["uuid"]]["sha256"] == expected
    # Every recording row has its file, and no half-uploaded file is left over.
    rows = running_api.query("SELECT original_key FROM recordings")
    files = {str(p.relative_to(running_api.root / "temp")) for p in running_api.stored_files()}
    assert {str(row["original_key"]) for row in rows} == files and len(files) == 20
    assert spool.failed_files() == [] and spool.pending_files() == []


async def test_shutdown_drops_waiting_work_at_once_and_keeps_the_files(
    running_api: RunningApi, spool: Spool
) -> None:
    document = compact_cdr(recording="never.wav")
    spool.write_cdr(document)
    settings = agent_settings(
        spool, running_api.endpoints.grpc_address, recording_wait_s=300, grace_period_s=60
    )
    shutdown = trio.Event()
    with trio.fail_after(10):  # far less than the grace period: nothing was in flight
        async with trio.open_nursery() as nursery:
            agent: Agent = await nursery.start(
                functools.partial(serve, settings, shutdown=shutdown, notifier=Notifier(None))
            )
            await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)
            shutdown.set()
    # serve returned by itself; the CDR stays for the next start.
    assert spool.cdr_files() == [f"{document['uuid']}.json"]
    assert spool.pending_files() == [] and spool.failed_files() == []


async def test_a_wrong_token_is_retried_and_touches_no_file(
    running_api: RunningApi, spool: Spool
) -> None:
    spool.drop_samples()
    settings = agent_settings(spool, running_api.endpoints.grpc_address, token="x" * 32)
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: agent.link.failures >= 2)
            assert "UNAUTHENTICATED" in (agent.link.last_error or "")
    assert len(spool.cdr_files()) == 5 and len(spool.recording_files()) == 3
    assert spool.failed_files() == [] and server_calls(running_api) == {}


async def test_an_agent_without_sources_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match=r"agent\.sources is empty"):
        await serve(AgentSettings())


def test_archive_inside_the_watched_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="archive_dir must differ"):
        AgentSourceConfig(
            name="pbx",
            cdr_dir=tmp_path,
            recordings_dir=tmp_path / "rec",
            after_success=AfterSuccess.ARCHIVE,
            archive_dir=tmp_path,
        )


async def test_a_backlog_larger_than_every_bound_drains(
    running_api: RunningApi, spool: Spool
) -> None:
    documents = [compact_cdr() for _ in range(60)]
    for document in documents:
        spool.write_cdr(document)
    settings = agent_settings(
        spool,
        running_api.endpoints.grpc_address,
        max_tracked_files=7,
        max_calls_in_progress=3,
        max_concurrent_uploads=2,
    )
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 60)
            assert agent.stats.in_progress == 0
    assert spool.cdr_files() == []
    assert set(server_calls(running_api)) == {d["uuid"] for d in documents}
