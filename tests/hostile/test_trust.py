"""Attacks with valid tokens (issue 11, items 1, 2 and 8's ingest part), REST and gRPC.

The tokens of `running_api` (tests/fixtures/api.py): `pbx-1` (AGENT_TOKEN, an agent
whose sources are pbx-1 and the suite's test sources), `pbx-2` (PBX2_TOKEN, another
PBX's agent), `ops` (READER_TOKEN) and `admin` (ADMIN_TOKEN, every role). Each test
asserts the refusal, that the stored call is exactly as before, that a reader still
cannot download the private recording, and what the audit log holds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg
import pytest
import trio
from click.testing import CliRunner
from psycopg.rows import dict_row

from cj.cli import cli
from cj.codec import call_to_pb
from cj.errors import ErrorCode
from cj.jsonlimits import MAX_JSON_DEPTH
from cj.model import Call
from tests.factories import make_call
from tests.fixtures.api import ADMIN_TOKEN, AGENT_TOKEN, PBX2_TOKEN, READER_TOKEN, RunningApi
from tests.hostile.trust_clients import Grpc, Refusal, Rest, Transport, call_json

WAV = (Path(__file__).resolve().parents[1] / "data" / "audio" / "pcm16-8k-mono.wav").read_bytes()
INTRUDER_WAV = WAV[:44] + bytes(len(WAV) - 44)  # another recording: same size, silence
TIMEOUT_S = 30


@pytest.fixture(params=["rest", "grpc"])
def transport(request: pytest.FixtureRequest, running_api: RunningApi) -> Transport:
    return Rest(running_api) if request.param == "rest" else Grpc(running_api)


class Queryable(Protocol):
    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]: ...


@dataclass
class Db:
    url: str

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []


def stored(api: Queryable, call_uuid: uuid.UUID) -> dict[str, Any]:
    rows = api.query("SELECT * FROM calls WHERE uuid = %s", (call_uuid,))
    assert len(rows) == 1
    return rows[0]


def privacy_audit(api: Queryable, call_uuid: uuid.UUID) -> list[dict[str, Any]]:
    return api.query(
        "SELECT actor, result, detail FROM audit_log"
        " WHERE call_uuid = %s AND action = 'privacy' ORDER BY id",
        (call_uuid,),
    )


def refused(answer: object, code: ErrorCode = ErrorCode.PERMISSION_DENIED) -> Refusal:
    assert isinstance(answer, Refusal), answer
    assert answer.code is code, answer
    return answer


async def private_call_with_recording(transport: Transport, **fields: Any) -> Call:
    """pbx-1's private call, its WAV uploaded."""
    call = make_call(source="pbx-1", private=True, **fields)
    assert await transport.add_call(AGENT_TOKEN, call) == "inserted"
    assert await transport.upload(AGENT_TOKEN, call.uuid, WAV) == "created"
    return call


async def assert_not_downloadable(transport: Transport, call_uuid: uuid.UUID) -> None:
    refusal = refused(await transport.download(READER_TOKEN, call_uuid))
    assert "private" in refusal.message


# --- item 1: private is sticky ---------------------------------------------------------


