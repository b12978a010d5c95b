"""`cj purge --cdr-older-than`: whole months of CDRs dropped, held calls kept."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from cj.cdr_retention import CdrAge
from cj.cli import cli
from cj.db.holds import add_hold
from cj.db.ingest import upsert_call
from cj.db.recordings import claim_for_encoding, create_recording
from tests.factories import make_call
from tests.test_retention import NOW, _env, _recording


def _partition_of(url: str, call_uuid: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM calls WHERE uuid = %s", (call_uuid,)
        ).fetchone()
    return row[0] if row else None


def _partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'calls'::regclass"
        ).fetchall()
    return {row[0] for row in rows}


def _encoding(url: str, days_ago: int) -> str:
    """An old call whose recording is still being encoded (its WAV not deleted yet)."""
    call = make_call(started_at=NOW - timedelta(days=days_ago))
    with psycopg.connect(url, row_factory=dict_row) as conn:
        upsert_call(conn, call)  # type: ignore[arg-type]
        create_recording(
            conn,  # type: ignore[arg-type]
            call.uuid,
            original_name="a.wav",
            size=1,
            sha256=hashlib.sha256(b"x").hexdigest(),
            storage="temp",
            key=f"wav/{call.uuid}.wav",
        )
        claim_for_encoding(conn, call.uuid, 60)  # type: ignore[arg-type]
    return str(call.uuid)


def test_old_months_are_dropped_and_held_calls_stay(database_url: str, tmp_path: Path) -> None:
    url = database_url
    gone, gone_files = _recording(url, tmp_path, days_ago=900, stored=True)
    held, held_files = _recording(url, tmp_path, days_ago=990, stored=True)
    beside_held, beside_files = _recording(url, tmp_path, days_ago=990, stored=False)
    encoding = _encoding(url, days_ago=1100)
    recent, recent_files = _recording(url, tmp_path, days_ago=10, stored=True)
    odd = make_call(started_at=datetime(1970, 1, 2, tzinfo=UTC))
    with psycopg.connect(url, row_factory=dict_row) as conn:
        upsert_call(conn, odd)  # type: ignore[arg-type]
        add_hold(conn, uuid.UUID(held), reason="case 7", actor="test")  # type: ignore[arg-type]
    gone_month, held_month = _partition_of(url, gone), _partition_of(url, held)
    assert gone_month and held_month and gone_month != held_month
    assert _partition_of(url, str(odd.uuid)) == "calls_default"
    env = _env(url, tmp_path)
    runner = CliRunner()

    dry = runner.invoke(cli, ["purge", "--cdr-older-than", "24m", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"{gone_month}: would delete 1 call(s)" in dry.output
    assert _partition_of(url, gone) == gone_month

    result = runner.invoke(cli, ["purge", "--cdr-older-than", "24m"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{gone_month}: deleted 1 call(s) (partition dropped)" in result.output
    assert f"{held_month}: deleted 1 call(s), kept 1" in result.output
    assert gone_month not in _partitions(url) and held_month in _partitions(url)
    # The held call and the one still encoding keep everything; the others lose it all.
    assert _partition_of(url, held) == held_month and all(f.exists() for f in held_files)
    assert _partition_of(url, encoding) is not None
    assert _partition_of(url, recent) is not None and all(f.exists() for f in recent_files)
    for lost in (gone, beside_held, str(odd.uuid)):
        assert _partition_of(url, lost) is None
    assert not any(f.exists() for f in gone_files + beside_files)
    with psycopg.connect(url) as conn:
        recordings = dict(conn.execute("SELECT call_uuid::text, status FROM recordings"))
        keys = {row[0] for row in conn.execute("SELECT uuid::text FROM call_keys")}
        audited = conn.execute(
            "SELECT result, detail->>'partition' FROM audit_log WHERE action = 'cdr_purge'"
            " ORDER BY id"
        ).fetchall()
    assert recordings == {held: "stored", encoding: "encoding", recent: "stored"}
    assert keys == {held, encoding, recent}
    assert ("dropped", gone_month) in audited and ("deleted", held_month) in audited

    again = runner.invoke(cli, ["purge", "--cdr-older-than", "24m"], env=env)
    assert again.exit_code == 0, again.output
    assert f"{held_month}: deleted 0 call(s), kept 1" in again.output


def test_cdr_age_rounds_down_to_whole_months() -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert CdrAge.parse("24m").cutoff(now) == datetime(2024, 3, 1, tzinfo=UTC)
    assert CdrAge.parse("2y") == CdrAge(months=24)
    assert CdrAge.parse("400d").cutoff(now) == datetime(2025, 2, 1, tzinfo=UTC)
    for bad in ("0m", "12", "1w", ""):
        with pytest.raises(ValueError, match="days, months or years"):
            CdrAge.parse(bad)


def test_a_bad_age_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["purge", "--cdr-older-than", "soon"])
    assert result.exit_code == 2 and "--cdr-older-than" in result.output
