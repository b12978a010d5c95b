"""`cj-api` with `api.workers` > 1: real processes sharing real ports on 127.0.0.1.

Every worker serves (distinct pids answer `/healthz`), a scrape counts every worker's
requests, a worker killed with SIGKILL is started again while the others keep
answering, SIGTERM lets a request in flight finish and ends with status 0, and a
supervisor whose workers cannot start exits 1 saying why instead of looping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, open_channel
from cj_api.sockets import PortInUseError, open_reuse_port_listeners, reserve_ports
from cj_api.workers import MAX_START_FAILURES
from tests.api.test_rest_calls import call_json
from tests.fixtures.api import ADMIN_TOKEN
from tests.promtext import total

TIMEOUT_S = 60
WORKERS = 2

Event = dict[str, Any]


def api_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    tokens = [{"name": "pbx-a", "token": ADMIN_TOKEN, "roles": ["agent", "reader", "admin"]}]
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CJ_")},
        "CJ_DATABASE_URL": database_url,
        "CJ_API_HOST": "127.0.0.1",
        "CJ_API_GRPC_PORT": "0",
        "CJ_API_REST_PORT": "0",
        "CJ_API_WORKERS": str(WORKERS),
        "CJ_API_GRACE_PERIOD_S": "20",
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
        "CJ_AUTH_TOKENS": json.dumps(tokens),
        "CJ_LOGGING_FORMAT": "json",
        **extra,
    }


class ApiProcess:
    """The supervisor process and the log events of it and its workers (stderr)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.events: list[Event] = []
        self.text = b""
        self._changed = trio.Event()

    async def pump(self) -> None:
        assert self.process.stderr is not None
        pending = b""
        async for chunk in self.process.stderr:
            self.text += chunk
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()
        self._changed.set()

    async def wait_for(self, match: Callable[[Event], bool], after: int = 0) -> Event:
        """The first event (from index `after`) that matches, once it is logged."""
        while True:
            for event in self.events[after:]:
                if match(event):
                    return event
            if self.process.returncode is not None and self._changed.is_set():
                raise AssertionError(f"exited without it:\n{self.text.decode()[-3000:]}")
            await self._changed.wait()

    def rest_url(self) -> str:
        started = next(e for e in self.events if e.get("event") == "api_started" and "workers" in e)
        return str(started["rest"])

    def grpc_address(self) -> str:
        started = next(e for e in self.events if e.get("event") == "api_started" and "workers" in e)
        return str(started["grpc"])


@asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[ApiProcess]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "cj_api"], env=env, stderr=subprocess.PIPE
    )
    api = ApiProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(api.pump)
            yield api
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()
    finally:
        print(api.text.decode()[-6000:])  # pytest shows it when the test fails
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def is_event(name: str, **fields: object) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())


def fresh_connections(base_url: str) -> httpx.AsyncClient:
    """A client opening a connection per request: the kernel picks a worker each time."""
    return httpx.AsyncClient(
        base_url=base_url, limits=httpx.Limits(max_keepalive_connections=0), timeout=20
    )


