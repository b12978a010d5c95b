"""Moving files into the archive and the quarantine: names kept, nothing overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cj_agent.files import move_into, quarantine


def test_move_keeps_the_name_and_creates_the_directory(tmp_path: Path) -> None:
    source = tmp_path / "a.wav"
    source.write_bytes(b"one")
    target = move_into(source, tmp_path / "archive" / "2026-03-02")
    assert target == tmp_path / "archive" / "2026-03-02" / "a.wav"
    assert target.read_bytes() == b"one" and not source.exists()


def test_a_different_file_of_the_same_name_is_never_overwritten(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a.cdr.json").write_text("first")
    (archive / "a.cdr.1.json").write_text("second")
    source = tmp_path / "a.cdr.json"
    source.write_text("third")
    target = move_into(source, archive)
    assert target.name == "a.cdr.2.json" and target.read_text() == "third"
    assert (archive / "a.cdr.json").read_text() == "first"
    assert (archive / "a.cdr.1.json").read_text() == "second"


def test_an_identical_file_already_there_is_not_duplicated(tmp_path: Path) -> None:
    # A move redone after a crash between placing the copy and removing the original.
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a.wav").write_bytes(b"same")
    source = tmp_path / "a.wav"
    source.write_bytes(b"same")
    assert move_into(source, archive) == archive / "a.wav"
    assert sorted(p.name for p in archive.iterdir()) == ["a.wav"] and not source.exists()


def test_names_without_an_extension_get_a_trailing_suffix(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "cdr").write_text("x")
    source = tmp_path / "cdr"
    source.write_text("y")
    assert move_into(source, archive).name == "cdr.1"


def test_quarantine_writes_the_reason_beside_the_file(tmp_path: Path) -> None:
    source = tmp_path / "bad.json"
    source.write_text("{")
    target = quarantine(source, tmp_path / "failed", "unparsable CDR: document: not JSON")
    assert target.read_text() == "{"
    reason = (tmp_path / "failed" / "bad.json.error").read_text()
    assert reason.startswith("unparsable CDR: document: not JSON\n")
    assert "quarantined at:" in reason
    assert sorted(p.name for p in (tmp_path / "failed").iterdir()) == ["bad.json", "bad.json.error"]


def test_move_across_filesystems_copies_then_removes(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    directory = shm / f"cj-agent-test-{os.getpid()}"
    try:
        source = directory / "a.wav"
        directory.mkdir()
        source.write_bytes(b"x" * 3_000_000)
        target = move_into(source, tmp_path / "archive")
        assert target.read_bytes() == b"x" * 3_000_000 and not source.exists()
        # No temporary file is left behind.
        assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == ["a.wav"]
    finally:
        for leftover in directory.glob("*"):
            leftover.unlink()
        directory.rmdir()
