"""Compact CDRs: field types, directions, time zones, recordings, and errors naming fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cj.cdr import CdrError, CdrFieldError
from cj.model import Direction
from tests.cdr.helpers import DROP, compact, parse

EPOS = 1772432104  # 2026-03-02T06:15:04Z


@pytest.mark.parametrize(
    ("dirc", "expected"),
    [
        ("inc", Direction.INBOUND),
        ("in", Direction.INBOUND),
        ("Inbound", Direction.INBOUND),
        ("incoming", Direction.INBOUND),
        ("out", Direction.OUTBOUND),
        (" OUTBOUND ", Direction.OUTBOUND),
        ("outgoing", Direction.OUTBOUND),
        ("int", Direction.INTERNAL),
        ("internal", Direction.INTERNAL),
        ("local", Direction.INTERNAL),
        ("sideways", Direction.UNKNOWN),
        ("", Direction.UNKNOWN),
        (None, Direction.UNKNOWN),
        (DROP, Direction.UNKNOWN),
    ],
)
def test_direction(dirc: object, expected: Direction) -> None:
    assert parse(compact(dirc=dirc)).direction is expected


def test_numbers_may_be_integers_or_strings() -> None:
    call = parse(compact(clid=79161234567, dest=1001, durs="64", bils=58, code=200, epos=str(EPOS)))
    assert call.caller.raw == "79161234567"
    assert call.destination.raw == "1001"
    assert (call.duration_s, call.billsec, call.sip_code) == (64, 58, 200)
    assert call.started_at == datetime(2026, 3, 2, 6, 15, 4, tzinfo=UTC)


@pytest.mark.parametrize("code", ["", "0", 0, None, DROP])
def test_absent_sip_code(code: object) -> None:
    assert parse(compact(code=code)).sip_code is None


@pytest.mark.parametrize("code", [487, "487", " 487 ", "487 Request Terminated", 487.0])
def test_sip_code_forms(code: object) -> None:
    assert parse(compact(code=code)).sip_code == 487


@pytest.mark.parametrize(
    "stti", ["2026-03-02T06:15:04Z", "2026-03-02 09:15:04+03:00", "2026-03-02T01:15:04-0500"]
)
def test_local_stamp_with_its_own_offset_ignores_the_zone(stti: str) -> None:
    document = compact(epos=0, epoa=0, epoe=0, bils=0, stti=stti)
    assert parse(document, timezone="Asia/Tokyo").started_at == datetime(
        2026, 3, 2, 6, 15, 4, tzinfo=UTC
    )


def test_epoch_wins_over_the_local_stamp() -> None:
    # stti says something else entirely; the epoch is unambiguous and wins.
    call = parse(compact(epos=EPOS, stti="2001-01-01 00:00:00"), timezone="Asia/Tokyo")
    assert call.started_at == datetime(2026, 3, 2, 6, 15, 4, tzinfo=UTC)


@pytest.mark.parametrize("epos", [0, "0", "", None, DROP])
def test_local_stamp_in_the_pbx_zone_when_no_epoch(epos: object) -> None:
    document = compact(epos=epos, epoa=0, epoe=0, bils=0, stti="2026-03-02 09:15:04")
    assert parse(document, timezone="Europe/Moscow").started_at == datetime(
        2026, 3, 2, 6, 15, 4, tzinfo=UTC
    )
    assert parse(document, timezone="UTC").started_at == datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)
    assert parse(document, timezone="America/New_York").started_at == datetime(
        2026, 3, 2, 14, 15, 4, tzinfo=UTC
    )


def test_local_stamp_in_a_dst_gap_uses_the_offset_before_the_change() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 never happens.
    # PEP 495 fold=0 reads it with EST (-5).
    document = compact(epos=0, epoa=0, epoe=0, stti="2026-03-08 02:30:00")
    call = parse(document, timezone="America/New_York")
    assert call.started_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_local_stamp_in_a_dst_fold_is_the_first_occurrence() -> None:
    # New York, 2026-11-01: 01:30 happens twice; the first (EDT, -4) is chosen.
    document = compact(epos=0, epoa=0, epoe=0, stti="2026-11-01 01:30:00")
    call = parse(document, timezone="America/New_York")
    assert call.started_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_missing_answer_and_end_epochs_stay_empty() -> None:
    call = parse(compact(epoa=0, epoe="0", bils=0))
    assert call.answered_at is None
    assert call.ended_at is None


@pytest.mark.parametrize(
    ("rtag", "private"),
    [
        ("private", True),
        ("PRIVATE", True),
        (" Private ", True),
        ("public", False),
        ("", False),
        (None, False),
        (DROP, False),
    ],
)
def test_private_tag(rtag: object, private: bool) -> None:
    assert parse(compact(rtag=rtag)).private is private


@pytest.mark.parametrize(
    ("rnam", "expected"),
    [
        ("call.wav", "call.wav"),
        ("/var/spool/rec/2026/call.wav", "call.wav"),
        ("../../etc/passwd", "passwd"),  # only the base name is ever used
        ("", None),
        (None, None),
        (DROP, None),
    ],
)
def test_recording_name_is_a_base_name(rnam: object, expected: str | None) -> None:
    assert parse(compact(rnam=rnam)).recording_name == expected


@pytest.mark.parametrize(
    "rnam",
    ["..", "/var/rec/..", ".", "rec/", "..\\..\\boot.ini", "a\\b.wav", "a\nb.wav", "x" * 256],
)
def test_recording_name_that_is_not_a_plain_file_name_is_refused(rnam: str) -> None:
    with pytest.raises(CdrFieldError, match=r"^rnam: "):
        parse(compact(rnam=rnam))


@pytest.mark.parametrize("recd", [False, "false", 0, "0"])
def test_recd_false_means_no_recording(recd: object) -> None:
    assert parse(compact(recd=recd)).recording_name is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"uuid": DROP}, "uuid"),
        ({"uuid": "not-a-uuid"}, "uuid"),
        ({"uuid": 12}, "uuid"),
        ({"clid": DROP}, "clid"),
        ({"dest": None}, "dest"),
        ({"clid": ["79161234567"]}, "clid"),
        ({"clid": "7" * 200}, "clid"),
        ({"clna": {"first": "Ivan"}}, "clna"),
        ({"durs": "sixty"}, "durs"),
        ({"durs": -5}, "durs"),
        ({"durs": 1.5}, "durs"),
        ({"durs": True}, "durs"),
        ({"durs": 10**12}, r"durs \(duration_s\)"),
        ({"bils": 65}, r"bils \(billsec\)"),
        ({"epos": 0, "stti": DROP}, "stti"),
        ({"epos": 0, "stti": "02.03.2026 09:15"}, "stti"),
        ({"epos": 0, "stti": "2026-02-30 09:15:04"}, "stti"),
        ({"epos": 0, "stti": "2026-03-02 09:15:04+25:00"}, "stti"),
        ({"epos": 0, "stti": "0001-01-01 00:00:00"}, "stti"),
        ({"epos": -1}, "epos"),
        ({"epos": 10**15}, "epos"),
        ({"epoa": EPOS - 10}, r"epoa \(answered_at\)"),
        ({"epoe": EPOS - 10}, r"epoe \(ended_at\)"),
        ({"code": "abc"}, "code"),
        ({"code": "Request Terminated"}, "code"),
        ({"code": 999}, r"code \(sip_code\)"),
        ({"hang": ["x"]}, "hang"),
        ({"wbye": "x" * 300}, r"wbye \(hangup_side\)"),
        ({"recd": "maybe"}, "recd"),
        ({"rtag": 5.5}, "rtag"),
    ],
)
def test_errors_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(CdrError, match=rf"^{field}: "):
        parse(compact(**overrides))


def test_unknown_fields_are_ignored_and_kept_in_raw() -> None:
    call = parse(compact(vendor_extra={"a": [1, 2]}))
    assert call.raw["vendor_extra"] == {"a": [1, 2]}


def test_optional_extensions() -> None:
    call = parse(compact(clid="+74951234567", clex="1004", dsex="Anna"))
    assert (call.caller.raw, call.caller_extension, call.destination_extension) == (
        "+74951234567",
        "1004",
        "Anna",
    )
    assert parse(compact()).caller_extension == ""
    with pytest.raises(CdrFieldError, match=r"^clex: must be text"):
        parse(compact(clex=["1004"]))
