"""Instant pickup: filesystem events wake an idle agent (real files, real inotify)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from cj_agent.events import watch_directories
from tests.fixtures.api import RunningApi

from .helpers import Spool, agent_settings, compact_cdr, running_agent, server_calls

# Polling so slow, and a polling settle time so long, that only events can explain a
# pickup within the test's bound.
NO_POLLING = {"poll_min_s": 3600.0, "poll_max_s": 3600.0, "settle_s": 3600.0}


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


async def test_an_idle_agent_uploads_a_new_call_on_the_filesystem_event(
    running_api: RunningApi, spool: Spool
) -> None:
    settings = agent_settings(
        spool, running_api.endpoints.grpc_address, event_settle_s=0.2, **NO_POLLING
    )
    document = compact_cdr(recording="late-call.wav")
    with trio.fail_after(20):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.polls >= 1)  # the first pass: nothing
            await trio.to_thread.run_sync(spool.write_recording, "late-call.wav")
            await trio.to_thread.run_sync(spool.write_cdr, document)
            await agent.stats.wait_until(
                lambda s: s.calls_uploaded >= 1 and s.recordings_uploaded >= 1 and s.files_done >= 2
            )
    calls = server_calls(running_api)
    assert calls[document["uuid"]]["recording"] == "late-call.wav"
    assert spool.cdr_files() == [] and spool.recording_files() == []


async def test_a_recording_that_comes_late_is_picked_up_by_its_event(
    running_api: RunningApi, spool: Spool
) -> None:
    settings = agent_settings(
        spool,
        running_api.endpoints.grpc_address,
        event_settle_s=0.2,
        recording_wait_s=0.0,  # straight to pending/: the source loop awaits it
        **NO_POLLING,
    )
    document = compact_cdr(recording="later.wav")
    with trio.fail_after(20):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.polls >= 1)
            await trio.to_thread.run_sync(spool.write_cdr, document)
            await agent.stats.wait_until(lambda s: s.recordings_late >= 1)
            await trio.to_thread.run_sync(spool.write_recording, "later.wav")
            await agent.stats.wait_until(lambda s: s.recordings_uploaded >= 1)
    assert server_calls(running_api)[document["uuid"]]["recording"] == "later.wav"


async def test_events_wait_for_a_missing_directory_and_then_wake(tmp_path: Path) -> None:
    # Real time: the watcher waits in a thread, which a MockClock would jump past.
    present, later = tmp_path / "cdr", tmp_path / "recordings"
    present.mkdir()
    states: list[bool] = []
    woken = trio.Event()
    live = trio.Event()

    def set_live(value: bool) -> None:
        states.append(value)
        if value:
            live.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    watch_directories, [present, later], woken.set, set_live, retry_s=0.05
                )
            )
            while not states:
                await trio.testing.wait_all_tasks_blocked()
            assert states[0] is False  # polling only while a directory is missing
            await trio.to_thread.run_sync(later.mkdir)
            await live.wait()  # found on the next retry, watched from then on
            await trio.to_thread.run_sync((later / "x.wav").write_bytes, b"data")
            await woken.wait()
            nursery.cancel_scope.cancel()
    assert states[-1] is True
