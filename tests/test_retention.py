"""`cj purge`: audio past retention is deleted, metadata kept, downloads then GONE."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from click.testing import CliRunner
from psycopg.rows import dict_row

from cj.cli import cli
from cj.db.holds import add_hold
from cj.db.ingest import upsert_call
from cj.db.recordings import (
    claim_for_encoding,
    create_recording,
    mark_failed,
    mark_purged,
    mark_stored,
)
from tests.factories import make_call

NOW = datetime.now(UTC)


def _recording(
    url: str, root: Path, *, days_ago: int, stored: bool, source: str = "pbx-test"
) -> tuple[str, list[Path]]:
    call = make_call(started_at=NOW - timedelta(days=days_ago), source=source)
    wav_key, mp3_key = f"wav/{call.uuid}.wav", f"mp3/{call.uuid}.mp3"
    files = [root / "temp" / wav_key]
    files[0].parent.mkdir(parents=True, exist_ok=True)
    files[0].write_bytes(b"RIFF wav")
    with psycopg.connect(url, row_factory=dict_row) as conn:
        upsert_call(conn, call)  # type: ignore[arg-type]
        create_recording(
            conn,  # type: ignore[arg-type]
            call.uuid,
            original_name="a.wav",
            size=8,
            sha256=hashlib.sha256(b"RIFF wav").hexdigest(),
            storage="temp",
            key=wav_key,
        )
        claim_for_encoding(conn, call.uuid, 60)  # type: ignore[arg-type]
        if stored:
            mp3 = root / "recordings" / mp3_key
            mp3.parent.mkdir(parents=True, exist_ok=True)
            mp3.write_bytes(b"ID3 mp3")
            files.append(mp3)
            mark_stored(
                conn,  # type: ignore[arg-type]
                call.uuid,
                storage="recordings",
                key=mp3_key,
                size=7,
                sha256="d" * 64,
                content_type="audio/mpeg",
                duration_ms=1000,
                sample_rate=8000,
                channels=1,
            )
        else:
            mark_failed(conn, call.uuid, "undecodable")  # type: ignore[arg-type]
    return str(call.uuid), files


def test_purge_deletes_old_audio_and_keeps_metadata(database_url: str, tmp_path: Path) -> None:
    old_stored, old_stored_files = _recording(database_url, tmp_path, days_ago=400, stored=True)
    old_failed, old_failed_files = _recording(database_url, tmp_path, days_ago=500, stored=False)
    recent, recent_files = _recording(database_url, tmp_path, days_ago=10, stored=True)
    env = {
        "CJ_DATABASE_URL": database_url,
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
    }
    runner = CliRunner()
    dry = runner.invoke(cli, ["purge", "--older-than-days", "365", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would purge at least 2 recording(s)" in dry.output
    assert all(f.exists() for f in old_stored_files + old_failed_files)
    result = runner.invoke(cli, ["purge", "--older-than-days", "365"], env=env)
    assert result.exit_code == 0, result.output
    assert "purged 2 recording(s)" in result.output and "(3 stored object(s))" in result.output
    assert not any(f.exists() for f in old_stored_files + old_failed_files)
    assert all(f.exists() for f in recent_files)
    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute("SELECT call_uuid::text, status FROM recordings").fetchall())
        calls = conn.execute("SELECT count(*) FROM calls").fetchone()
    assert rows == {old_stored: "purged", old_failed: "purged", recent: "stored"}
    assert calls == (3,)
    again = runner.invoke(cli, ["purge", "--older-than-days", "365"], env=env)
    assert "purged 0 recording(s)" in again.output


def test_purge_needs_a_positive_age() -> None:
    result = CliRunner().invoke(cli, ["purge", "--older-than-days", "0"])
    assert result.exit_code == 2 and "older-than-days" in result.output


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CJ_DATABASE_URL": database_url,
        "CJ_STORAGE_BACKENDS_TEMP_PATH": str(tmp_path / "temp"),
        "CJ_STORAGE_BACKENDS_RECORDINGS_PATH": str(tmp_path / "recordings"),
        **extra,
    }


def _statuses(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT call_uuid::text, status FROM recordings").fetchall())


def _audit(database_url: str, call_uuid: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT action, result, detail->>'reason' FROM audit_log WHERE call_uuid = %s "
            "ORDER BY id",
            (call_uuid,),
        ).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_each_source_keeps_its_own_retention(database_url: str, tmp_path: Path) -> None:
    legal, legal_files = _recording(
        database_url, tmp_path, days_ago=400, stored=True, source="pbx-legal"
    )
    short, _ = _recording(database_url, tmp_path, days_ago=40, stored=True, source="pbx-short")
    other, _ = _recording(database_url, tmp_path, days_ago=400, stored=True)
    kept, _ = _recording(database_url, tmp_path, days_ago=40, stored=True)
    env = _env(
        database_url,
        tmp_path,
        CJ_RETENTION_RECORDINGS_DAYS="365",
        CJ_RETENTION_BY_SOURCE='{"pbx-legal": 3650, "pbx-short": 30}',
    )
    result = CliRunner().invoke(cli, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "source pbx-legal (3650 days): purged 0 recording(s)" in result.output
    assert "source pbx-short (30 days): purged 1 recording(s)" in result.output
    assert "every other source (365 days): purged 1 recording(s)" in result.output
    assert _statuses(database_url) == {
        legal: "stored",
        short: "purged",
        other: "purged",
        kept: "stored",
    }
    assert all(f.exists() for f in legal_files)
    assert _audit(database_url, short) == [
        ("purge", "purged", "retention: source pbx-short (30 days)")
    ]


def test_held_calls_are_never_purged_and_the_report_says_why(
    database_url: str, tmp_path: Path
) -> None:
    held, held_files = _recording(database_url, tmp_path, days_ago=400, stored=True)
    free, _ = _recording(database_url, tmp_path, days_ago=400, stored=False)
    env = _env(database_url, tmp_path)
    runner = CliRunner()
    added = runner.invoke(
        cli, ["hold", "add", held, "--reason", "case 2026-17 (court order)"], env=env
    )
    assert added.exit_code == 0 and f"{held}: held" in added.output
    again = runner.invoke(cli, ["hold", "add", held, "--reason", "twice"], env=env)
    assert f"{held}: already held" in again.output
    listed = runner.invoke(cli, ["hold", "list", "--json"], env=env)
    (entry,) = [json.loads(line) for line in listed.output.splitlines()]
    assert entry["call_uuid"] == held and entry["reason"] == "case 2026-17 (court order)"
    assert entry["held_by"].startswith("cli:")
    purged = runner.invoke(cli, ["purge", "--older-than-days", "365"], env=env)
    assert purged.exit_code == 0, purged.output
    assert "purged 1 recording(s)" in purged.output
    assert "skipped 1 under legal hold" in purged.output
    assert f"{held}  case 2026-17 (court order)" in purged.output
    assert _statuses(database_url) == {held: "stored", free: "purged"}
    assert all(f.exists() for f in held_files)
    no_reason = runner.invoke(cli, ["hold", "remove", held, "--reason", " "], env=env)
    assert no_reason.exit_code == 2 and "reason" in no_reason.output
    released = runner.invoke(cli, ["hold", "remove", held, "--reason", "case closed"], env=env)
    assert f"{held}: released" in released.output
    runner.invoke(cli, ["purge", "--older-than-days", "365"], env=env)
    assert _statuses(database_url)[held] == "purged"
    assert [action for action, _, _ in _audit(database_url, held)] == [
        "hold_add",
        "hold_add",
        "hold_remove",
        "purge",
    ]


def test_a_purge_interrupted_after_marking_is_finished_by_the_next_run(
    database_url: str, tmp_path: Path
) -> None:
    call_uuid, files = _recording(database_url, tmp_path, days_ago=400, stored=True)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        marked = mark_purged(conn, uuid.UUID(call_uuid), actor="test", reason="crash next")  # type: ignore[arg-type]
    assert marked is not None and all(f.exists() for f in files)  # the crash: nothing deleted
    result = CliRunner().invoke(
        cli, ["purge", "--older-than-days", "365"], env=_env(database_url, tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert "finished 1 purge(s) an earlier run left half done" in result.output
    assert not any(f.exists() for f in files)
    with psycopg.connect(database_url) as conn:
        keys = conn.execute(
            "SELECT storage, key, original_key FROM recordings WHERE call_uuid = %s", (call_uuid,)
        ).fetchone()
    assert keys == (None, None, None)


def test_a_held_call_cannot_be_marked_purged(database_url: str, tmp_path: Path) -> None:
    call_uuid, _ = _recording(database_url, tmp_path, days_ago=400, stored=True)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        assert add_hold(conn, uuid.UUID(call_uuid), reason="audit", actor="test")  # type: ignore[arg-type]
        conn.commit()
        assert mark_purged(conn, uuid.UUID(call_uuid), actor="test", reason="x") is None  # type: ignore[arg-type]


def test_purge_without_any_retention_says_what_to_set(database_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["purge"], env=_env(database_url, tmp_path))
    assert result.exit_code == 2 and "retention.recordings_days" in result.output
