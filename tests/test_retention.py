"""`cj purge`: audio past retention is deleted, metadata kept, downloads then GONE."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from click.testing import CliRunner
from psycopg.rows import dict_row

from cj.cli import cli
from cj.db.calls import upsert_call
from cj.db.recordings import claim_for_encoding, create_recording, mark_failed, mark_stored
from tests.factories import make_call

NOW = datetime.now(UTC)


def _recording(url: str, root: Path, *, days_ago: int, stored: bool) -> tuple[str, list[Path]]:
    call = make_call(started_at=NOW - timedelta(days=days_ago))
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
