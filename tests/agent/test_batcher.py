"""Calls ready together travel together: the agent's AddCalls batching."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cj.codec import call_to_pb
from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from cj_agent.batcher import CallBatcher
from tests.agent.helpers import Spool, agent_settings, compact_cdr, running_agent, server_calls
from tests.factories import make_call
from tests.fixtures.api import RunningApi


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


async def _add_calls_streams(api: RunningApi) -> int:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{api.endpoints.rest_url}/metrics")).text
    found = re.search(
        r'cj_api_requests_total\{protocol="grpc",route="AddCalls",status="OK"\} (\S+)', text
    )
    return int(float(found.group(1))) if found else 0


async def test_a_backlog_travels_in_few_streams(running_api: RunningApi, spool: Spool) -> None:
    documents = [compact_cdr() for _ in range(150)]
    for document in documents:
        spool.write_cdr(document)
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    with trio.fail_after(60):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.files_done >= 150)
        streams = await _add_calls_streams(running_api)
    assert spool.cdr_files() == []
    assert set(server_calls(running_api)) == {d["uuid"] for d in documents}
    assert 1 <= streams <= 15, f"{streams} AddCalls streams for 150 calls"


class FakeLink:
    """Answers AddCalls like the server: the second call of every batch is rejected."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def call(self, what: str, op: Any) -> pb.AddCallsResponse:
        assert what == "AddCalls"

        class Journal:
            async def add_calls(inner, calls: list[pb.Call]) -> pb.AddCallsResponse:
                self.batches.append(len(calls))
                return pb.AddCallsResponse(
                    inserted=len(calls) - 1,
                    rejected=1,
                    rejections=[
                        pb.Rejection(
                            index=1,
                            uuid=calls[1].uuid,
                            reason="call.sip_code: no",
                            field="call.sip_code",
                        )
                    ],
                )

        result: pb.AddCallsResponse = await op(Journal())
        return result


async def test_only_the_rejected_call_fails() -> None:
    link = FakeLink()
    batcher = CallBatcher(link)  # type: ignore[arg-type]
    outcomes: dict[int, str] = {}

    async def add(index: int) -> None:
        try:
            await batcher.add(call_to_pb(make_call()))
            outcomes[index] = "stored"
        except RpcError as exc:
            assert exc.code is ErrorCode.INVALID_ARGUMENT and exc.field == "call.sip_code"
            outcomes[index] = "rejected"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.run)
            async with trio.open_nursery() as callers:
                for index in range(5):
                    callers.start_soon(add, index)
            nursery.cancel_scope.cancel()
    assert link.batches == [5]  # ready together, sent together
    assert sorted(outcomes.values()) == ["rejected", "stored", "stored", "stored", "stored"]
