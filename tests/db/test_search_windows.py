"""Windowed searches (cj.db.windows) answer exactly what one unwindowed query does.

Calls of one number and extension are placed on each window's edges (a microsecond
either side of the month cuts), ahead of now (a month ahead, years ahead in the default
partition), before 2000 (the default) and scattered over three years; every search is
paged to its end with a range of limits, windowed and not, through the three fetchers:
same calls, same bytes, same page tokens.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import trio

from cj.config import DatabaseConfig
from cj.db import Connection, Database, open_database, windows
from cj.db.calls import SearchQuery, search_calls
from cj.db.ingest import upsert_calls
from cj.db.paging import Cursor, encode_token
from cj.db.windows import ALL_TIME, _months_back, collect, search_windows
from cj.db.wire import search_json, search_rows
from cj.model import Direction
from tests.factories import make_call

NUMBER = "79160000001"
STEPS = (1, 3, 12)  # the test's calls sit on these cuts; the schedules below are tried
MICRO = timedelta(microseconds=1)


def _times(now: datetime) -> list[datetime]:
    rng = random.Random(5)
    cuts = [_months_back(now, months) for months in STEPS]
    times = [at + delta for at in cuts for delta in (-MICRO, timedelta(0), MICRO)]
    times += [cuts[0]] * 3  # ties on started_at: the uuid orders them
    times += [now + timedelta(days=40), now + timedelta(days=5 * 365)]
    times += [datetime(1995, 3, 1, tzinfo=UTC), datetime(1899, 12, 31, tzinfo=UTC)]
    times += [now - timedelta(seconds=rng.randrange(3 * 365 * 86400)) for _ in range(30)]
    return times


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    now = datetime.now(UTC)
    calls = []
    for index, at in enumerate(_times(now)):
        calls.append(
            make_call(
                caller=NUMBER if index % 3 else "74950000002",
                destination="84957001020" if index % 3 else NUMBER,
                started_at=at,
                direction=Direction.INBOUND if index % 2 else Direction.OUTBOUND,
                caller_extension="dan" if index % 4 == 0 else "",
            )
        )
    # Noise: other numbers, in the same months.
    calls += [
        make_call(caller="74990000003", started_at=now - timedelta(days=d))
        for d in range(0, 900, 45)
    ]
    async with open_database(database_config) as database:
        with trio.fail_after(30):
            await database.run(lambda conn: upsert_calls(conn, calls))
        yield database


def _page(conn: Connection, query: SearchQuery, windowed: bool) -> tuple[Any, ...]:
    records = search_calls(conn, query, windowed=windowed)
    body = search_json(conn, query, windowed=windowed)
    rows = search_rows(conn, query, windowed=windowed)
    assert records.next_page_token == body.next_page_token == rows.next_page_token
    return (
        [r.call.uuid for r in records.records],
        records.next_page_token,
        body.body,
        rows.rows,
    )


def _all_pages(conn: Connection, query: SearchQuery, windowed: bool) -> list[tuple[Any, ...]]:
    pages = []
    token: str | None = None
    for _ in range(200):
        page = _page(conn, SearchQuery(**{**query.__dict__, "page_token": token}), windowed)
        pages.append(page)
        token = page[1]
        if token is None:
            return pages
    raise AssertionError("the pages never ended")


def _queries(now: datetime) -> list[SearchQuery]:
    cuts = [_months_back(now, months) for months in STEPS]
    return [
        SearchQuery(phone="0000001"),
        SearchQuery(phone="+79160000001", exact=True),
        SearchQuery(phone="dan"),
        SearchQuery(),
        SearchQuery(direction=Direction.INBOUND),
        SearchQuery(phone="0000001", start=cuts[1]),
        SearchQuery(phone="0000001", start=cuts[2] - MICRO, end=cuts[0] + MICRO),
        SearchQuery(phone="0000001", end=cuts[1]),
        SearchQuery(phone="0000001", end=datetime(2000, 1, 1, tzinfo=UTC)),
        SearchQuery(phone="0000001", start=now + timedelta(days=1)),
    ]


@pytest.fixture(params=[(1,), (1, 3, 12)], ids=["two-windows", "four-windows"])
def steps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    monkeypatch.setattr(windows, "STEPS", request.param)
    return request.param  # type: ignore[no-any-return]


async def test_windowed_pages_equal_the_single_query(db: Database, steps: Any) -> None:
    now = datetime.now(UTC)
    checked = 0
    for base in _queries(now):
        for limit in (1, 2, 3, 4, 5, 7, 11, 40, 1000):
            query = SearchQuery(**{**base.__dict__, "limit": limit})
            with trio.fail_after(30):
                single = await db.run(partial(_all_pages, query=query, windowed=False))
                windowed = await db.run(partial(_all_pages, query=query, windowed=True))
            assert windowed == single, (base, limit)
            checked += len(single)
    assert checked > 100


async def test_cursors_in_every_window(db: Database, steps: Any) -> None:
    """A page token naming any time (each cut, a microsecond off, ahead, before 2000)."""
    now = datetime.now(UTC)
    query = SearchQuery(phone="0000001", limit=3)
    for at in [*_times(now)[:18], now, now + timedelta(days=3650)]:
        for edge in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)):
            token = encode_token(Cursor(at, edge), query.fingerprint())
            later = SearchQuery(phone="0000001", limit=3, page_token=token)
            with trio.fail_after(30):
                single = await db.run(partial(_all_pages, query=later, windowed=False))
                windowed = await db.run(partial(_all_pages, query=later, windowed=True))
            assert windowed == single, at


def test_windows_cover_all_time_newest_first() -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert search_windows(SearchQuery(phone="1"), now) == [
        (datetime(2026, 2, 1, tzinfo=UTC), None),
        (None, datetime(2026, 2, 1, tzinfo=UTC)),
    ]
    cuts = search_windows(SearchQuery(phone="1"), now, STEPS)
    assert cuts == [
        (datetime(2026, 2, 1, tzinfo=UTC), None),
        (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)),
        (None, datetime(2025, 3, 1, tzinfo=UTC)),
    ]
    # A narrow interval: one window; a start cuts the older ones off.
    narrow = SearchQuery(phone="1", start=now - timedelta(days=20))
    assert search_windows(narrow, now, STEPS) == [ALL_TIME]
    wide = SearchQuery(phone="1", start=datetime(2025, 12, 1, tzinfo=UTC))
    assert search_windows(wide, now, STEPS) == [*cuts[:1], (None, datetime(2026, 2, 1, tzinfo=UTC))]
    # The earliest of end, cursor and now anchors them.
    ended = SearchQuery(phone="1", end=datetime(2020, 7, 4, tzinfo=UTC))
    assert search_windows(ended, now, STEPS)[0] == (datetime(2020, 6, 1, tzinfo=UTC), None)
    paged = SearchQuery(
        phone="1",
        page_token=encode_token(
            Cursor(datetime(2019, 1, 9, tzinfo=UTC), uuid.UUID(int=1)),
            SearchQuery(phone="1").fingerprint(),
        ),
    )
    assert search_windows(paged, now, STEPS)[0] == (datetime(2018, 12, 1, tzinfo=UTC), None)


def test_collect_stops_once_a_page_and_one_are_in() -> None:
    now = datetime(2026, 3, 15, tzinfo=UTC)
    asked: list[int] = []

    def run(window: Any, limit: int) -> list[int]:
        asked.append(limit)
        return list(range(min(limit, 3)))

    assert len(collect(SearchQuery(limit=4), run, now=now)) == 5
    assert asked == [5, 2]
    asked.clear()
    assert len(collect(SearchQuery(limit=4), run, windowed=False, now=now)) == 3
    assert asked == [5]
