"""The small /metrics + /healthz server of the encoder and the agent, over real sockets."""

from __future__ import annotations

import functools

import httpx
import trio
from prometheus_client import CollectorRegistry, Counter

from cj.telemetry import MAX_HEAD_BYTES, Health, serve_telemetry


async def _serve(nursery: trio.Nursery, healthy: bool) -> tuple[int, Counter]:
    registry = CollectorRegistry()
    counter = Counter("cj_test_things", "Things.", registry=registry)

    async def health() -> Health:
        return Health(healthy=healthy, checks={"server": "ok" if healthy else "silent"})

    port = await nursery.start(functools.partial(serve_telemetry, "127.0.0.1", 0, registry, health))
    return port, counter


async def test_metrics_health_and_refusals() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port, counter = await _serve(nursery, healthy=True)
            counter.inc(3)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                metrics = await client.get("/metrics")
                head = await client.head("/metrics")
                health = await client.get("/healthz?verbose=1")
                post = await client.post("/metrics")
                missing = await client.get("/")
            nursery.cancel_scope.cancel()
    assert metrics.status_code == 200 and "cj_test_things_total 3.0" in metrics.text
    assert head.status_code == 200 and head.content == b""
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "checks": {"server": "ok"}}
    assert post.status_code == 405 and missing.status_code == 404


async def test_unhealthy_is_503() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port, _ = await _serve(nursery, healthy=False)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = await client.get("/healthz")
            nursery.cancel_scope.cancel()
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"


async def test_oversized_head_is_dropped_and_the_server_keeps_serving() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port, _ = await _serve(nursery, healthy=True)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            try:
                await stream.send_all(
                    b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (MAX_HEAD_BYTES * 4)
                )
                answer = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # the server hung up while we were sending
                answer = b""
            finally:
                await stream.aclose()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                after = await client.get("/metrics")
            nursery.cancel_scope.cancel()
    assert b"200" not in answer.split(b"\r\n", 1)[0]
    assert after.status_code == 200
