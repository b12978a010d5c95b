"""Whatever a line holds, the Asterisk line formats give calls or CdrError: nothing else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cj.cdr import CdrError, CdrFormat, CdrOptions, CdrUnexpectedError
from cj.cdr.asterisk import split_line
from cj.cdr.lines import parse_lines

ROOT = Path(__file__).resolve().parents[2]
LINES = (ROOT / "samples" / "asterisk" / "Master.csv").read_bytes().splitlines()
OPTIONS = CdrOptions(timezone="Europe/Berlin")
VALUES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"", b"0", b"-1", b"99999999999999999999999", b"9999-12-31 23:59:59",
         b"0001-01-01 00:00:00", b"2026-02-30 10:00:00", b'"', b"\x00", b"\xa5\xa5",
         b"rec=..", b"rec=/x/", b"tag=private", b"Local/x@y-1;2", b"SIP/-", b"<>"]
    ),
)  # fmt: skip


def quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b'"', b'""') + b'"'


def check(lines: list[bytes], fmt: CdrFormat) -> None:
    calls, refused = parse_lines(lines, OPTIONS, fmt)
    for _, error in refused:
        assert isinstance(error, CdrError) and not isinstance(error, CdrUnexpectedError)
    for call in calls:
        assert call.billsec <= call.duration_s


@given(st.sampled_from(LINES), st.integers(0, 20), VALUES)
def test_one_field_replaced(line: bytes, index: int, value: bytes) -> None:
    fields = split_line(line)
    fields[index] = value
    check([b",".join(quoted(f) for f in fields)], CdrFormat.ASTERISK_CSV)


@given(st.lists(st.binary(max_size=300), max_size=5))
def test_random_bytes(lines: list[bytes]) -> None:
    for fmt in (CdrFormat.ASTERISK_CSV, CdrFormat.ASTERISK_CUSTOM, CdrFormat.ASTERISK_JSON):
        check(lines, fmt)


@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=8), st.data())
def test_any_mix_of_legs_makes_valid_calls(lines: list[bytes], data: st.DataObject) -> None:
    # Legs of different calls forced under one linkedid must still make a valid call.
    linkedid = data.draw(st.sampled_from([b"1.1", b"x"]))
    mixed = []
    for line in lines:
        fields = split_line(line)
        fields[19] = linkedid
        mixed.append(b",".join(quoted(f) for f in fields))
    calls, refused = parse_lines(mixed, OPTIONS, CdrFormat.ASTERISK_CSV)
    assert refused == [] and len(calls) == 1
