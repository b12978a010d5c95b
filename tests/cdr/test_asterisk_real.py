"""Every line of the real Asterisk CDRs in ../shared/realcdr/asterisk/ imports.

The expected figures are computed here from the lines themselves with the csv module
(independently of the parser): calls = distinct linkedids (uniqueids in files without
a linkedid column), answered = some line ANSWERED, billsec = the largest billsec of an
ANSWERED line. Skipped when the shared folder is absent.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from cj.cdr import CdrFormat, CdrOptions, parse_cdr
from cj.cdr.asterisk import AsteriskLeg, leg_from_document
from cj.cdr.asterisk_call import call_from_legs
from cj.cdr.lines import parse_lines
from cj.model import Direction

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "realcdr"
ASTERISK = REAL / "asterisk"

pytestmark = pytest.mark.skipif(not ASTERISK.is_dir(), reason="../shared/realcdr is absent")

CDR_CSV = sorted(
    p.name
    for p in (ASTERISK.glob("*.csv") if ASTERISK.is_dir() else [])
    if "cdrcsv" in p.name or p.name.startswith("mineevburyat")
)


def expected(path: Path, key_column: int | None) -> dict[str, tuple[int, bool, int]]:
    """key → (lines, answered, billsec) read straight from the CSV."""
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("latin-1"))))
    groups: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        column = key_column if key_column is not None else (19 if len(row) >= 21 else 16)
        groups[row[column]].append(row)
    result = {}
    for key, group in groups.items():
        disposition = 14 if key_column is None else 13
        billsec = 13 if key_column is None else 12
        answered = [int(row[billsec]) for row in group if row[disposition] == "ANSWERED"]
        result[key] = (len(group), bool(answered), max(answered, default=0))
    return result


def check(path: Path, fmt: CdrFormat, options: CdrOptions, key_column: int | None) -> int:
    lines = path.read_bytes().splitlines(keepends=True)
    calls, refused = parse_lines(lines, options, fmt)
    assert refused == []
    want = expected(path, key_column)
    assert len(calls) == len(want)
    for call in calls:
        count, answered, billsec = want[call.raw["linkedid"]]
        assert len(call.raw["legs"]) == count
        assert (call.answered_at is not None) == answered, call.raw["linkedid"]
        assert call.billsec == billsec, call.raw["linkedid"]
        assert call.billsec <= call.duration_s
    print(f"{path.name}: {len(lines)} lines, {len(calls)} calls")
    return len(calls)


@pytest.mark.parametrize("name", CDR_CSV)
def test_every_cdr_csv_line_imports(name: str) -> None:
    assert check(ASTERISK / name, CdrFormat.ASTERISK_CSV, CdrOptions(source="real"), None) > 0


def test_cdr_custom_with_the_stock_mapping() -> None:
    # cdr_custom writes local time (UTC+3 here); uniqueid is column 16 of the stock mapping.
    options = CdrOptions(timezone="Europe/Moscow")
    path = ASTERISK / "kelysaina-cdr-custom-1.csv"
    assert check(path, CdrFormat.ASTERISK_CUSTOM, options, 16) == 14
    calls, _ = parse_lines(path.read_bytes().splitlines(), options, CdrFormat.ASTERISK_CUSTOM)
    # The start is the uniqueid's epoch: local time read in the right zone.
    for call in calls:
        assert int(call.started_at.timestamp()) == int(call.raw["linkedid"].split(".")[0])
        assert call.direction is Direction.INTERNAL


def test_the_non_utf8_file_keeps_its_bytes() -> None:
    path = ASTERISK / "mineevburyat-dj-asterisk-cdr-1.csv"
    lines = path.read_bytes().splitlines()
    not_utf8 = [line for line in lines if not _is_utf8(line)]
    calls, _ = parse_lines(lines, CdrOptions(), CdrFormat.ASTERISK_CSV)
    fallback = [leg for call in calls for leg in call.raw["legs"] if "line_base64" in leg]
    assert len(fallback) == len(not_utf8) == 8
    assert all(leg["decoded_as"] == {"clid": "cp1252"} for leg in fallback)
    assert {base64.b64decode(leg["line_base64"]) for leg in fallback} == set(not_utf8)
    assert all("¥¥" in leg["fields"]["clid"] for leg in fallback)
    assert all(call.direction is Direction.INBOUND for call in calls)  # trunk peers, *-pstn
    # UTC times (usegmtime): the start is the uniqueid's epoch.
    first = min(calls, key=lambda call: call.started_at)
    assert int(first.started_at.timestamp()) == 1706368044


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_trunk_calls_of_the_asterisk_13_lab() -> None:
    path = ASTERISK / "simularent-asterisk13-cdrcsv-1.csv"
    calls, _ = parse_lines(path.read_bytes().splitlines(), CdrOptions(), CdrFormat.ASTERISK_CSV)
    for call in calls:
        first = call.raw["legs"][0]["fields"]
        if first["dcontext"] == "from-trunk":
            assert call.direction is Direction.INBOUND
        if "@sipus1" in first["lastdata"] and first["lastapp"] == "Dial":
            assert call.direction is Direction.OUTBOUND, first


def test_the_pjsip_record_application_names_the_file() -> None:
    path = ASTERISK / "tejdeepsingh-pjsip-cdrcsv-1.csv"
    calls, _ = parse_lines(path.read_bytes().splitlines(), CdrOptions(), CdrFormat.ASTERISK_CSV)
    names = {call.recording_name for call in calls if call.recording_name}
    assert "/var/spool/asterisk/recording/recording-1001-20250723-065517-name.wav" in names


def test_a_single_asterisk_cdr_object() -> None:
    data = (REAL / "grandstream-2.json").read_bytes()
    call = parse_cdr(data, CdrOptions(format=CdrFormat.ASTERISK_JSON))
    assert (call.caller.raw, call.caller_name, call.destination.raw) == ("5300", "pn01", "5301")
    assert (call.duration_s, call.billsec, call.direction) == (9, 6, Direction.INTERNAL)
    assert call.raw["legs"][0]["document"] == json.loads(data)


def test_the_sqlite3_backend_rows_match_the_csv_of_the_same_calls() -> None:
    # The same 736 calls as cdr_sqlite3_custom rows, in local time (UTC-4) where the
    # CSV has UTC: read in America/New_York, each call starts at the same instant.
    database = sqlite3.connect(":memory:")
    database.executescript(
        (ASTERISK / "karthik0112-issabelpbx-cdr_sqlite3_custom-3.sql").read_text("utf-8")
    )
    database.row_factory = sqlite3.Row
    rows = [dict(row) for row in database.execute("SELECT * FROM cdr ORDER BY AcctId")]
    groups: dict[str, list[AsteriskLeg]] = defaultdict(list)
    for row in rows:
        leg = leg_from_document(row)
        groups[leg.key].append(leg)
    local = CdrOptions(timezone="America/New_York")
    from_db = {key: call_from_legs(legs, local) for key, legs in groups.items()}
    csv_path = ASTERISK / "karthik0112-issabelpbx-cdrcsv-1.csv"
    csv_calls, _ = parse_lines(
        csv_path.read_bytes().splitlines(), CdrOptions(), CdrFormat.ASTERISK_CSV
    )
    assert len(rows) == 736 and len(from_db) == len(csv_calls) == 465
    for call in csv_calls:
        twin = from_db[call.raw["linkedid"]]
        assert twin.uuid == call.uuid
        assert twin.started_at == call.started_at
        assert (twin.billsec, twin.direction) == (call.billsec, call.direction)
        assert (twin.answered_at is None) == (call.answered_at is None)
