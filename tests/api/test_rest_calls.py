"""REST calls: add, batch, check, get and search, over real sockets and PostgreSQL."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import trio

from cj.db.ingest import upsert_call
from cj.db.recordings import create_recording
from cj_api.call_codec import MAX_BATCH_CALLS
from cj_api.rest import MAX_BATCH_BYTES, MAX_JSON_BYTES
from cj_api.rest_primitives import format_timestamp
from tests.api.conftest import AGENT_TOKEN, READER_TOKEN, RestServer, raw_exchange
from tests.factories import BASE_TIME, make_call

TIMEOUT_S = 20


def call_json(**overrides: Any) -> dict[str, Any]:
    """A valid call as a client sends it."""
    body: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "source": "pbx-a",
        "caller_number": "+7 (916) 123-45-67",
        "caller_name": "Ivan",
        "destination_number": "8 495 700-10-20",
        "direction": "inbound",
        "started_at": "2026-03-02T06:00:00Z",
        "answered_at": "2026-03-02T09:00:05+03:00",
        "ended_at": "2026-03-02T06:01:05.250Z",
        "duration_s": 65,
        "billsec": 60,
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_side": "recv_bye",
        "sip_code": 200,
        "private": False,
        "recording_name": "rec.wav",
        "raw": {"clid": "79161234567", "nested": {"a": [1, 2]}},
    }
    body.update(overrides)
    return body


async def test_add_call_inserts_updates_and_reads_back(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        body = call_json()
        async with rest_server.client(AGENT_TOKEN) as agent:
            first = await agent.post("/api/v1/calls", json=body)
            again = await agent.post("/api/v1/calls", json=body)
            changed = await agent.post("/api/v1/calls", json={**body, "caller_name": "Pyotr"})
        assert (first.status_code, first.json()) == (201, {"outcome": "inserted"})
        assert (again.status_code, again.json()) == (200, {"outcome": "unchanged"})
        assert (changed.status_code, changed.json()) == (200, {"outcome": "updated"})

        async with rest_server.client(READER_TOKEN) as reader:
            got = await reader.get(f"/api/v1/calls/{body['uuid']}")
        assert got.status_code == 200
        call = got.json()["call"]
        assert got.json()["recording"] is None
        assert call["caller_name"] == "Pyotr"
        assert call["caller_digits"] == "79161234567"
        assert call["destination_digits"] == "84957001020"
        # Times come back in UTC with Z; the +03:00 answer time is the same instant.
        assert call["started_at"] == "2026-03-02T06:00:00Z"
        assert call["answered_at"] == "2026-03-02T06:00:05Z"
        assert call["ended_at"] == "2026-03-02T06:01:05.250000Z"
        assert call["raw"] == body["raw"]
        assert call["source"] == "pbx-a"


async def test_add_call_defaults_and_source_from_token(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        minimal = {
            "uuid": str(uuid.uuid4()).upper(),
            "caller_number": "1004",
            "destination_number": "1005",
            "started_at": "2026-03-02T06:00:00+00:00",
        }
        async with rest_server.client(AGENT_TOKEN) as agent:
            added = await agent.post("/api/v1/calls", json=minimal)
        assert added.status_code == 201
        async with rest_server.client(READER_TOKEN) as reader:
            got = (await reader.get(f"/api/v1/calls/{minimal['uuid'].lower()}")).json()["call"]
        assert got["source"] == "pbx-1"  # the agent token's name
        assert got["direction"] == "unknown"
        assert (got["duration_s"], got["billsec"], got["sip_code"]) == (0, 0, None)
        assert (got["answered_at"], got["recording_name"], got["private"]) == (None, None, False)
        assert got["raw"] == {}


# Each case is one request; cases share a test (and its fresh database) for speed.
BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"uuid": "not-a-uuid"}, "call.uuid"),
    ({"uuid": 12}, "call.uuid"),
    ({"started_at": "2026-03-02T06:00:00"}, "call.started_at"),  # naive
    ({"started_at": "yesterday"}, "call.started_at"),
    ({"answered_at": "2026-03-02T05:00:00Z"}, "call.answered_at"),  # before start
    ({"duration_s": "65"}, "call.duration_s"),
    ({"duration_s": True}, "call.duration_s"),
    ({"duration_s": -1}, "call.duration_s"),
    ({"duration_s": 1.5}, "call.duration_s"),
    ({"billsec": 70}, "call.billsec"),  # above duration_s
    ({"sip_code": 99}, "call.sip_code"),
    ({"direction": "sideways"}, "call.direction"),
    ({"private": "yes"}, "call.private"),
    ({"raw": [1, 2]}, "call.raw"),
    ({"caller_name": "x" * 300}, "call.caller_name"),
    ({"caller_number": "1" * 200}, "call.caller_number"),
    ({"hangup_cause": "a\x00b"}, "call.hangup_cause"),
    ({"colour": "blue"}, "call.colour"),  # unknown fields are refused
    ({"destination_number": None}, "call.destination_number"),
    ({"private": None}, "call.private"),  # null only where the schema says nullable
    ({"hangup_side": None}, "call.hangup_side"),
    ({"sip_code": "200"}, "call.sip_code"),
]


async def test_add_call_rejects_bad_fields_by_name(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(AGENT_TOKEN) as agent:
            for overrides, field in BAD_CALLS:
                answer = await agent.post("/api/v1/calls", json=call_json(**overrides))
                assert answer.status_code == 400, overrides
                error = answer.json()["error"]
                assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", field), overrides
                assert error["message"].startswith(f"{field}: "), overrides
        rows = await rest_server.stack.query("SELECT count(*) AS n FROM calls")
        assert rows[0]["n"] == 0


BAD_BODIES: list[tuple[bytes, str, int, str]] = [
    (b"{not json", "application/json", 400, "body"),
    (b"", "application/json", 400, "body"),
    (b'{"a": NaN}', "application/json", 400, "body"),
    (b"\xff\xfe", "application/json", 400, "body"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "body"),
    (b"[1, 2]", "application/json", 400, "call"),
    (b'{"uuid": "x"}', "text/plain", 415, "Content-Type"),
    (b'{"uuid": "x"}', "", 415, "Content-Type"),
]


async def test_add_call_rejects_bad_bodies(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(AGENT_TOKEN) as agent:
            for content, content_type, status, field in BAD_BODIES:
                headers = {"Content-Type": content_type} if content_type else {}
                answer = await agent.post("/api/v1/calls", content=content, headers=headers)
                assert answer.status_code == status, content[:20]
                assert answer.json()["error"]["field"] == field, content[:20]


async def test_json_bodies_over_their_limit_are_413(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        # Declared too big: refused before the body is read (none is sent here).
        head = (
            "POST /api/v1/calls HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {AGENT_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_JSON_BYTES + 1}\r\nConnection: close\r\n\r\n"
        ).encode()
        declared = await raw_exchange(rest_server.port, head)
        assert declared is not None and declared.status == 413
        assert declared.headers["connection"] == "close"
        declared_error = json.loads(declared.body)["error"]
        # Sent chunked (no Content-Length to refuse up front): refused once over the limit.
        payload = json.dumps(call_json(raw={"blob": "x" * MAX_JSON_BYTES})).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 65536):
                yield payload[start : start + 65536]

        async with rest_server.client(AGENT_TOKEN) as agent:
            chunked = await agent.post(
                "/api/v1/calls", content=chunks(), headers={"Content-Type": "application/json"}
            )
        assert chunked.status_code == 413
        for error in (declared_error, chunked.json()["error"]):
            assert (error["code"], error["field"]) == ("RESOURCE_EXHAUSTED", "body")
            assert str(MAX_JSON_BYTES) in error["message"]
        assert MAX_BATCH_BYTES > MAX_JSON_BYTES


async def test_batch_counts_outcomes_and_reports_rejections(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        existing = call_json()
        async with rest_server.client(AGENT_TOKEN) as agent:
            await agent.post("/api/v1/calls", json=existing)
            batch = [
                call_json(),
                existing,  # unchanged
                {**existing, "hangup_cause": "USER_BUSY"},  # updated (same uuid, later)
                call_json(uuid="nope"),
                "not an object",
                call_json(started_at="2026-13-01T00:00:00Z"),
            ]
            answer = await agent.post("/api/v1/calls:batch", json={"calls": batch})
        assert answer.status_code == 200
        result = answer.json()
        assert (result["inserted"], result["updated"], result["unchanged"]) == (1, 1, 1)
        assert result["rejected"] == 3
        rejections = result["rejections"]
        assert [r["index"] for r in rejections] == [3, 4, 5]
        assert rejections[0]["uuid"] == "nope" and rejections[0]["field"] == "call.uuid"
        assert rejections[1]["field"] == "call" and rejections[1]["uuid"] == ""
        assert rejections[2]["field"] == "call.started_at"
        assert rejections[2]["reason"].startswith("call.started_at: ")
        rows = await rest_server.stack.query("SELECT count(*) AS n FROM calls")
        assert rows[0]["n"] == 2


async def test_batch_limits_and_shape(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        too_many: dict[str, list[Any]] = {"calls": [{}] * (MAX_BATCH_CALLS + 1)}
        async with rest_server.client(AGENT_TOKEN) as agent:
            over = await agent.post("/api/v1/calls:batch", json=too_many)
            empty = await agent.post("/api/v1/calls:batch", json={"calls": []})
            not_list = await agent.post("/api/v1/calls:batch", json={"calls": {}})
            extra = await agent.post("/api/v1/calls:batch", json={"calls": [], "dry_run": True})
            wrong_method = await agent.get("/api/v1/calls:batch")
        assert over.status_code == 413
        assert over.json()["error"]["field"] == "calls"
        assert str(MAX_BATCH_CALLS) in over.json()["error"]["message"]
        assert empty.status_code == 200 and empty.json()["inserted"] == 0
        assert (not_list.status_code, not_list.json()["error"]["field"]) == (400, "calls")
        assert (extra.status_code, extra.json()["error"]["field"]) == (400, "dry_run")
        # The colon route exists and is routed on its own (not as a call uuid).
        assert wrong_method.status_code == 405
        assert wrong_method.headers["Allow"] == "POST"


async def test_check_reports_existence_and_recording_state(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        stack = rest_server.stack
        with_recording, bare = make_call(), make_call()
        for call in (with_recording, bare):
            await stack.db.run(functools.partial(upsert_call, call=call))
        await stack.db.run(
            lambda conn: create_recording(
                conn,
                with_recording.uuid,
                original_name="a.wav",
                size=4,
                sha256="a" * 64,
                storage="temp",
                key="k",
            )
        )
        missing = uuid.uuid4()
        asked = [str(missing), str(with_recording.uuid), str(bare.uuid).replace("-", "")]
        async with rest_server.client(AGENT_TOKEN) as agent:
            answer = await agent.post("/api/v1/calls:check", json={"uuids": asked})
            bad = await agent.post("/api/v1/calls:check", json={"uuids": [str(missing), "x"]})
            none = await agent.post("/api/v1/calls:check", json={"uuids": []})
        assert answer.status_code == 200
        assert answer.json()["calls"] == [
            {"uuid": str(missing), "exists": False, "recording_status": None,
             "recording_sha256": None},
            {"uuid": str(with_recording.uuid), "exists": True, "recording_status": "uploaded",
             "recording_sha256": "a" * 64},
            {"uuid": str(bare.uuid), "exists": True, "recording_status": None,
             "recording_sha256": None},
        ]  # fmt: skip
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, "uuids[1]")
        assert (none.status_code, none.json()["error"]["field"]) == (400, "uuids")


async def test_get_call_errors(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(READER_TOKEN) as reader:
            missing = await reader.get(f"/api/v1/calls/{uuid.uuid4()}")
            malformed = await reader.get("/api/v1/calls/12345")
            braces = await reader.get(f"/api/v1/calls/{{{uuid.uuid4()}}}")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
        for answer in (malformed, braces):
            assert answer.status_code == 400
            assert answer.json()["error"]["field"] == "call_uuid"


# --- search ------------------------------------------------------------------------------


async def add_calls(server: RestServer, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:  # the search tests move started_at around
        body.update(answered_at=None, ended_at=None)
    async with server.client(AGENT_TOKEN) as agent:
        answer = await agent.post("/api/v1/calls:batch", json={"calls": bodies})
    assert answer.json()["inserted"] == len(bodies)


async def test_search_by_phone_pages_newest_first(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        times = [BASE_TIME + timedelta(minutes=i) for i in range(5)]
        mine = [
            call_json(caller_number="8 900 280-04-21", started_at=format_timestamp(t))
            for t in times
        ]
        other = call_json(caller_number="1004", destination_number="1005")
        await add_calls(rest_server, [*mine, other])
        seen: list[str] = []
        token = None
        pages = 0
        async with rest_server.client(READER_TOKEN) as reader:
            while True:
                params: dict[str, Any] = {"phone": "9002800421", "limit": 2}
                if token:
                    params["page_token"] = token
                answer = await reader.get("/api/v1/calls", params=params)
                assert answer.status_code == 200
                page = answer.json()
                seen += [record["call"]["uuid"] for record in page["calls"]]
                assert all("raw" not in record["call"] for record in page["calls"])
                pages += 1
                token = page["next_page_token"]
                if token is None:
                    break
            exact = await reader.get("/api/v1/calls", params={"phone": "1005", "exact": "true"})
            suffix_miss = await reader.get(
                "/api/v1/calls", params={"phone": "005", "exact": "true"}
            )
        assert seen == [body["uuid"] for body in reversed(mine)]
        assert pages == 3
        assert [r["call"]["uuid"] for r in exact.json()["calls"]] == [other["uuid"]]
        assert suffix_miss.json()["calls"] == []


async def test_search_by_interval_and_filters(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        early = call_json(started_at="2026-03-01T23:59:59Z", direction="outbound")
        inside = call_json(started_at="2026-03-02T00:00:00Z", direction="inbound")
        late = call_json(started_at="2026-03-03T00:00:00Z", direction="inbound")
        await add_calls(rest_server, [early, inside, late])
        async with rest_server.client(READER_TOKEN) as reader:
            day = await reader.get(
                "/api/v1/calls",
                params={"from": "2026-03-02T03:00:00+03:00", "to": "2026-03-03T00:00:00Z"},
            )
            outbound = await reader.get(
                "/api/v1/calls",
                params={
                    "from": "2026-03-01T00:00:00Z",
                    "to": "2026-03-04T00:00:00Z",
                    "direction": "outbound",
                },
            )
            without = await reader.get(
                "/api/v1/calls",
                params={
                    "from": "2026-03-01T00:00:00Z",
                    "to": "2026-03-04T00:00:00Z",
                    "has_recording": "false",
                },
            )
            with_recording = await reader.get(
                "/api/v1/calls",
                params={
                    "from": "2026-03-01T00:00:00Z",
                    "to": "2026-03-04T00:00:00Z",
                    "has_recording": "true",
                },
            )
        assert [r["call"]["uuid"] for r in day.json()["calls"]] == [inside["uuid"]]
        assert [r["call"]["uuid"] for r in outbound.json()["calls"]] == [early["uuid"]]
        assert len(without.json()["calls"]) == 3
        assert with_recording.json()["calls"] == []


BAD_SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({"from": "2026-03-02T00:00:00Z"}, "to"),
    ({"to": "2026-03-02T00:00:00Z"}, "from"),
    ({}, "from"),
    ({"from": "2026-03-02T00:00:00", "to": "2026-03-03T00:00:00Z"}, "from"),  # naive
    ({"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),  # inverted
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),  # empty
    ({"phone": "12", "limit": "0"}, "limit"),
    ({"phone": "12", "limit": "1001"}, "limit"),
    ({"phone": "12", "limit": "ten"}, "limit"),
    ({"phone": "12", "page_token": "garbage!"}, "page_token"),
    ({"phone": "a b c"}, "phone"),  # "abc" would be an extension or SIP login
    ({"phone": "12", "exact": "maybe"}, "exact"),
    ({"phone": "12", "direction": "up"}, "direction"),
    ({"phone": "12", "fromm": "2026-03-02T00:00:00Z"}, "fromm"),  # a typo is not ignored
    ({"phone": ["12", "13"]}, "phone"),
]


async def test_search_rejects_bad_parameters_by_name(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        async with rest_server.client(READER_TOKEN) as reader:
            for params, field in BAD_SEARCHES:
                answer = await reader.get("/api/v1/calls", params=params)
                assert answer.status_code == 400, params
                assert answer.json()["error"]["field"] == field, params


async def test_page_token_of_another_query_is_refused(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        await add_calls(rest_server, [call_json(caller_number="5551234") for _ in range(3)])
        async with rest_server.client(READER_TOKEN) as reader:
            first = await reader.get("/api/v1/calls", params={"phone": "5551234", "limit": 1})
            token = first.json()["next_page_token"]
            assert token
            replayed = await reader.get(
                "/api/v1/calls", params={"phone": "1234", "limit": 1, "page_token": token}
            )
        assert replayed.status_code == 400
        assert replayed.json()["error"]["field"] == "page_token"
        assert "different query" in replayed.json()["error"]["message"]


async def test_extensions_round_trip_and_are_searchable(rest_server: RestServer) -> None:
    with trio.fail_after(TIMEOUT_S):
        body = call_json(
            caller_number="+4986517174960",
            caller_extension="dan",
            destination_number="+4986517174963",
            direction="outbound",
        )
        other = call_json(destination_extension="1001")
        await add_calls(rest_server, [body, other])
        async with rest_server.client(READER_TOKEN) as reader:
            got = await reader.get(f"/api/v1/calls/{body['uuid']}")
            by_login = await reader.get("/api/v1/calls", params={"phone": "Dan"})
            by_callee = await reader.get("/api/v1/calls", params={"phone": "1001", "exact": "true"})
            refused = await reader.get("/api/v1/calls", params={"phone": "no digits"})
        call = got.json()["call"]
        assert (call["caller_extension"], call["destination_extension"]) == ("dan", "")
        assert [r["call"]["uuid"] for r in by_login.json()["calls"]] == [body["uuid"]]
        assert [r["call"]["uuid"] for r in by_callee.json()["calls"]] == [other["uuid"]]
        assert by_callee.json()["calls"][0]["call"]["destination_extension"] == "1001"
        assert refused.status_code == 400 and "phone" in refused.text
