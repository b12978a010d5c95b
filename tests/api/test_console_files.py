"""The web console's files: served at / with a strict CSP, cached by ETag, switchable."""

from __future__ import annotations

import httpx
import trio

from cj_api.console import CONSOLE_FILES
from tests.api.conftest import ServiceStack, running_rest_server

TIMEOUT_S = 20


async def test_console_files_carry_a_strict_policy_and_revalidate(
    service_stack: ServiceStack,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with (
            running_rest_server(service_stack) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            answers = {path: await client.get(path) for path in CONSOLE_FILES}
            page = answers["/"]
            again = await client.get("/", headers={"If-None-Match": page.headers["ETag"]})
            head = await client.head("/console.js")
        assert page.status_code == 200 and "<title>Call Journal</title>" in page.text
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        for answer in answers.values():
            assert answer.status_code == 200
            policy = answer.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Cache-Control"] == "no-cache"
        assert answers["/console.js"].headers["Content-Type"].startswith("text/javascript")
        # No inline script or style that the policy would block.
        assert "<script>" not in page.text and "style=" not in page.text
        assert (again.status_code, again.content) == (304, b"")
        assert head.status_code == 200 and head.content == b""


async def test_the_console_can_be_switched_off(service_stack: ServiceStack) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with (
            running_rest_server(service_stack, console=False) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            page = await client.get("/")
            health = await client.get("/healthz")
        assert page.status_code == 404
        assert health.status_code == 200
