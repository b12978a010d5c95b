"""The server link's retry loop under a mocked clock: gRPC's backoff, what is retried.

A server that refuses connections is simulated by a connect function that fails at
once (no sockets, so virtual time is exact), and once with a real closed port.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cj.errors import ErrorCode
from cj.pgcluster import free_port
from cj.rpc import RpcError, RpcUnavailable, open_channel
from cj_agent.uploader import Abandoned, ServerLink, hash_file, read_chunks, upload_timeout


class FakeChannel:
    closed = False


class FlakyServer:
    """Refuses `down_for` connection attempts, then accepts; records attempt times."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.attempts: list[float] = []

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        self.attempts.append(trio.current_time())
        if len(self.attempts) <= self.down_for:
            raise RpcUnavailable("cannot connect to 127.0.0.1:9: Connection refused")
        yield FakeChannel()

    def delays(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.attempts)]


def grpc_schedule(count: int) -> list[float]:
    """gRPC's nominal delays: 1 s, ×1.6, at most 120 s (before jitter)."""
    return [min(1.6**n, 120.0) for n in range(count)]


async def answer(journal: Any) -> str:
    return "ok"


async def test_retry_delays_follow_grpc_connection_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FlakyServer(down_for=14)
    link = ServerLink(server.connect)
    with trio.fail_after(2000):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            assert await link.call("AddCall", answer) == "ok"
            assert link.connected and link.last_error is None
            nursery.cancel_scope.cancel()
    delays = server.delays()
    assert len(delays) == 14
    for delay, nominal in zip(delays, grpc_schedule(14), strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2, (delays, nominal)
    assert max(delays) <= 120 * 1.2 and delays[-1] >= 120 * 0.8  # capped at 120 s
    assert link.failures == 14


async def test_backoff_starts_over_after_a_success(autojump_clock: trio.testing.MockClock) -> None:
    server = FlakyServer(down_for=5)
    link = ServerLink(server.connect)
    calls = 0

    async def fails_once_more(journal: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RpcError(ErrorCode.UNAVAILABLE, "database unavailable")
        return "ok"

    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await link.call("AddCall", fails_once_more)  # after 5 refusals
            await link.call("AddCall", fails_once_more)  # UNAVAILABLE once, then ok
            nursery.cancel_scope.cancel()
    assert calls == 3
    # The failure after the success waited the first step of the schedule again.
    assert 0.8 <= server.delays()[-1] <= 1.2


async def test_concurrent_callers_share_one_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FlakyServer(down_for=6)
    link = ServerLink(server.connect)
    results: list[str] = []

    async def caller() -> None:
        results.append(await link.call("AddCall", answer))

    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            async with trio.open_nursery() as callers:
                for _ in range(20):
                    callers.start_soon(caller)
            nursery.cancel_scope.cancel()
    assert results == ["ok"] * 20
    assert len(server.attempts) == 7  # not 20 times as many


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.RESOURCE_EXHAUSTED,
        ErrorCode.OUT_OF_RANGE,
    ],
)
async def test_answers_about_the_input_are_not_retried(
    code: ErrorCode, autojump_clock: trio.testing.MockClock
) -> None:
    server = FlakyServer(down_for=0)
    link = ServerLink(server.connect)
    tries = 0

    async def refused(journal: Any) -> str:
        nonlocal tries
        tries += 1
        raise RpcError(code, "call.started_at: is required", field="call.started_at")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            with pytest.raises(RpcError) as info:
                await link.call("AddCall", refused)
            nursery.cancel_scope.cancel()
    assert info.value.code is code and tries == 1


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.UNAUTHENTICATED,  # a configuration problem: fixing the token resumes
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.INTERNAL,
        ErrorCode.FAILED_PRECONDITION,
        ErrorCode.UNAVAILABLE,
    ],
)
async def test_other_answers_are_retried_with_backoff(
    code: ErrorCode, autojump_clock: trio.testing.MockClock
) -> None:
    server = FlakyServer(down_for=0)
    link = ServerLink(server.connect)
    tries = 0

    async def flaky(journal: Any) -> str:
        nonlocal tries
        tries += 1
        if tries <= 3:
            raise RpcError(code, "try again")
        return "ok"

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            assert await link.call("AddCall", flaky) == "ok"
            nursery.cancel_scope.cancel()
    assert tries == 4 and link.failures == 3
    assert len(server.attempts) == 4  # a fresh connection after each failure, with backoff
    assert server.attempts[-1] - server.attempts[0] >= (1 + 1.6 + 2.56) * 0.8


async def test_stop_abandons_callers_waiting_for_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = ServerLink(FlakyServer(down_for=10**6).connect)
    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await link.call("AddCall", answer)
        except Abandoned as exc:
            outcome.append(exc)

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            nursery.start_soon(caller)
            await trio.sleep(30)
            link.stop()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert len(outcome) == 1


async def test_a_closed_port_is_retried_on_the_grpc_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Real sockets: connecting to a closed port on loopback fails at once.
    address = f"127.0.0.1:{free_port()}"
    attempts: list[float] = []
    sixth = trio.Event()

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        attempts.append(trio.current_time())
        if len(attempts) == 6:
            sixth.set()
        async with open_channel(address, connect_timeout_s=5) as channel:
            yield channel

    link = ServerLink(connect, address=address)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            nursery.start_soon(link.call, "AddCall", answer)
            await sixth.wait()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    delays = [b - a for a, b in itertools.pairwise(attempts)]
    for delay, nominal in zip(delays, grpc_schedule(5), strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2, delays
    assert "cannot connect" in (link.last_error or "")


def test_hash_file_streams_and_reports_size(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    data = bytes(range(256)) * 20_000  # 5 MB: several blocks
    path.write_bytes(data)
    digest = hash_file(path)
    assert digest.size == len(data) and digest.sha256 == hashlib.sha256(data).hexdigest()


async def test_read_chunks_respects_the_message_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    data = bytes(range(256)) * 20_000
    path.write_bytes(data)
    chunks = [chunk async for chunk in read_chunks(path)]
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 1024 * 1024


def test_upload_deadline_grows_with_the_size() -> None:
    assert upload_timeout(60, 0) == 60
    assert upload_timeout(60, 100_000_000) == 60 + 1000
