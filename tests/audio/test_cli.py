"""`cj-encoder encode IN.wav OUT.mp3`: in process (CliRunner) and as a real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cj_encoder.__main__ import cli
from tests.audio.helpers import chirp, decode_ffmpeg, write_wav


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "call.wav", chirp(8000, 1.5), 8000, "ULAW")


def test_encode_prints_a_one_line_summary(tmp_path: Path, wav: Path) -> None:
    dst = tmp_path / "call.mp3"
    result = CliRunner().invoke(cli, ["encode", str(wav), str(dst)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    size = dst.stat().st_size
    assert lines[0] == (
        f"{dst}: 1.500 s, 8000 Hz, 1 → 2 channels, 32 kbps, {size} bytes, from ULAW, intact"
    )
    assert decode_ffmpeg(dst).channels == 2


def test_encode_options_and_warnings(tmp_path: Path, wav: Path) -> None:
    dst = tmp_path / "call.mp3"
    result = CliRunner().invoke(
        cli, ["encode", str(wav), str(dst), "--bitrate", "128", "--quality", "2"]
    )
    assert result.exit_code == 0, result.output
    assert ", 64 kbps, " in result.stdout
    assert result.stdout.rstrip().endswith(
        "intact; warnings: 128 kbps is not available at 8000 Hz (MPEG-2.5: 8–64 kbps); used 64 kbps"
    )


def test_encode_reports_recovery(tmp_path: Path, wav: Path) -> None:
    wav.write_bytes(wav.read_bytes()[:-3000])
    result = CliRunner().invoke(cli, ["encode", str(wav), str(tmp_path / "out.mp3")])
    assert result.exit_code == 0, result.output
    assert ", recovered; warnings: file is truncated:" in result.stdout


def test_undecodable_input_fails_cleanly(tmp_path: Path) -> None:
    src = tmp_path / "noise.wav"
    src.write_bytes(os.urandom(4000))
    dst = tmp_path / "out.mp3"
    result = CliRunner().invoke(cli, ["encode", str(src), str(dst)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Error: cannot decode noise.wav: Format not recognised" in result.stderr
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.wav"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bitrate", "500"], "Invalid value for '--bitrate'"),
        (["--quality", "-1"], "Invalid value for '--quality'"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, wav: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["encode", str(wav), str(tmp_path / "o.mp3"), *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["encode", str(tmp_path / "nope.wav"), "o.mp3"])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def installed_command() -> Path:
    return Path(sys.executable).parent / "cj-encoder"


def test_the_installed_command(tmp_path: Path, wav: Path) -> None:
    dst = tmp_path / "out.mp3"
    done = subprocess.run(
        [str(installed_command()), "encode", str(wav), str(dst)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{dst}: 1.500 s, 8000 Hz, 1 → 2 channels")
    decoded = decode_ffmpeg(dst)
    assert decoded.channels == 2 and decoded.frames == 12000

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00" * 100)
    failed = subprocess.run(
        [str(installed_command()), "encode", str(bad), str(tmp_path / "bad.mp3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: cannot decode bad.wav:")
    assert not (tmp_path / "bad.mp3").exists()
