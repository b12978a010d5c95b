"""The calls repository against a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from cj.db import Database
from cj.db.calls import SearchError, SearchQuery, check_calls, get_call, search_calls
from cj.db.ingest import UpsertOutcome, upsert_call, upsert_calls
from cj.db.paging import PageTokenError
from cj.db.recordings import create_recording
from cj.model import Direction, RecordingStatus
from tests.db.support import run
from tests.factories import BASE_TIME, make_call


def uuids(page_records: list) -> list[uuid.UUID]:  # type: ignore[type-arg]
    return [r.call.uuid for r in page_records]


async def test_upsert_is_idempotent_and_detects_changes(db: Database) -> None:
    call = make_call()
    assert await run(db, lambda c: upsert_call(c, call)) is UpsertOutcome.INSERTED
    assert await run(db, lambda c: upsert_call(c, call)) is UpsertOutcome.UNCHANGED
    changed = make_call(call_uuid=call.uuid, caller_name="Renamed")
    assert await run(db, lambda c: upsert_call(c, changed)) is UpsertOutcome.UPDATED
    count = await run(db, lambda c: c.execute("SELECT count(*) AS n FROM calls").fetchone())
    assert count is not None and count["n"] == 1
    stored = await run(db, lambda c: get_call(c, call.uuid))
    assert stored is not None and stored.call.caller_name == "Renamed"
    assert stored.call == changed
    assert stored.call.raw == {"test": True}


async def test_batch_upsert_reports_each_outcome_in_order(db: Database) -> None:
    existing = make_call()
    await run(db, lambda c: upsert_call(c, existing))
    new = make_call()
    updated = make_call(call_uuid=existing.uuid, billsec=1)
    batch = [new, updated, new, make_call(call_uuid=new.uuid, billsec=2)]
    outcomes = await run(db, lambda c: upsert_calls(c, batch))
    assert outcomes == [
        UpsertOutcome.INSERTED,
        UpsertOutcome.UPDATED,
        UpsertOutcome.UNCHANGED,
        UpsertOutcome.UPDATED,
    ]
    stored = await run(db, lambda c: get_call(c, new.uuid))
    assert stored is not None and stored.call.billsec == 2


async def test_phone_suffix_search_ignores_formatting_and_trunk_prefix(db: Database) -> None:
    target = make_call(caller="+7 (926) 000-11-22")
    other = make_call(caller="+7 (926) 000-11-23")
    as_destination = make_call(caller="1004", destination="8 926 000 11 22")
    for call in (target, other, as_destination):
        await run(db, lambda c, call=call: upsert_call(c, call))
    for query in ("9260001122", "89260001122", "+7 926 000-11-22", "0001122"):
        page = await run(db, lambda c, q=query: search_calls(c, SearchQuery(phone=q)))
        assert set(uuids(page.records)) == {target.uuid, as_destination.uuid}, query
    exact = await run(db, lambda c: search_calls(c, SearchQuery(phone="79260001122", exact=True)))
    assert uuids(exact.records) == [target.uuid]
    none = await run(db, lambda c: search_calls(c, SearchQuery(phone="5550001122")))
    assert none.records == [] and none.next_page_token is None


async def test_interval_is_half_open(db: Database) -> None:
    calls = [make_call(started_at=BASE_TIME + timedelta(minutes=m)) for m in range(5)]
    for call in calls:
        await run(db, lambda c, call=call: upsert_call(c, call))
    query = SearchQuery(
        start=BASE_TIME + timedelta(minutes=1), end=BASE_TIME + timedelta(minutes=3)
    )
    page = await run(db, lambda c: search_calls(c, query))
    assert uuids(page.records) == [calls[2].uuid, calls[1].uuid]  # newest first, end excluded


async def test_filters_direction_and_recording(db: Database) -> None:
    inbound = make_call(direction=Direction.INBOUND)
    outbound = make_call(direction=Direction.OUTBOUND)
    for call in (inbound, outbound):
        await run(db, lambda c, call=call: upsert_call(c, call))
    await run(
        db,
        lambda c: create_recording(
            c, outbound.uuid, original_name="a.wav", size=3, sha256="a" * 64, storage="t", key="k"
        ),
    )
    page = await run(
        db,
        lambda c: search_calls(c, SearchQuery(phone="79161234567", direction=Direction.OUTBOUND)),
    )
    assert uuids(page.records) == [outbound.uuid]
    assert page.records[0].recording is not None
    assert page.records[0].recording.status is RecordingStatus.UPLOADED
    with_rec = await run(
        db, lambda c: search_calls(c, SearchQuery(phone="79161234567", has_recording=True))
    )
    assert uuids(with_rec.records) == [outbound.uuid]
    without = await run(
        db, lambda c: search_calls(c, SearchQuery(phone="79161234567", has_recording=False))
    )
    assert uuids(without.records) == [inbound.uuid]


async def test_pagination_is_stable_while_calls_arrive(db: Database) -> None:
    calls = [make_call(started_at=BASE_TIME + timedelta(seconds=s)) for s in range(25)]
    # Two calls at the same instant: the uuid breaks the tie.
    calls.append(make_call(started_at=BASE_TIME + timedelta(seconds=10)))
    await run(db, lambda c: upsert_calls(c, calls))
    expected = [c.uuid for c in sorted(calls, key=lambda c: (c.started_at, c.uuid), reverse=True)]
    seen: list[uuid.UUID] = []
    token = None
    pages = 0
    while True:
        query = SearchQuery(phone="9161234567", limit=7, page_token=token)
        page = await run(db, lambda c, q=query: search_calls(c, q))
        seen += uuids(page.records)
        pages += 1
        # New calls arrive between pages, newer and older than the cursor.
        newer = make_call(started_at=BASE_TIME + timedelta(hours=1, seconds=pages))
        await run(db, lambda c, n=newer: upsert_call(c, n))
        token = page.next_page_token
        if token is None:
            break
    assert pages == 4
    assert seen == expected  # nothing skipped, nothing repeated, newer arrivals not mixed in


async def test_page_token_errors(db: Database) -> None:
    await run(db, lambda c: upsert_calls(c, [make_call() for _ in range(3)]))
    page = await run(db, lambda c: search_calls(c, SearchQuery(phone="9161234567", limit=1)))
    assert page.next_page_token
    with pytest.raises(PageTokenError, match="different query"):
        SearchQuery(phone="000", page_token=page.next_page_token).cursor()
    for bad in ("garbage", "e30", "!!!!", "x" * 600):
        with pytest.raises(PageTokenError):
            SearchQuery(phone="9161234567", page_token=bad).cursor()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"phone": "no digits"}, "phone"),
        ({"start": BASE_TIME, "end": BASE_TIME}, "end"),
        ({"start": BASE_TIME + timedelta(1), "end": BASE_TIME}, "end"),
        ({"start": BASE_TIME.replace(tzinfo=None)}, "start"),
    ],
)
def test_invalid_queries_name_the_field(kwargs: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SearchError) as info:
        SearchQuery(**kwargs)
    assert info.value.field == field


async def test_injection_strings_are_plain_data(db: Database) -> None:
    hostile = "'; DROP TABLE calls; -- \\ % _ \" $1"
    call = make_call(caller=f"{hostile} 79161234567", caller_name=hostile, source=hostile[:10])
    await run(db, lambda c: upsert_call(c, call))
    stored = await run(db, lambda c: get_call(c, call.uuid))
    assert stored is not None and stored.call.caller_name == hostile
    page = await run(db, lambda c: search_calls(c, SearchQuery(phone=f"{hostile}9161234567")))
    assert uuids(page.records) == [call.uuid]
    count = await run(db, lambda c: c.execute("SELECT count(*) AS n FROM calls").fetchone())
    assert count is not None and count["n"] == 1


async def test_check_calls_reports_existence_and_recording_state(db: Database) -> None:
    with_recording, without = make_call(), make_call()
    await run(db, lambda c: upsert_calls(c, [with_recording, without]))
    await run(
        db,
        lambda c: create_recording(
            c,
            with_recording.uuid,
            original_name="a.wav",
            size=1,
            sha256="b" * 64,
            storage="t",
            key="k",
        ),
    )
    missing = uuid.uuid4()
    states = await run(db, lambda c: check_calls(c, [missing, without.uuid, with_recording.uuid]))
    assert [(s.uuid, s.exists, s.recording_status) for s in states] == [
        (missing, False, None),
        (without.uuid, True, None),
        (with_recording.uuid, True, RecordingStatus.UPLOADED),
    ]
    assert states[2].recording_sha256 == "b" * 64
