"""Signed download links, sans-IO (cj_api.links) and over REST: bound to the token's
name, the resource and an expiry; the privacy check and the audit run when used."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import pytest
import trio

from cj.auth import Authenticator
from cj.config import AuthConfig
from cj.errors import ErrorCode, ServiceError
from cj_api.links import LinkSigner, export_resource, recording_resource
from tests.api.conftest import AGENT_TOKEN, READER_TOKEN, RestServer
from tests.api.test_rest_export import store_mp3
from tests.api.test_rest_recordings import new_call

TIMEOUT_S = 30


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_opens_its_resource_for_its_ttl_only() -> None:
    clock = Clock()
    signer = LinkSigner(b"secret", 300, clock=clock)
    token, expires = signer.issue("ops", "recording:a")
    assert expires == int(clock.now + 300)
    assert signer.verify(token, "recording:a") == "ops"
    for other in ("recording:b", "export:phone=1"):
        with pytest.raises(ServiceError) as refused:
            signer.verify(token, other)
        assert refused.value.code is ErrorCode.UNAUTHENTICATED
    name, when, signature = token.split(".")[1:]
    forged = f"v1.{name}.{int(when) + 3600}.{signature}"  # a longer life
    with pytest.raises(ServiceError):
        signer.verify(forged, "recording:a")
    with pytest.raises(ServiceError):  # another process's random key
        LinkSigner(None, 300, clock=clock).verify(token, "recording:a")
    assert LinkSigner(b"secret", 300, clock=clock).verify(token, "recording:a") == "ops"
    for garbage in ("", "v1", "v2.b3Bz.1.x", "v1.b3Bz.soon.x", "v1.***.1.x"):
        with pytest.raises(ServiceError):
            signer.verify(garbage, "recording:a")
    clock.now += 300
    with pytest.raises(ServiceError) as expired:
        signer.verify(token, "recording:a")
    assert "expired" in expired.value.message


def test_export_resources_are_canonical() -> None:
    one = export_resource({"to": ["b"], "from": ["a"], "access": ["x"]})
    assert one == export_resource({"from": ["a"], "to": ["b"]}) == "export:from=a&to=b"
    assert recording_resource("u") == "recording:u"


async def link(server: RestServer, path: str, **options: Any) -> dict[str, Any]:
    async with server.client(READER_TOKEN) as reader:
        answer = await reader.post(path, **options)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return dict(answer.json())


async def test_a_recording_link_streams_ranges_without_a_token_until_the_call_is_private(
    rest_server: RestServer,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack)
        mp3 = await store_mp3(stack, call, size=10_000)
        issued = await link(rest_server, f"/api/v1/calls/{call.uuid}/recording/link")
        assert issued["url"].startswith(f"/api/v1/calls/{call.uuid}/recording?access=")
        async with httpx.AsyncClient(base_url=rest_server.url) as anonymous:
            whole = await anonymous.get(issued["url"])
            part = await anonymous.get(issued["url"], headers={"Range": "bytes=100-199"})
            other = await new_call(stack)
            elsewhere = await anonymous.get(
                f"/api/v1/calls/{other.uuid}/recording", params={"access": issued["access"]}
            )
            await stack.db.run(
                lambda c: c.execute("UPDATE calls SET private = true WHERE uuid = %s", (call.uuid,))
            )
            now_private = await anonymous.get(issued["url"])
        assert (whole.status_code, whole.content) == (200, mp3)
        assert (part.status_code, part.content) == (206, mp3[100:200])
        assert elsewhere.status_code == 401
        assert elsewhere.json()["error"]["field"] == "access"
        assert now_private.status_code == 403
        audited = await stack.query(
            "SELECT actor, result FROM audit_log WHERE call_uuid = %s AND action = 'download' "
            "ORDER BY id",
            call.uuid,
        )
        assert [(row["actor"], row["result"]) for row in audited] == [
            ("ops", "allowed"),
            ("ops", "allowed"),
            ("ops", "permission_denied"),
        ]


async def test_an_export_link_is_bound_to_its_filters(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        call = await new_call(stack, caller="777 1234")
        await store_mp3(stack, call, size=2000)
        issued = await link(rest_server, "/api/v1/calls:export/link", params={"phone": "7771234"})
        async with httpx.AsyncClient(base_url=rest_server.url) as anonymous:
            ok = await anonymous.get(issued["url"])
            widened = await anonymous.get(
                "/api/v1/calls:export", params={"phone": "1", "access": issued["access"]}
            )
        assert ok.status_code == 200 and ok.headers["Content-Type"] == "application/zip"
        assert widened.status_code == 401
        async with rest_server.client(AGENT_TOKEN) as agent:
            refused = await agent.post(f"/api/v1/calls/{call.uuid}/recording/link")
        async with rest_server.client(READER_TOKEN) as reader:
            bad_query = await reader.post("/api/v1/calls:export/link")
        assert refused.status_code == 403
        assert bad_query.status_code == 400
        with zipfile.ZipFile(io.BytesIO(ok.content)) as archive:
            assert any(str(call.uuid) in name for name in archive.namelist())


def test_a_link_of_a_token_no_longer_configured_opens_nothing(
    api_auth_config: AuthConfig,
) -> None:
    authenticator = Authenticator(api_auth_config)
    assert authenticator.principal_named("ops").name == "ops"
    with pytest.raises(ServiceError) as gone:
        Authenticator(AuthConfig()).principal_named("ops")
    assert gone.value.code is ErrorCode.UNAUTHENTICATED