async def worker_of(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    body = response.json()
    return int(body["worker"]["pid"]), body


async def until_every_worker_answered(client: httpx.AsyncClient, expected: set[int]) -> int:
    """Ask /healthz until each of `expected` answered; returns how many requests it took."""
    seen: set[int] = set()
    asked = 0
    while seen != expected:
        pid, _ = await worker_of(client)
        assert pid in expected, f"{pid} is no worker of {expected}"
        seen.add(pid)
        asked += 1
    return asked


def healthz_count(metrics_text: str) -> float:
    return total(metrics_text, "cj_api_requests_total", route="GET /healthz")


async def test_every_worker_serves_and_the_metrics_add_up(
    database_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with api_process(api_env(database_url, tmp_path)) as api:
            await api.wait_for(is_event("running", daemon="cj-api"))
            async with fresh_connections(api.rest_url()) as client:
                _, body = await worker_of(client)
                workers = body["workers"]
                assert workers["expected"] == WORKERS and workers["ready"] == WORKERS
                pids = set(workers["pids"])
                assert len(pids) == WORKERS and os.getpid() not in pids
                asked = 1 + await until_every_worker_answered(client, pids)
                # Whichever worker answers the scrape, it counts every worker's requests.
                for _ in range(4):
                    scrape = await client.get("/metrics")
                    assert scrape.status_code == 200
                    assert healthz_count(scrape.text) == asked
            # The gRPC port is shared too: a call made to it is answered.
            async with open_channel(api.grpc_address(), token=ADMIN_TOKEN) as channel:
                grpc = CallJournalClient(channel)
                reply = await grpc.search_by_phone(pb.SearchByPhoneRequest(phone="5550100"))
                assert list(reply.calls) == []
            api.process.send_signal(signal.SIGTERM)
            assert await api.process.wait() == 0, api.text.decode()[-3000:]


async def test_a_killed_worker_is_started_again_while_the_others_answer(
    database_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with api_process(api_env(database_url, tmp_path)) as api:
            await api.wait_for(is_event("running", daemon="cj-api"))
            async with fresh_connections(api.rest_url()) as client:
                _, body = await worker_of(client)
                pids = set(body["workers"]["pids"])
                asked = 1 + await until_every_worker_answered(client, pids)
                victim = min(pids)
                mark = len(api.events)
                os.kill(victim, signal.SIGKILL)
                died = await api.wait_for(is_event("api_worker_died", pid=victim), mark)
                assert died["level"] == "error" and died["status"] == "signal SIGKILL"
                # Until its successor is ready, the other worker takes every request.
                successor = await api.wait_for(
                    lambda e: (
                        e.get("event") == "api_worker_ready" and e.get("slot") == died["slot"]
                    ),
                    mark,
                )
                survivors = (pids - {victim}) | {successor["pid"]}
                _, body = await worker_of(client)
                assert set(body["workers"]["pids"]) == survivors
                assert body["workers"]["restarts"] == 1
                asked += 1 + await until_every_worker_answered(client, survivors)
                # The killed worker's requests still count: counters never go back.
                scrape = await client.get("/metrics")
                assert healthz_count(scrape.text) == asked


async def test_sigterm_lets_a_request_in_flight_finish(database_url: str, tmp_path: Path) -> None:
    body = json.dumps(call_json()).encode()
    head = (
        "POST /api/v1/calls HTTP/1.1\r\nHost: cj\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with trio.fail_after(TIMEOUT_S):
        async with api_process(api_env(database_url, tmp_path)) as api:
            await api.wait_for(is_event("running", daemon="cj-api"))
            host, port = api.rest_url().removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(head)
            # hypercorn says 100 Continue once the request is in hand: in flight.
            assert (await receive_until(stream, b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
            mark = len(api.events)
            api.process.send_signal(signal.SIGTERM)
            for slot in range(WORKERS):  # every worker heard it and stopped listening
                await api.wait_for(is_event("api_stopping", worker=slot), mark)
            await stream.send_all(body)
            answer = await receive_until(stream, b"}")
            await stream.aclose()
            assert answer.split(b" ", 2)[1] in (b"200", b"201"), answer.decode()
            assert await api.process.wait() == 0, api.text.decode()[-3000:]
    assert any(e.get("event") == "stopped" and e.get("daemon") == "cj-api" for e in api.events)


async def receive_until(stream: trio.SocketStream, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("fault", ["port in use", "no TLS key"])
async def test_workers_that_cannot_start_end_the_supervisor(
    database_url: str, tmp_path: Path, fault: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        if fault == "port in use":
            env = api_env(database_url, tmp_path, CJ_API_REST_PORT=port)
        else:  # every worker fails at start, reading the certificate
            missing = str(tmp_path / "missing.pem")
            env = api_env(
                database_url, tmp_path, CJ_API_TLS_CERT_FILE=missing, CJ_API_TLS_KEY_FILE=missing
            )
        with trio.fail_after(TIMEOUT_S):
            async with api_process(env) as api:
                assert await api.process.wait() == 1
    refused = [e for e in api.events if e.get("event") == "refused_to_start"]
    assert refused, api.text.decode()[-3000:]
    if fault == "port in use":
        assert "in use" in refused[0]["error"]
        assert not any(e.get("event") == "api_worker_starting" for e in api.events)
    else:
        assert "before it was ready" in refused[0]["error"]


async def test_reserved_ports_are_shared_by_reuse_port_listeners_only() -> None:
    reserved, ports = reserve_ports("127.0.0.1", [0, 0])
    try:
        assert len(set(ports)) == 2 and 0 not in ports
        with trio.fail_after(10):
            listeners = [
                *(await open_reuse_port_listeners("127.0.0.1", ports[0])),
                *(await open_reuse_port_listeners("127.0.0.1", ports[0])),
            ]
            # The reservation does not listen: a connection reaches one of the others.
            client = await trio.open_tcp_stream("127.0.0.1", ports[0])
            async with trio.open_nursery() as nursery:

                async def take(listener: trio.SocketListener) -> None:
                    await (await listener.accept()).aclose()
                    nursery.cancel_scope.cancel()

                for listener in listeners:
                    nursery.start_soon(take, listener)
            await client.aclose()
            for listener in listeners:
                await listener.aclose()
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", ports[1]))  # no SO_REUSEPORT: refused
    finally:
        for sock in reserved:
            sock.close()


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is in use"):
            reserve_ports("127.0.0.1", [port])


async def test_a_worker_that_keeps_failing_to_start_again_ends_the_supervisor(
    database_url: str, tmp_path: Path
) -> None:
    """Restarts that keep failing (here the TLS key vanished) end it with status 1."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    env = api_env(
        database_url,
        tmp_path,
        CJ_API_TLS_CERT_FILE=str(cert_file),
        CJ_API_TLS_KEY_FILE=str(key_file),
    )
    with trio.fail_after(TIMEOUT_S):
        async with api_process(env) as api:
            ready = await api.wait_for(is_event("api_workers_started"))
            key_file.unlink()
            os.kill(ready["pids"][0], signal.SIGKILL)
            assert await api.process.wait() == 1
    failed = [e for e in api.events if e.get("event") == "api_worker_start_failed"]
    assert len(failed) == MAX_START_FAILURES - 1  # then the last one ends it
    assert all(e["level"] == "error" for e in failed)
    refused = next(e for e in api.events if e.get("event") == "refused_to_start")
    assert f"({MAX_START_FAILURES} attempt(s)" in refused["error"]
    # The other worker served until then, and was stopped gracefully.
    assert any(e.get("event") == "api_stopping" for e in api.events)


async def test_a_tokens_search_rate_holds_across_workers(database_url: str, tmp_path: Path) -> None:
    """One connection to each worker, searches taking turns: the burst is the service's,
    not each worker's (with per-process buckets both workers would say yes BURST times)."""
    burst = 3
    env = api_env(
        database_url,
        tmp_path,
        CJ_API_SEARCH_BURST_PER_TOKEN=str(burst),
        CJ_API_SEARCH_RATE_PER_TOKEN="0.0001",  # no refill within the test
        CJ_API_LIMIT_REFUSAL_DELAY_S="0",
    )
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with trio.fail_after(TIMEOUT_S):
        async with api_process(env) as api:
            await api.wait_for(is_event("running", daemon="cj-api"))
            by_worker: dict[int, httpx.AsyncClient] = {}
            try:
                while len(by_worker) < WORKERS:  # a kept-alive connection stays on its worker
                    client = httpx.AsyncClient(
                        base_url=api.rest_url(), limits=httpx.Limits(max_connections=1), timeout=20
                    )
                    pid, _ = await worker_of(client)
                    if pid in by_worker:
                        await client.aclose()
                    else:
                        by_worker[pid] = client
                statuses: list[tuple[int, int]] = []
                for _ in range(burst + 1):
                    for pid, client in by_worker.items():
                        again, _ = await worker_of(client)
                        assert again == pid  # still the same connection, the same worker
                        answer = await client.get(
                            "/api/v1/calls", params={"phone": "5550100"}, headers=auth
                        )
                        statuses.append((pid, answer.status_code))
            finally:
                for client in by_worker.values():
                    await client.aclose()
            codes = [code for _, code in statuses]
            assert codes == [200] * burst + [429] * (len(codes) - burst), statuses
            assert {pid for pid, code in statuses if code == 200} == set(by_worker)
