"""Every FreeSWITCH document in ../shared/realcdr reads as a telecom engineer reads it.

The documents are public material kept outside the repository (SOURCES.md,
SOURCES-2.md); the test is skipped where the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cj.cdr import CdrFormatError, CdrOptions, parse_cdr
from cj.cdr.freeswitch_csv import parse_freeswitch_csv_line
from cj.model import Direction

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realcdr"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realcdr is absent")

IN, OUT, INT = Direction.INBOUND, Direction.OUTBOUND, Direction.INTERNAL

# file → (direction, caller, caller_extension, destination, destination_extension)
DOCUMENTS = {
    "cgrates-1.json": (INT, "1001", "1001", "1002", "1002"),
    "cgrates-2.json": (INT, "1001", "1001", "1002", "1002"),
    "cgrates-3.json": (INT, "1001", "1001", "1002", "1002"),
    "cgrates-4.json": (INT, "1001", "1001", "1003", "1003"),
    # SIP user "dan" dials out; the dialplan presents +4986517174960.
    "cgrates-5.json": (OUT, "+4986517174960", "dan", "+4986517174963", ""),
    "cgrates-6.json": (INT, "1001", "1001", "1002", "1002"),
    "onex-1.json": (INT, "1001", "1001", "1003", "1003"),
    "onex-2.json": (INT, "1001", "1001", "1003", "1003"),  # the B-leg of onex-1
    # `originate sofia/gateway/…/3868158407 … 9111110001`: the caller is the origination id.
    "onex-3.json": (OUT, "9111110001", "", "3868158407", ""),
    "freeswitch-more/cgrates-fsjson-1.json": (INT, "1001", "1001", "1002", "1002"),
    "freeswitch-more/cgrates-fsjson-2.json": (INT, "1001", "1001", "1002", "1002"),
    "freeswitch-more/cgrates-fsjson-3.json": (INT, "1001", "1001", "1002", "1002"),
    # mod_xml_cdr: extension 1000 dials 2622 through gateway "carlos" (2622 looks local).
    "freeswitch-more/thedonvaughn-tinycdr-fsxml-1.xml": (OUT, "1000", "1000", "2622", ""),
    # mod_xml_cdr with values not URL-encoded: recovered.
    "freeswitch-more/summitrabz-fsxml-1.xml": (INT, "1001", "1001", "9664", "9664"),
}

# (file, line) → (direction, caller, caller_extension, destination, destination_extension)
CSV_LINES = {
    ("raspberrypimaker-fs-cdrcsv-1.csv", 1): (IN, "91342657", "", "*1001", "1001"),
    ("raspberrypimaker-fs-cdrcsv-1.csv", 2): (INT, "1001", "1001", "1002", "1002"),
    ("raspberrypimaker-fs-cdrcsv-2.csv", 1): (IN, "91342657", "", "1001", "1001"),
    ("raspberrypimaker-fs-cdrcsv-2.csv", 2): (IN, "91342657", "", "*1003", "1003"),
    ("raspberrypimaker-fs-cdrcsv-2.csv", 3): (INT, "1001", "1001", "1002", "1002"),
    ("raspberrypimaker-fs-cdrcsv-2.csv", 4): (INT, "1001", "1001", "1002", "1002"),
    ("raspberrypimaker-fs-cdrcsv-3.csv", 1): (IN, "19083426", "", "1001", "1001"),
    ("raspberrypimaker-fs-cdrcsv-3.csv", 2): (IN, "19083426", "", "3000", "3000"),
}


def test_every_freeswitch_document_is_covered() -> None:
    found = {
        str(path.relative_to(REAL))
        for pattern in (
            "cgrates-*.json",
            "onex-*.json",
            "freeswitch-more/*.json",
            "freeswitch-more/*.xml",
        )
        for path in REAL.glob(pattern)
    }
    assert found == set(DOCUMENTS)
    lines = {
        (path.name, n)
        for path in (REAL / "freeswitch-more").glob("*.csv")
        for n, line in enumerate(path.read_bytes().splitlines(), start=1)
        if line.strip()
    }
    assert lines == set(CSV_LINES)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_real_document(name: str) -> None:
    call = parse_cdr((REAL / name).read_bytes(), CdrOptions())
    read = (call.direction, call.caller.raw, call.caller_extension)
    assert (*read, call.destination.raw, call.destination_extension) == DOCUMENTS[name]


@pytest.mark.parametrize(("name", "number"), sorted(CSV_LINES))
def test_real_csv_line(name: str, number: int) -> None:
    line = (REAL / "freeswitch-more" / name).read_bytes().splitlines()[number - 1]
    call = parse_freeswitch_csv_line(line, "example", CdrOptions())
    read = (call.direction, call.caller.raw, call.caller_extension)
    assert (*read, call.destination.raw, call.destination_extension) == CSV_LINES[name, number]
    assert call.billsec <= call.duration_s and call.ended_at is not None


def test_real_onex_3_keeps_times_and_presented_name() -> None:
    call = parse_cdr((REAL / "onex-3.json").read_bytes(), CdrOptions())
    assert call.caller_name == "9111110001"  # not the originate default "Outbound Call"
    assert call.billsec == 7


def test_real_foreign_documents_are_named() -> None:
    with pytest.raises(CdrFormatError, match=r"^document: a Kazoo CDR"):
        parse_cdr((REAL / "kazoo-1.json").read_bytes(), CdrOptions())


def test_a_real_asterisk_cdr_object_is_read_as_asterisk_not_compact() -> None:
    # `clid` once made it look compact ("uuid: is missing"); it is an Asterisk CDR.
    call = parse_cdr((REAL / "grandstream-2.json").read_bytes(), CdrOptions())  # format auto
    assert (call.caller.raw, call.destination.raw, call.billsec) == ("5300", "5301", 6)
    assert call.raw["legs"][0]["document"]["uniqueid"]
