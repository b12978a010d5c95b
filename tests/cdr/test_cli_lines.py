"""`cj cdr show Master.csv --line N / --lines A-B`: Asterisk lines as the agent reads them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cj.cdr.asterisk_call import call_uuid
from cj.cdr.cli import cdr

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "asterisk" / "Master.csv"


def show(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cdr, ["show", *args])
    return result.exit_code, result.stdout, result.stderr


def test_one_line() -> None:
    code, out, err = show(str(SAMPLE), "--line", "2", "--timezone", "Europe/Berlin")
    assert (code, err) == (0, "")
    call = json.loads(out)
    assert call["caller_number"] == "201" and call["caller_name"] == "Anna Weber"
    assert call["direction"] == "outbound" and call["private"] is True
    assert call["started_at"] == "2026-03-02T08:30:00Z" and call["billsec"] == 180
    assert call["caller_extension"] == "201" and call["legs"] == 1


def test_a_range_groups_the_lines_of_a_call_and_the_source_sets_the_uuid() -> None:
    code, out, err = show(str(SAMPLE), "--lines", "5-8", "--source", "pbx-berlin")
    assert (code, err) == (0, "")
    calls = json.loads(out)
    assert [call["legs"] for call in calls] == [1, 3]
    assert calls[1]["uuid"] == str(call_uuid("pbx-berlin", "1772443200.11"))
    assert calls[1]["destination_extension"] == "202" and calls[1]["billsec"] == 95


def test_a_refused_line_is_named_by_its_number(tmp_path: Path) -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    bad = lines[0].replace(b'"2026-03-02 09:15:04"', b'"soon"')
    path = tmp_path / "Master.csv"
    path.write_bytes(bad + lines[1])
    code, out, err = show(str(path), "--lines", "1-2")
    assert code == 0 and len(json.loads(out)) == 1
    assert err.startswith("line 1: start: must be 'YYYY-MM-DD HH:MM:SS'")
    code, _, err = show(str(path), "--line", "1")
    assert code == 1 and "no line could be read" in err
    code, _, err = show(str(path), "--line", "9")
    assert code == 1 and "has no line 9" in err
    code, _, err = show(str(path), "--lines", "3-2")
    assert code == 2 and "need 1 <= A <= B" in err
