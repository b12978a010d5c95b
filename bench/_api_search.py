"""bench/api.py's search figures: each API request beside the raw SQL it runs and the
empty route of its stack, query by query in the same run (so both see the same noise).

For every query, in turn: the raw SQL of each shape (`bench.search.time_raw_sql`: the
same statement and parameters on a plain psycopg pool with the API's settings), then
the REST request, then the gRPC one. Fixed cost of a request = its p50 minus the p50 of
its raw SQL, for the phone search (a few rows, so little to encode); held to the p50
of an empty route on the same stack (`bench._baseline`).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.search import (
    YEAR_SECONDS,
    YEAR_START,
    percentile,
    raw_pool,
    time_raw_sql,
)
from cj.db.calls import SearchQuery, search_statement
from cj.db.wire import json_statement, rows_statement
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, open_channel

STATEMENTS = {"rows": search_statement, "json": json_statement, "pb": rows_statement}
WARM_UP = 100


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _timestamp(moment: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


async def _time(call: Callable[[], Awaitable[Any]]) -> float:
    began = time.perf_counter()
    await call()
    return (time.perf_counter() - began) * 1000


def _p(timings: list[float]) -> tuple[float, float]:
    return round(statistics.median(timings), 3), round(percentile(timings, 99), 3)


async def measure_searches(
    url: str,
    grpc_port: int,
    rest_port: int,
    baseline_ports: tuple[int, int],
    people: list[str],
    token: str,
    queries: int,
    api_sql: str,
) -> dict[str, float]:
    """Figures keyed `{kind}_{what}_p50_ms|p99_ms` and the ratios (`*_over_*`).

    `api_sql` names the shape of SQL the API under test runs for REST and gRPC: `wire`
    (this branch: json and pb) or `rows` (before cj.db.wire: both ran `search_calls`).
    """
    rng = random.Random(13)
    kinds: dict[str, list[SearchQuery]] = {
        "phone": [SearchQuery(phone=rng.choice(people)[1:], limit=100) for _ in range(queries)],
        "interval": [],
    }
    for _ in range(queries):
        start = YEAR_START + timedelta(seconds=rng.randrange(YEAR_SECONDS - 3600))
        kinds["interval"].append(
            SearchQuery(start=start, end=start + timedelta(hours=1), limit=100)
        )
    rest_sql, grpc_sql = ("json", "pb") if api_sql == "wire" else ("rows", "rows")
    figures: dict[str, float] = {}
    pool = raw_pool(url, 16)  # cj-api's pool size in bench/api.py
    headers = {"authorization": f"Bearer {token}"}
    base_rest, base_grpc = baseline_ports
    try:
        async with (
            open_channel(f"127.0.0.1:{grpc_port}", token=token, default_timeout_s=60) as channel,
            open_channel(f"127.0.0.1:{base_grpc}", token=token, default_timeout_s=60) as empty,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}", headers=headers) as http,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{base_rest}") as empty_http,
        ):
            client, empty_client = CallJournalClient(channel), CallJournalClient(empty)

            # The empty routes and cj-api's /healthz, interleaved.
            timings: dict[str, list[float]] = {"empty_rest": [], "empty_grpc": [], "healthz": []}
            for index in range(WARM_UP + queries):
                empty_rest = await _time(lambda: empty_http.get("/empty"))
                empty_grpc = await _time(lambda: empty_client.get_call(""))
                healthz = await _time(lambda: http.get("/healthz"))
                if index >= WARM_UP:
                    timings["empty_rest"].append(empty_rest)
                    timings["empty_grpc"].append(empty_grpc)
                    timings["healthz"].append(healthz)
            for name, values in timings.items():
                figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = _p(values)

            for kind, batch in kinds.items():
                warm = batch[:WARM_UP]
                series: dict[str, list[float]] = {
                    name: [] for name in ("raw_rows", "raw_json", "raw_pb", "rest", "grpc")
                }
                for index, query in enumerate(warm + batch):
                    raw = {
                        shape: time_raw_sql(pool, [statement(query)])[0]
                        for shape, statement in STATEMENTS.items()
                    }
                    rest = await _time(lambda q=query: _rest(http, q))  # type: ignore[misc]
                    grpc = await _time(lambda q=query: _grpc(client, q))  # type: ignore[misc]
                    if index < WARM_UP:
                        continue
                    for shape, value in raw.items():
                        series[f"raw_{shape}"].append(value)
                    series["rest"].append(rest)
                    series["grpc"].append(grpc)
                for name, values in series.items():
                    figures[f"{kind}_{name}_p50_ms"], figures[f"{kind}_{name}_p99_ms"] = _p(values)
                for proto, shape in (("rest", rest_sql), ("grpc", grpc_sql)):
                    for stat in ("p50", "p99"):
                        figures[f"{kind}_{proto}_over_raw_{stat}"] = round(
                            figures[f"{kind}_{proto}_{stat}_ms"]
                            / figures[f"{kind}_raw_{shape}_{stat}_ms"],
                            2,
                        )
            for proto, shape in (("rest", rest_sql), ("grpc", grpc_sql)):
                fixed = figures[f"phone_{proto}_p50_ms"] - figures[f"phone_raw_{shape}_p50_ms"]
                figures[f"{proto}_fixed_cost_ms"] = round(fixed, 3)
                figures[f"{proto}_fixed_cost_over_empty"] = round(
                    fixed / figures[f"empty_{proto}_p50_ms"], 2
                )
            figures["healthz_over_empty_rest"] = round(
                figures["healthz_p50_ms"] / figures["empty_rest_p50_ms"], 2
            )
    finally:
        pool.close()
    _print(figures, rest_sql, grpc_sql)
    return figures


async def _rest(http: httpx.AsyncClient, query: SearchQuery) -> None:
    if query.phone is not None:
        params = {"phone": query.phone, "limit": str(query.limit)}
    else:
        assert query.start is not None and query.end is not None
        params = {"from": _stamp(query.start), "to": _stamp(query.end), "limit": str(query.limit)}
    (await http.get("/api/v1/calls", params=params)).raise_for_status()


async def _grpc(client: CallJournalClient, query: SearchQuery) -> None:
    if query.phone is not None:
        await client.search_by_phone(pb.SearchByPhoneRequest(phone=query.phone, limit=query.limit))
    else:
        assert query.start is not None and query.end is not None
        await client.search_by_interval(
            pb.SearchByIntervalRequest(
                start_time=_timestamp(query.start),
                end_time=_timestamp(query.end),
                limit=query.limit,
            )
        )


def _print(figures: dict[str, float], rest_sql: str, grpc_sql: str) -> None:
    def pair(name: str) -> str:
        return f"p50 {figures[f'{name}_p50_ms']:6.2f} ms, p99 {figures[f'{name}_p99_ms']:6.2f} ms"

    print(f"empty route, REST (quart-trio/hypercorn):  {pair('empty_rest')}")
    print(f"empty method, gRPC (purerpc):              {pair('empty_grpc')}")
    print(
        f"GET /healthz:                              {pair('healthz')}"
        f"  ({figures['healthz_over_empty_rest']:.2f}× empty)"
    )
    for kind in ("interval", "phone"):
        for shape in ("rows", "json", "pb"):
            print(f"{kind:>8} search, raw SQL ({shape:>4}):     {pair(f'{kind}_raw_{shape}')}")
        for proto, shape in (("rest", rest_sql), ("grpc", grpc_sql)):
            print(
                f"{kind:>8} search, {proto:>4}:               {pair(f'{kind}_{proto}')}"
                f"  ({figures[f'{kind}_{proto}_over_raw_p50']:.2f}× raw {shape} p50, "
                f"{figures[f'{kind}_{proto}_over_raw_p99']:.2f}× p99)"
            )
    for proto in ("rest", "grpc"):
        print(
            f"fixed cost of a request, {proto:>4}: {figures[f'{proto}_fixed_cost_ms']:.2f} ms "
            f"({figures[f'{proto}_fixed_cost_over_empty']:.2f}× the empty route)"
        )
