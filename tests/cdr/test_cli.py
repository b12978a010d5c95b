"""`cj cdr show`: exact JSON for the samples, overrides, and errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cj.cdr.cli import cdr
from tests.cdr.helpers import COMPACT_ANSWERED, COMPACT_UNANSWERED, FS_ENCODED, FS_PLAIN, freeswitch

KEYS = [
    "uuid",
    "caller_number",
    "caller_name",
    "caller_extension",
    "destination_number",
    "destination_extension",
    "direction",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "billsec",
    "hangup_cause",
    "hangup_disposition",
    "sip_code",
    "private",
    "recording_file",
]


def show(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cdr, ["show", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_freeswitch_sample_exactly() -> None:
    code, out, err = show(str(FS_PLAIN), "--timezone", "Europe/Moscow")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "uuid": "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444",
        "caller_number": "79857771234",
        "caller_name": "79857771234",
        "caller_extension": "",
        "destination_number": "4957001020",
        "destination_extension": "",
        "direction": "inbound",
        "started_at": "2026-03-03T11:02:11Z",
        "answered_at": "2026-03-03T11:02:17Z",
        "ended_at": "2026-03-03T11:03:53Z",
        "duration_s": 102,
        "billsec": 96,
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_disposition": "recv_bye",
        "sip_code": 200,
        "private": False,
        "recording_file": "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav",
    }
    assert list(json.loads(out)) == KEYS


def test_compact_sample_exactly() -> None:
    code, out, _ = show(str(COMPACT_UNANSWERED), "--format", "compact")
    assert code == 0
    assert json.loads(out) == {
        "uuid": "0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333",
        "caller_number": "+7 (926) 000-11-22",
        "caller_name": "",
        "caller_extension": "",
        "destination_number": "84957001020",
        "destination_extension": "",
        "direction": "inbound",
        "started_at": "2026-03-02T20:59:59Z",
        "answered_at": None,
        "ended_at": "2026-03-02T21:00:11Z",
        "duration_s": 12,
        "billsec": 0,
        "hangup_cause": "ORIGINATOR_CANCEL",
        "hangup_disposition": "recv_bye",
        "sip_code": 487,
        "private": False,
        "recording_file": None,
    }


def test_timezone_applies_to_local_stamps(tmp_path: Path) -> None:
    document = json.loads(COMPACT_ANSWERED.read_text())
    document.update(epos=0, epoa=0, epoe=0)
    path = tmp_path / "local.json"
    path.write_text(json.dumps(document))
    assert json.loads(show(str(path), "--timezone", "Europe/Moscow")[1])["started_at"] == (
        "2026-03-02T06:15:04Z"
    )
    assert json.loads(show(str(path))[1])["started_at"] == "2026-03-02T09:15:04Z"


def test_recording_and_privacy_overrides(tmp_path: Path) -> None:
    path = tmp_path / "x.cdr.json"
    path.write_text(
        json.dumps(
            freeswitch({"record_name": "default.wav", "my_rec": "/r/mine.wav", "my_tag": "private"})
        )
    )
    default = json.loads(show(str(path))[1])
    assert (default["recording_file"], default["private"]) == ("default.wav", False)
    overridden = json.loads(
        show(
            str(path),
            "--recording-variable",
            "nothing",
            "--recording-variable",
            "my_rec",
            "--privacy-variable",
            "my_tag",
        )[1]
    )
    assert (overridden["recording_file"], overridden["private"]) == ("mine.wav", True)


def test_standard_input() -> None:
    code, out, _ = show("-", stdin=FS_ENCODED.read_bytes())
    assert code == 0
    assert json.loads(out)["caller_name"] == "Иван Петров"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/x.json"], "/nonexistent/x.json: cannot read: No such file"),
        (
            [str(FS_PLAIN), "--timezone", "Mars/Olympus"],
            "timezone: unknown time zone 'Mars/Olympus'",
        ),
        ([str(FS_PLAIN), "--format", "compact"], "uuid: is missing"),
        ([str(FS_PLAIN), "--recording-variable", ""], "recording_variables: "),
    ],
)
def test_errors_go_to_stderr_with_a_non_zero_status(args: list[str], message: str) -> None:
    code, out, err = show(*args)
    assert code != 0
    assert out == ""
    assert message in err


def test_bad_document_on_stdin() -> None:
    code, _, err = show("-", stdin=b'{"uuid": ')
    assert code != 0
    assert "document: not valid JSON" in err


def test_unknown_format_choice_is_a_usage_error() -> None:
    code, _, err = show(str(FS_PLAIN), "--format", "xml")
    assert code == 2
    assert "xml" in err


def cj_command() -> Path:
    return Path(sys.executable).with_name("cj")


def test_real_subprocess() -> None:
    # The installed console script, in a C locale: output must still be UTF-8 JSON.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(
        [cj_command(), "cdr", "show", FS_ENCODED, "--timezone", "Europe/Moscow"],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.decode("utf-8"))
    assert shown["caller_name"] == "Иван Петров"
    assert shown["caller_number"] == "+7 (903) 555-01-02"
    assert shown["started_at"] == "2026-03-03T15:30:00Z"
    assert shown["sip_code"] == 480
    missing = subprocess.run(
        [cj_command(), "cdr", "show", "/nonexistent/x.json"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0
    assert b"/nonexistent/x.json: cannot read" in missing.stderr
    assert missing.stdout == b""
