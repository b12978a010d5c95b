"""Authentication and roles on every REST route, over real sockets."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import trio

from tests.api.conftest import AGENT_TOKEN, BOTH_TOKEN, READER_TOKEN, RestServer
from tests.api.test_rest_calls import call_json

TIMEOUT_S = 30
WAV = b"RIFF" + b"\x00" * 60


def routes(call_uuid: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, role needed, request options) for every route behind a token."""
    upload_headers = {
        "Content-Type": "audio/wav",
        "X-Content-SHA256": hashlib.sha256(WAV).hexdigest(),
    }
    return [
        ("POST", "/api/v1/calls", "agent", {"json": call_json(uuid=call_uuid)}),
        ("POST", "/api/v1/calls:batch", "agent", {"json": {"calls": [call_json()]}}),
        ("POST", "/api/v1/calls:check", "agent", {"json": {"uuids": [call_uuid]}}),
        (
            "PUT",
            f"/api/v1/calls/{call_uuid}/recording",
            "agent",
            {"content": WAV, "headers": upload_headers},
        ),
        ("GET", "/api/v1/calls", "reader", {"params": {"phone": "123"}}),
        ("GET", f"/api/v1/calls/{call_uuid}", "reader", {}),
        ("GET", f"/api/v1/calls/{call_uuid}/recording", "reader", {}),
        ("HEAD", f"/api/v1/calls/{call_uuid}/recording", "reader", {}),
    ]


async def test_every_route_needs_a_valid_token(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid = str(uuid.uuid4())
        bad_credentials = {
            "missing": None,
            "other scheme": f"Basic {AGENT_TOKEN}",
            "no token": "Bearer",
            "unknown token": "Bearer not-a-configured-token-at-all",
            "token prefix": f"Bearer {AGENT_TOKEN[:-1]}",
        }
        async with rest_server.client() as client:
            for method, path, _, options in routes(call_uuid):
                for what, authorization in bad_credentials.items():
                    headers = dict(options.get("headers", {}))
                    if authorization is not None:
                        headers["Authorization"] = authorization
                    answer = await client.request(method, path, **{**options, "headers": headers})
                    assert answer.status_code == 401, (method, path, what)
                    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                    if method != "HEAD":
                        error = answer.json()["error"]
                        assert error["code"] == "UNAUTHENTICATED", (method, path, what)
                        assert AGENT_TOKEN not in error["message"]
        # Nothing was done on behalf of anyone.
        assert await rest_server.stack.query("SELECT * FROM calls") == []
        # Only the refused download attempts (GET and HEAD, 5 each) are in the audit log,
        # counted under no actor: "(none)" without credentials, "(invalid)" with bad ones.
        audit = await rest_server.stack.query(
            "SELECT actor, result, sum(count)::int AS n FROM audit_log GROUP BY 1, 2 ORDER BY 1"
        )
        assert audit == [
            {"actor": "(invalid)", "result": "unauthenticated", "n": 8},
            {"actor": "(none)", "result": "unauthenticated", "n": 2},
        ]


async def test_every_route_needs_its_role(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid = str(uuid.uuid4())
        tokens = {"agent": AGENT_TOKEN, "reader": READER_TOKEN}
        for method, path, role, options in routes(call_uuid):
            wrong = tokens["reader" if role == "agent" else "agent"]
            async with rest_server.client(wrong) as client:
                answer = await client.request(method, path, **options)
            assert answer.status_code == 403, (method, path)
            if method != "HEAD":
                error = answer.json()["error"]
                assert error["code"] == "PERMISSION_DENIED"
                assert repr(role) in error["message"], error
        assert await rest_server.stack.query("SELECT * FROM calls") == []


async def test_a_token_with_both_roles_passes_everywhere(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid = str(uuid.uuid4())
        async with rest_server.client(BOTH_TOKEN) as client:
            statuses = [
                (await client.request(method, path, **options)).status_code
                for method, path, _, options in routes(call_uuid)
            ]
        # add, batch, check, upload (the call exists by then), search, get, download, head.
        assert statuses == [201, 200, 200, 201, 200, 200, 200, 200]


async def test_probes_and_the_document_need_no_token(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client() as client:
            for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
                answer = await client.get(path)
                assert answer.status_code == 200, path