async def test_an_agent_cannot_make_a_private_call_public(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await private_call_with_recording(transport)
        before = stored(running_api, call.uuid)
        public = replace(call, private=False)
        # The same CDR with private = false, alone and in a batch: nothing changes.
        assert await transport.add_call(AGENT_TOKEN, public) == "unchanged"
        counts = await transport.add_calls(AGENT_TOKEN, [public])
        assert (counts["unchanged"], counts["updated"], counts["rejected"]) == (1, 0, 0)
        assert stored(running_api, call.uuid) == before
        # With another change too: that change is kept, the privacy is not cleared.
        renamed = replace(public, caller_name="Changed")
        assert await transport.add_call(AGENT_TOKEN, renamed) == "updated"
        after = stored(running_api, call.uuid)
        assert after["private"] is True and after["caller_name"] == "Changed"
        await assert_not_downloadable(transport, call.uuid)
        assert privacy_audit(running_api, call.uuid) == []  # it never changed


async def test_ingest_making_a_call_private_is_audited(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = make_call(source="pbx-1")
        assert await transport.add_call(AGENT_TOKEN, call) == "inserted"
        assert await transport.add_call(AGENT_TOKEN, replace(call, private=True)) == "updated"
        assert stored(running_api, call.uuid)["private"] is True
        (row,) = privacy_audit(running_api, call.uuid)
        assert row["actor"] == "pbx-1" and row["result"] == "private"
        assert row["detail"]["reason"] == "ingest" and row["detail"]["was_private"] is False


async def test_only_an_admin_releases_a_call_with_a_reason(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await private_call_with_recording(transport)
        for token in (READER_TOKEN, AGENT_TOKEN, PBX2_TOKEN):
            refusal = refused(
                await transport.set_privacy(token, call.uuid, private=False, reason="please")
            )
            assert "'admin' role" in refusal.message
        for blank in ("", "   "):
            refusal = refused(
                await transport.set_privacy(ADMIN_TOKEN, call.uuid, private=False, reason=blank),
                ErrorCode.INVALID_ARGUMENT,
            )
            assert refusal.field == "reason"
        assert stored(running_api, call.uuid)["private"] is True
        await assert_not_downloadable(transport, call.uuid)
        assert privacy_audit(running_api, call.uuid) == []

        answer = await transport.set_privacy(
            ADMIN_TOKEN, call.uuid, private=False, reason="ticket 42: consent recorded"
        )
        assert answer == {"uuid": str(call.uuid), "private": False, "changed": True}
        assert await transport.download(READER_TOKEN, call.uuid) == WAV
        again = await transport.set_privacy(ADMIN_TOKEN, call.uuid, private=False, reason="again")
        assert isinstance(again, dict) and again["changed"] is False
        rows = privacy_audit(running_api, call.uuid)
        assert [(r["actor"], r["result"], r["detail"]["reason"]) for r in rows] == [
            ("admin", "public", "ticket 42: consent recorded"),
            ("admin", "unchanged", "again"),
        ]


async def test_set_privacy_of_an_unknown_call_is_not_found(transport: Transport) -> None:
    with trio.fail_after(TIMEOUT_S):
        answer = await transport.set_privacy(ADMIN_TOKEN, uuid.uuid4(), private=True, reason="x")
        refused(answer, ErrorCode.NOT_FOUND)


def test_the_cli_releases_a_call_with_an_audited_reason(database_url: str) -> None:
    db = Db(database_url)
    call = make_call(source="pbx-1", private=True)
    db.query(
        "INSERT INTO calls (uuid, source, caller_number, caller_digits_rev,"
        " destination_number, destination_digits_rev, started_at, private)"
        " VALUES (%s, 'pbx-1', '1', '1', '2', '2', %s, true)",
        (call.uuid, call.started_at),
    )
    runner = CliRunner()
    env = {"CJ_DATABASE_URL": database_url}
    args = ["calls", "privacy", str(call.uuid), "--public"]
    missing = runner.invoke(cli, args, env=env)
    assert missing.exit_code != 0 and "--reason" in missing.output
    blank = runner.invoke(cli, [*args, "--reason", "  "], env=env)
    assert blank.exit_code != 0 and "--reason" in blank.output
    assert stored(db, call.uuid)["private"] is True
    result = runner.invoke(cli, [*args, "--reason", "court order 7"], env=env)
    assert result.exit_code == 0, result.output
    assert "is now public" in result.output
    assert stored(db, call.uuid)["private"] is False
    (row,) = privacy_audit(db, call.uuid)
    assert row["actor"].startswith("cli:") and row["result"] == "public"
    assert row["detail"]["reason"] == "court order 7"


def test_a_privacy_change_made_with_sql_is_audited_too(database_url: str) -> None:
    db = Db(database_url)
    call_uuid = uuid.uuid4()
    db.query(
        "INSERT INTO calls (uuid, source, caller_number, caller_digits_rev,"
        " destination_number, destination_digits_rev, started_at, private)"
        " VALUES (%s, 'pbx-1', '1', '1', '2', '2', now(), true)",
        (call_uuid,),
    )
    db.query("UPDATE calls SET private = false WHERE uuid = %s", (call_uuid,))
    (row,) = privacy_audit(db, call_uuid)
    assert row["actor"].startswith("sql:") and row["result"] == "public"


# --- item 2: calls are owned by their source -------------------------------------------


async def test_another_pbx_cannot_rewrite_a_call(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await private_call_with_recording(transport)
        before = stored(running_api, call.uuid)
        forged = replace(call, caller=make_call(caller="70000000000").caller, private=False)
        # As its own source (an empty source means the token's first, pbx-2) …
        refusal = refused(await transport.add_call(PBX2_TOKEN, replace(forged, source="")))
        assert refusal.field == "call.uuid" and "belongs to another source" in refusal.message
        assert "pbx-1" not in refusal.message  # the owner is not revealed
        # … or naming the owner's source.
        refusal = refused(await transport.add_call(PBX2_TOKEN, forged))
        assert refusal.field == "call.source"
        assert "'pbx-1'" in refusal.message and "its sources: pbx-2" in refusal.message
        # In a batch only that call is rejected; the intruder's own call is stored.
        own = make_call(source="")
        counts = await transport.add_calls(PBX2_TOKEN, [replace(forged, source=""), own])
        assert (counts["inserted"], counts["rejected"]) == (1, 1)
        (rejection,) = counts["rejections"]
        assert rejection["index"] == 0 and rejection["code"] == "PERMISSION_DENIED"
        assert stored(running_api, own.uuid)["source"] == "pbx-2"
        assert stored(running_api, call.uuid) == before
        await assert_not_downloadable(transport, call.uuid)
        assert privacy_audit(running_api, call.uuid) == []


async def test_another_pbx_cannot_attach_its_audio(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = make_call(source="pbx-1", private=True)
        assert await transport.add_call(AGENT_TOKEN, call) == "inserted"
        refusal = refused(await transport.upload(PBX2_TOKEN, call.uuid, INTRUDER_WAV))
        assert "belongs to another source" in refusal.message
        assert (
            running_api.query("SELECT 1 FROM recordings WHERE call_uuid = %s", (call.uuid,)) == []
        )
        assert running_api.stored_files("temp") == []  # not a byte was kept
        # The genuine upload still succeeds, and is not shadowed afterwards either.
        assert await transport.upload(AGENT_TOKEN, call.uuid, WAV) == "created"
        refused(await transport.upload(PBX2_TOKEN, call.uuid, WAV))  # not even "duplicate"
        (row,) = running_api.query(
            "SELECT original_sha256 FROM recordings WHERE call_uuid = %s", (call.uuid,)
        )
        assert row["original_sha256"] == hashlib.sha256(WAV).hexdigest()
        await assert_not_downloadable(transport, call.uuid)
        assert privacy_audit(running_api, call.uuid) == []


async def test_check_calls_reveals_nothing_of_another_pbx(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = await private_call_with_recording(transport)
        nothing = {"exists": False, "recording_status": None, "recording_sha256": None}
        assert await transport.check(PBX2_TOKEN, [call.uuid, uuid.uuid4()]) == [nothing, nothing]
        (mine,) = await transport.check(AGENT_TOKEN, [call.uuid])
        assert mine["exists"] is True and mine["recording_sha256"] is not None
        await assert_not_downloadable(transport, call.uuid)


async def test_the_owners_resends_stay_idempotent(
    transport: Transport, running_api: RunningApi
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call = make_call(source="")  # takes the token's first source
        assert await transport.add_call(AGENT_TOKEN, call) == "inserted"
        assert stored(running_api, call.uuid)["source"] == "pbx-1"
        before = stored(running_api, call.uuid)
        assert await transport.add_call(AGENT_TOKEN, call) == "unchanged"
        # Another of the token's sources may update it; the owner stays the first.
        renamed = replace(call, source="pbx-test", caller_name="New")
        assert await transport.add_call(AGENT_TOKEN, renamed) == "updated"
        after = stored(running_api, call.uuid)
        assert after["source"] == before["source"] == "pbx-1"
        assert after["caller_name"] == "New"


async def test_racing_pbxs_leave_each_call_to_one_owner(running_api: RunningApi) -> None:
    """Both PBXs send the same new uuids at once: one stores each, the other is refused
    (never an unchanged or updated answer for the loser)."""
    grpc = Grpc(running_api)
    calls = [make_call(source="") for _ in range(12)]
    answers: dict[tuple[str, uuid.UUID], object] = {}

    async def send(token: str, call: Call) -> None:
        answers[(token, call.uuid)] = await grpc.add_call(token, call)

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(send, AGENT_TOKEN, call)
                nursery.start_soon(send, PBX2_TOKEN, call)
    for call in calls:
        owner = stored(running_api, call.uuid)["source"]
        winner, loser = (AGENT_TOKEN, PBX2_TOKEN) if owner == "pbx-1" else (PBX2_TOKEN, AGENT_TOKEN)
        assert answers[(winner, call.uuid)] == "inserted"
        refused(answers[(loser, call.uuid)])


# --- item 8 (ingest): bad items alone, bounded nesting ---------------------------------


async def test_a_deeply_nested_raw_json_is_rejected_alone_in_add_calls(
    running_api: RunningApi,
) -> None:
    grpc = Grpc(running_api)
    good = [make_call(source="pbx-1") for _ in range(2)]
    bad = call_to_pb(make_call(source="pbx-1"))
    bad.raw_json = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with trio.fail_after(TIMEOUT_S):
        alone = await grpc.add_call(AGENT_TOKEN, make_call(source="pbx-1"))
        assert alone == "inserted"
        stream = [call_to_pb(good[0]), bad, call_to_pb(good[1])]
        counts = await grpc.add_calls_pb(AGENT_TOKEN, stream)
        assert (counts["inserted"], counts["rejected"]) == (2, 1)
        (rejection,) = counts["rejections"]
        assert rejection["index"] == 1 and rejection["field"] == "call.raw_json"
        assert rejection["code"] == "INVALID_ARGUMENT"
        for call in good:
            stored(running_api, call.uuid)


def nested(depth: int) -> dict[str, Any]:
    """A JSON object nesting `depth` containers, itself included."""
    value: Any = []
    for _ in range(depth - 2):
        value = [value]
    return {"deep": value}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
async def test_grpc_add_call_refuses_deep_raw_json_naming_the_field(
    running_api: RunningApi, depth: int
) -> None:
    message = call_to_pb(make_call(source="pbx-1"))
    message.raw_json = "[" * (depth - 1) + "]" * (depth - 1)
    message.raw_json = "{" + f'"x": {message.raw_json}' + "}"
    with trio.fail_after(TIMEOUT_S):
        counts = await Grpc(running_api).add_calls_pb(AGENT_TOKEN, [message])
        alone = await Grpc(running_api).add_call_pb(AGENT_TOKEN, message)
    assert counts["rejections"][0]["field"] == "call.raw_json"
    refusal = refused(alone, ErrorCode.INVALID_ARGUMENT)
    assert refusal.field == "call.raw_json" and str(MAX_JSON_DEPTH) in refusal.message
    # The limit itself is accepted.
    message.raw_json = json.dumps(nested(MAX_JSON_DEPTH))
    with trio.fail_after(TIMEOUT_S):
        counts = await Grpc(running_api).add_calls_pb(AGENT_TOKEN, [message])
    assert counts["inserted"] == 1


async def test_rest_refuses_deep_raw_naming_the_field(running_api: RunningApi) -> None:
    rest = Rest(running_api)
    call = make_call(source="pbx-1", raw=nested(MAX_JSON_DEPTH + 1))
    with trio.fail_after(TIMEOUT_S):
        refusal = refused(await rest.add_call(AGENT_TOKEN, call), ErrorCode.INVALID_ARGUMENT)
        assert refusal.field == "call.raw" and str(MAX_JSON_DEPTH) in refusal.message
        ok = make_call(source="pbx-1", raw=nested(MAX_JSON_DEPTH))
        counts = await rest.add_calls(AGENT_TOKEN, [call, ok])
        assert (counts["inserted"], counts["rejected"]) == (1, 1)
        assert counts["rejections"][0]["field"] == "call.raw"
        # Deeper than the parser goes: the body is refused, never a 500.
        body = json.dumps(call_json(make_call(source="pbx-1"))).replace(
            '"raw": {', '"raw": {"x": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1
        )
        async with httpx.AsyncClient(base_url=running_api.endpoints.rest_url) as client:
            response = await client.post(
                "/api/v1/calls",
                content=body,
                headers={
                    "Authorization": f"Bearer {AGENT_TOKEN}",
                    "Content-Type": "application/json",
                },
            )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "body"
