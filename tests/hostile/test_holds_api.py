"""Legal holds over REST and gRPC: admin only, with a reason, audited, kept from purges."""

from __future__ import annotations

import uuid

import httpx
import pytest
import trio

from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from tests.fixtures.api import ADMIN_TOKEN, AGENT_TOKEN, READER_TOKEN, RunningApi


def rest(api: RunningApi, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api.endpoints.rest_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


async def test_only_admin_places_lifts_and_lists_holds(running_api: RunningApi) -> None:
    call_uuid = str(uuid.uuid4())
    body = {"held": True, "reason": "case 2026-17"}
    with trio.fail_after(30):
        for token in (READER_TOKEN, AGENT_TOKEN):
            async with rest(running_api, token) as client:
                refused = await client.post(f"/api/v1/calls/{call_uuid}:hold", json=body)
                listed = await client.get("/api/v1/holds")
            assert refused.status_code == 403 and listed.status_code == 403
        async with rest(running_api, ADMIN_TOKEN) as admin:
            placed = await admin.post(f"/api/v1/calls/{call_uuid}:hold", json=body)
            again = await admin.post(f"/api/v1/calls/{call_uuid}:hold", json=body)
            blank = await admin.post(
                f"/api/v1/calls/{call_uuid}:hold", json={"held": True, "reason": " "}
            )
            nul = await admin.post(
                f"/api/v1/calls/{call_uuid}:hold", json={"held": False, "reason": "a\x00b"}
            )
            unknown = await admin.get("/api/v1/holds", params={"limit": "5", "x": "1"})
        async with running_api.client(ADMIN_TOKEN) as journal:
            holds = await journal.list_legal_holds()
            lifted = await journal.set_legal_hold(
                call_uuid, pb.LEGAL_HOLD_ACTION_LIFT, "case closed"
            )
            with pytest.raises(RpcError) as no_action:
                await journal.set_legal_hold(call_uuid, pb.LEGAL_HOLD_ACTION_UNSPECIFIED, "x")
            after = await journal.list_legal_holds()
        async with running_api.client(READER_TOKEN) as reader:
            with pytest.raises(RpcError) as denied:
                await reader.list_legal_holds()
    assert placed.status_code == 200 and placed.json() == {
        "uuid": call_uuid,
        "held": True,
        "changed": True,
    }
    assert again.json()["changed"] is False
    assert blank.status_code == 400 and blank.json()["error"]["field"] == "reason"
    assert nul.status_code == 400 and nul.json()["error"]["field"] == "reason"
    assert unknown.status_code == 400
    assert [(h.uuid, h.reason, h.held_by) for h in holds.holds] == [
        (call_uuid, "case 2026-17", "admin")
    ]
    assert lifted.held is False and lifted.changed is True
    assert no_action.value.code is ErrorCode.INVALID_ARGUMENT
    assert list(after.holds) == []
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    rows = running_api.query(
        "SELECT action, result, actor, detail->>'reason' AS reason FROM audit_log "
        "WHERE call_uuid = %s ORDER BY id",
        (call_uuid,),
    )
    assert [(r["action"], r["result"], r["actor"], r["reason"]) for r in rows] == [
        ("hold_add", "added", "admin", "case 2026-17"),
        ("hold_add", "already_held", "admin", "case 2026-17"),
        ("hold_remove", "removed", "admin", "case closed"),
    ]
