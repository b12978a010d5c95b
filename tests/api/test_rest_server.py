"""serve_rest: binding port 0, graceful shutdown, TLS with HTTP/2, argument checks.

These run a minimal Quart-Trio app: what is under test is the serving, not the routes.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from quart_trio import QuartTrio

from cj_api.rest_server import serve_rest

TIMEOUT_S = 20


class SlowApp:
    """An app whose /slow answers only when the test lets it."""

    def __init__(self) -> None:
        self.app = QuartTrio(__name__, static_folder=None)
        self.entered = trio.Event()
        self.release = trio.Event()
        self.app.add_url_rule("/ping", "ping", self.ping, methods=["GET"])
        self.app.add_url_rule("/slow", "slow", self.slow, methods=["GET"])

    async def ping(self) -> str:
        return "pong"

    async def slow(self) -> str:
        self.entered.set()
        await self.release.wait()
        return "done"


@asynccontextmanager
async def serving(
    app: QuartTrio, shutdown: trio.Event, **options: object
) -> AsyncIterator[tuple[int, trio.Event]]:
    """Run serve_rest in a nursery; yields (port, an event set when it returned)."""
    returned = trio.Event()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        await serve_rest(
            app,
            host="127.0.0.1",
            port=0,
            shutdown_trigger=shutdown.wait,
            task_status=task_status,
            **options,  # type: ignore[arg-type]
        )
        returned.set()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run)
        yield port, returned
        shutdown.set()


async def test_port_zero_is_bound_and_reported_and_the_trigger_stops_it() -> None:
    with trio.fail_after(TIMEOUT_S):
        shutdown = trio.Event()
        slow = SlowApp()
        async with serving(slow.app, shutdown) as (port, returned):
            assert port > 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/ping")).text == "pong"
            shutdown.set()
            await returned.wait()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_shutdown_lets_requests_in_flight_finish() -> None:
    with trio.fail_after(TIMEOUT_S):
        shutdown = trio.Event()
        slow = SlowApp()
        answers: list[httpx.Response] = []
        async with serving(slow.app, shutdown, grace_period_s=30.0) as (port, returned):
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
                trio.open_nursery() as nursery,
            ):

                async def ask() -> None:
                    answers.append(await client.get("/slow"))

                nursery.start_soon(ask)
                await slow.entered.wait()
                shutdown.set()
                # New connections are no longer accepted while the old one finishes.
                with pytest.raises(OSError):
                    await trio.open_tcp_stream("127.0.0.1", port)
                assert not returned.is_set()
                slow.release.set()
            await returned.wait()
        assert [(a.status_code, a.text) for a in answers] == [(200, "done")]


async def test_grace_period_bounds_the_wait(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT_S):
        shutdown = trio.Event()
        slow = SlowApp()
        async with serving(slow.app, shutdown, grace_period_s=5.0) as (port, returned):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            await slow.entered.wait()
            began = trio.current_time()
            shutdown.set()
            await returned.wait()  # never released: cancelled after the grace period
            assert trio.current_time() - began == pytest.approx(5.0, abs=0.5)
            await stream.aclose()


async def test_tls_with_http2(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT_S):
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1")
        cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
        certificate.cert_chain_pems[0].write_to_path(cert_file)
        certificate.private_key_pem.write_to_path(key_file)
        client_context = ssl.create_default_context()
        authority.configure_trust(client_context)
        shutdown = trio.Event()
        slow = SlowApp()
        tls = {"tls_cert_file": cert_file, "tls_key_file": key_file}
        async with serving(slow.app, shutdown, **tls) as (port, _):
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{port}", verify=client_context, http2=True
            ) as client:
                answer = await client.get("/ping")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get("/ping")
        assert (answer.status_code, answer.text) == (200, "pong")
        assert answer.http_version == "HTTP/2"


async def test_bad_arguments_are_refused() -> None:
    app = SlowApp().app
    with pytest.raises(ValueError, match="together"):
        await serve_rest(app, host="127.0.0.1", port=0, tls_cert_file=Path("cert.pem"))
    with pytest.raises(ValueError, match="port"):
        await serve_rest(app, host="127.0.0.1", port=70000)
    with pytest.raises(ValueError, match="grace_period_s"):
        await serve_rest(app, host="127.0.0.1", port=0, grace_period_s=-1)
