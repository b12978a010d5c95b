"""Per-token limits on searches and downloads (issue 11, item 6), REST and gRPC.

A token over its rate or its concurrency is answered at once with 429 + Retry-After
(REST) or RESOURCE_EXHAUSTED + the `retry-after` trailer (gRPC), both transports
drawing on the same per-token budget; another token is not affected; refused
downloads are audited (aggregated). The sans-IO token bucket is tested with a fake
clock at the end.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from google.protobuf.timestamp_pb2 import Timestamp

from cj.config import DatabaseConfig
from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from cj_api.app import ApiEndpoints, serve
from cj_api.limits import Limit, LimitExceeded, TokenLimits, search_cost, slow_refusal
from tests.e2e.harness import eventually
from tests.factories import BASE_TIME
from tests.fixtures.api import ADMIN_TOKEN, READER_TOKEN, RunningApi, api_settings
from tests.hostile.test_downloads import PATH, audit_rows, stored_call

TIMEOUT_S = 60
SEARCH_BURST = 3
DOWNLOAD_BURST = 2


@pytest.fixture
async def api(database_config: DatabaseConfig, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """cj-api with tight limits; the buckets refill once per 1,000 s (never in a test)."""
    settings = api_settings(database_config, tmp_path)
    limits = {
        "search_concurrency_per_token": 2,
        "search_rate_per_token": 0.001,
        "search_burst_per_token": SEARCH_BURST,
        "download_concurrency_per_token": 1,
        "download_rate_per_token": 0.001,
        "download_burst_per_token": DOWNLOAD_BURST,
        "audit_flush_interval_s": 0.05,
        "limit_refusal_delay_s": 0.0,  # answered at once here; the delay is tested below
    }
    settings = replace(settings, api=replace(settings.api, **limits))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        endpoints: ApiEndpoints = await nursery.start(
            functools.partial(serve, settings, shutdown=shutdown)
        )
        yield RunningApi(endpoints, settings, tmp_path)
        shutdown.set()


def ts(moment: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_a_token_over_its_search_rate_gets_429_and_others_do_not(api: RunningApi) -> None:
    params = {"phone": "9161234567"}
    with trio.fail_after(TIMEOUT_S):
        async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
            reader = {"Authorization": f"Bearer {READER_TOKEN}"}
            answers = [
                await client.get("/api/v1/calls", params=params, headers=reader)
                for _ in range(SEARCH_BURST + 2)
            ]
            other = await client.get(
                "/api/v1/calls", params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        async with api.client(READER_TOKEN) as flooder, api.client(ADMIN_TOKEN) as admin:
            with pytest.raises(RpcError) as info:
                await flooder.search_by_interval(
                    pb.SearchByIntervalRequest(
                        start_time=ts(BASE_TIME), end_time=ts(BASE_TIME + timedelta(days=1))
                    )
                )
            fine = await admin.search_by_phone(pb.SearchByPhoneRequest(phone="9161234567"))
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * SEARCH_BURST + [429, 429]
    refused = answers[-1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert other.status_code == 200
    # gRPC draws on the same budget of the same token.
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1
    assert list(fine.calls) == []


async def test_a_token_over_its_download_limits_gets_429_and_is_audited(
    api: RunningApi,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid = await stored_call(api, 64 * 1024 * 1024)
        # One download in progress (its client reads no further) holds the only slot.
        async with (
            api.client(READER_TOKEN) as reader,
            reader.download_recording(str(call_uuid)) as parts,
        ):
            await anext(parts)
            async with httpx.AsyncClient(base_url=api.endpoints.rest_url) as client:
                headers = {"Authorization": f"Bearer {READER_TOKEN}"}
                at_once = await client.get(PATH.format(call_uuid), headers=headers)
                over_rate = await client.get(PATH.format(call_uuid), headers=headers)
                other = await client.head(
                    PATH.format(call_uuid), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )

        async def refusals() -> dict[str, int] | None:
            rows = await audit_rows(api, "actor = 'ops' AND minute IS NOT NULL")
            counts = {row["result"]: row["count"] for row in rows}
            return counts if len(counts) == 2 else None

        counted = await eventually(refusals, timeout_s=10, what="the refusals counted")
    assert at_once.status_code == 429 and "at once" in at_once.json()["error"]["message"]
    assert over_rate.status_code == 429 and int(over_rate.headers["Retry-After"]) >= 100
    assert other.status_code == 200
    assert counted == {"concurrency_limited": 1, "rate_limited": 1}


def test_token_bucket_refills_at_its_rate_and_caps_at_its_burst() -> None:
    now = [0.0]
    limits = TokenLimits("search", Limit(0, 2.0, 4), clock=lambda: now[0])
    for _ in range(4):
        limits.take("a")
    with pytest.raises(LimitExceeded) as info:
        limits.take("a")
    assert info.value.retry_after_s == pytest.approx(0.5)
    limits.take("b")  # another token has its own bucket
    now[0] = 0.5
    limits.take("a")  # one refilled
    now[0] = 100.0
    for _ in range(4):
        limits.take("a")  # refilled to the burst, not beyond
    with pytest.raises(LimitExceeded):
        limits.take("a")


def test_concurrency_is_held_for_the_block_and_overrides_apply() -> None:
    limits = TokenLimits(
        "download", Limit(1, 0, 1), overrides={"bulk": Limit(2, 0, 1)}, clock=lambda: 0.0
    )
    with limits.admit("a"):
        with pytest.raises(LimitExceeded) as info, limits.admit("a"):
            pass
        assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
        with limits.admit("bulk"), limits.admit("bulk"):
            assert limits.active("bulk") == 2
    with limits.admit("a"):  # released
        assert limits.active("a") == 1
    assert limits.active("a") == 0


def test_a_search_is_charged_by_the_rows_it_asks_for() -> None:
    limits = TokenLimits("search", Limit(0, 1.0, 20), clock=lambda: 0.0)
    assert search_cost(100) == 1.0 and search_cost(1) == 1.0 and search_cost(1000) == 10.0
    limits.take("a", search_cost(1000))
    limits.take("a", search_cost(1000))
    with pytest.raises(LimitExceeded) as info:
        limits.take("a", search_cost(1000))  # twenty spent: a big page waits 10 s
    assert info.value.retry_after_s == pytest.approx(10.0)
    huge = TokenLimits("search", Limit(0, 1.0, 5), clock=lambda: 0.0)
    huge.take("a", 50.0)  # more than the burst is charged as the burst, never impossible


async def test_a_refusal_is_answered_after_its_delay_never_past_its_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for retry_after, delay, waited in ((10.0, 1.0, 1.0), (0.25, 1.0, 0.25), (5.0, 0.0, 0.0)):
        began = trio.current_time()
        await slow_refusal(LimitExceeded("over", retry_after), delay)
        assert trio.current_time() - began == pytest.approx(waited)
