"""Ownership and sticky privacy in SQL (cj.db.calls, cj.db.privacy, sql/0002)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cj.db.calls import check_calls
from cj.db.ingest import ForeignCall, UpsertOutcome, upsert_call, upsert_calls
from cj.db.privacy import set_call_privacy
from tests.factories import make_call

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


def privacy_rows(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT actor, result, detail FROM audit_log WHERE action = 'privacy' ORDER BY id"
    ).fetchall()


def test_a_foreign_call_is_left_alone_and_told_apart_from_unchanged(conn: Conn) -> None:
    call = make_call(source="pbx-1", private=True)
    assert upsert_call(conn, call, allowed=["pbx-1"]) is UpsertOutcome.INSERTED
    assert upsert_call(conn, call, allowed=["pbx-1"]) is UpsertOutcome.UNCHANGED
    forged = replace(call, caller_name="forged", private=False)
    assert upsert_call(conn, forged, allowed=["pbx-2"]) == ForeignCall("pbx-1")
    results = upsert_calls(conn, [forged, make_call(source="pbx-2")], allowed=["pbx-2"])
    assert results == [ForeignCall("pbx-1"), UpsertOutcome.INSERTED]
    row = conn.execute("SELECT caller_name, private FROM calls WHERE uuid = %s", (call.uuid,))
    assert row.fetchone() == {"caller_name": "", "private": True}


def test_private_is_sticky_and_each_flip_is_audited(conn: Conn) -> None:
    call = make_call(source="pbx-1")
    upsert_call(conn, call, actor="pbx-1")
    assert upsert_call(conn, replace(call, private=True), actor="pbx-1") is UpsertOutcome.UPDATED
    assert upsert_call(conn, call, actor="pbx-1") is UpsertOutcome.UNCHANGED  # stays private
    (row,) = privacy_rows(conn)
    assert (row["actor"], row["result"], row["detail"]["reason"]) == ("pbx-1", "private", "ingest")
    change = set_call_privacy(conn, call.uuid, private=False, actor="boss", reason=" consent ")
    assert change is not None and change.changed and not change.private
    assert set_call_privacy(conn, call.uuid, private=False, actor="boss", reason="again")
    assert [(r["actor"], r["result"], r["detail"]["reason"]) for r in privacy_rows(conn)] == [
        ("pbx-1", "private", "ingest"),
        ("boss", "public", "consent"),
        ("boss", "unchanged", "again"),
    ]
    with pytest.raises(ValueError, match="reason"):
        set_call_privacy(conn, call.uuid, private=True, actor="boss", reason=" ")


def test_check_calls_sees_only_the_given_sources(conn: Conn) -> None:
    mine, theirs = make_call(source="pbx-1"), make_call(source="pbx-2")
    upsert_calls(conn, [mine, theirs])
    states = check_calls(conn, [mine.uuid, theirs.uuid], sources=["pbx-1"])
    assert [state.exists for state in states] == [True, False]
    assert [s.exists for s in check_calls(conn, [mine.uuid, theirs.uuid])] == [True, True]


def test_an_insert_committed_while_we_wait_is_still_foreign(database_url: str) -> None:
    """The statement's snapshot predates the other source's row (we waited on its
    lock): the row is read again, and the call is foreign, not "unchanged"."""
    call = make_call(source="pbx-2")
    result: list[object] = []
    with (
        psycopg.connect(database_url, row_factory=dict_row) as other,
        psycopg.connect(database_url, row_factory=dict_row) as mine,
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as watcher,
    ):
        upsert_call(other, call)  # not committed yet
        attempt = replace(call, source="pbx-1", caller_name="forged")
        thread = threading.Thread(
            target=lambda: result.append(upsert_call(mine, attempt, allowed=["pbx-1"]))
        )
        thread.start()
        deadline = time.monotonic() + 10
        waiting = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        while not watcher.execute(waiting, (mine.info.backend_pid,)).fetchone():
            assert time.monotonic() < deadline, "the upsert never waited for the other insert"
        other.commit()
        thread.join(10)
        mine.commit()
    assert result == [ForeignCall("pbx-2")]
