"""HTTP-level behaviour of the REST app: errors as JSON, probes, metrics, the document."""

from __future__ import annotations

import functools
import json
import os
from hashlib import sha256
from pathlib import Path

import httpx
import structlog
import trio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cj.config import ApiConfig, AuthConfig, DatabaseConfig, StorageConfig
from cj.db.ingest import upsert_call
from cj.pgcluster import free_port
from cj_api.metrics import CONTENT_TYPE_LATEST
from cj_api.openapi import document
from tests.api.conftest import (
    BOTH_TOKEN,
    READER_TOKEN,
    RestServer,
    ServiceStack,
    open_service_stack,
    raw_exchange,
    running_rest_server,
)
from tests.factories import make_call

TIMEOUT_S = 20


async def test_unknown_routes_and_methods_are_json_errors(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(READER_TOKEN) as client:
            unknown = await client.get("/api/v1/nothing-here")
            too_deep = await client.get("/api/v1/calls/a/b/c")
            trailing = await client.get("/healthz/")
            wrong_method = await client.delete("/api/v1/calls")
            options = await client.options("/api/v1/calls")
            head_probe = await client.head("/healthz")
        # (A relative "//healthz" was here: httpx sends it as "/", now the web console's
        # page; sent as such, Werkzeug routes "//healthz" to /healthz.)
        for answer in (unknown, too_deep, trailing):
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "NOT_FOUND"
        assert unknown.json()["error"]["message"] == "no such resource: /api/v1/nothing-here"
        for answer in (wrong_method, options):
            assert answer.status_code == 405
            assert answer.json()["error"]["code"] == "UNIMPLEMENTED"
            assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
        assert (head_probe.status_code, head_probe.content) == (200, b"")
        assert int(head_probe.headers["Content-Length"]) > 0


async def test_unexpected_errors_are_500_without_details(service_stack: ServiceStack) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with running_rest_server(service_stack) as server:

            async def broken() -> str:
                raise RuntimeError("secret internal detail")

            server.app.add_url_rule("/broken", "broken", broken, methods=["GET"])
            with structlog.testing.capture_logs() as logs:
                async with httpx.AsyncClient(base_url=server.url) as client:
                    answer = await client.get("/broken")
        assert answer.status_code == 500
        assert answer.json() == {"error": {"code": "INTERNAL", "message": "internal error"}}
        assert "secret" not in answer.text
        logged = [entry for entry in logs if entry["event"] == "rest_unexpected_error"]
        assert len(logged) == 1
        assert isinstance(logged[0]["exc_info"], RuntimeError)


async def test_oversized_request_heads_are_refused_cleanly(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        huge = (
            b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Padding: "
            + b"a" * 70_000
            + b"\r\nConnection: close\r\n\r\n"
        )
        refused = await raw_exchange(rest_server.port, huge)
        assert refused is not None and refused.status == 431
        # The server is still serving.
        async with rest_server.client() as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_probes_and_metrics(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(READER_TOKEN) as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            await client.get(f"/api/v1/calls/{'1' * 32}")  # 404 NOT_FOUND
            await client.get("/api/v1/no/such/route/12345")  # 404, no route
            served = await client.get("/api/v1/openapi.json")
            metrics = await client.get("/metrics")
        assert health.json() == {"status": "ok"}
        assert ready.json() == {"status": "ready"}
        assert served.json() == document()
        assert metrics.headers["Content-Type"] == CONTENT_TYPE_LATEST
        samples = {
            (s.labels.get("route"), s.labels.get("status")): s.value
            for family in text_string_to_metric_families(metrics.text)
            for s in family.samples
            if s.name == "cj_api_requests_total"
        }
        assert samples[("GET /healthz", "200")] == 1
        assert samples[("GET /api/v1/calls/<call_uuid>", "404")] == 1
        # Unmatched paths share one label: raw paths would explode the series count.
        assert samples[("GET unmatched", "404")] == 1
        assert not any("12345" in str(route) for route, _ in samples)


async def test_readyz_is_503_when_the_database_is_down(
    tmp_path: Path,
    api_storage_config: StorageConfig,
    api_auth_config: AuthConfig,
    api_config: ApiConfig,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        nowhere = DatabaseConfig(
            url=SecretStr(f"postgresql://127.0.0.1:{free_port()}/none"), connect_timeout_s=0.2
        )
        async with (
            open_service_stack(
                nowhere, api_storage_config, api_auth_config, api_config, wait_for_database=False
            ) as stack,
            running_rest_server(stack) as server,
            server.client() as client,
        ):
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "UNAVAILABLE"
        assert alive.status_code == 200


async def test_error_bodies_are_json_even_for_binary_routes(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(READER_TOKEN) as client:
            answer = await client.get(f"/api/v1/calls/{'2' * 32}/recording")
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/json"
        assert json.loads(answer.content)["error"]["code"] == "NOT_FOUND"


async def test_http2_upload_and_download(rest_server: RestServer) -> None:
    """HTTP/2 with prior knowledge (h2c): streamed upload, range and HEAD answers."""
    with trio.fail_after(TIMEOUT_S):
        call = make_call()
        await rest_server.stack.db.run(functools.partial(upsert_call, call=call))
        data = os.urandom(1_500_000)
        path = f"/api/v1/calls/{call.uuid}/recording"
        headers = {"Content-Type": "audio/wav", "X-Content-SHA256": sha256(data).hexdigest()}
        async with rest_server.client(BOTH_TOKEN, http1=False, http2=True) as client:
            uploaded = await client.put(path, content=data, headers=headers)
            ranged = await client.get(path, headers={"Range": "bytes=-100"})
            head = await client.head(path)
            refused = await client.put(path, content=b"other", headers=headers)
        assert uploaded.http_version == "HTTP/2"
        assert uploaded.status_code == 201
        assert (ranged.status_code, ranged.content) == (206, data[-100:])
        assert (head.status_code, head.headers["Content-Length"]) == (200, str(len(data)))
        assert refused.status_code == 409
