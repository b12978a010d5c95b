"""Asterisk CDR lines (cdr_csv, cdr_custom, JSON) to calls: the project's own fixtures."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cj.cdr import CdrError, CdrFormat, CdrOptions, parse_cdr
from cj.cdr.asterisk import (
    CdrHeaderLine,
    cdr_csv_columns,
    decode_field,
    parse_cdr_csv_line,
    parse_custom_line,
    parse_json_line,
    split_line,
)
from cj.cdr.asterisk_call import call_from_legs, call_uuid, channel_peer, split_clid
from cj.cdr.asterisk_options import STOCK_CUSTOM_COLUMNS, AsteriskOptions, columns_from_mapping
from cj.cdr.lines import parse_lines
from cj.cdr.locality import LocalNumbers
from cj.model import Call, Direction

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "asterisk" / "Master.csv"
BERLIN = CdrOptions(timezone="Europe/Berlin", source="pbx-berlin")


def csv_line(*values: str | int | None) -> bytes:
    """A cdr_csv line as Asterisk writes it: text quoted, integers and None bare."""
    out = []
    for value in values:
        if value is None:
            out.append("")
        elif isinstance(value, int):
            out.append(str(value))
        else:
            out.append('"' + value.replace('"', '""') + '"')
    return (",".join(out) + "\n").encode()


def std(
    src: str = "1001",
    dst: str = "1002",
    *,
    dcontext: str = "from-internal",
    clid: str = '"Alice" <1001>',
    channel: str = "SIP/1001-00000001",
    dstchannel: str = "SIP/1002-00000002",
    lastapp: str = "Dial",
    lastdata: str = "SIP/1002,20",
    start: str = "2026-03-02 09:15:04",
    answer: str | None = "2026-03-02 09:15:10",
    end: str = "2026-03-02 09:16:08",
    duration: int = 64,
    billsec: int = 58,
    disposition: str = "ANSWERED",
) -> list[str | int | None]:
    return [
        "",
        src,
        dst,
        dcontext,
        clid,
        channel,
        dstchannel,
        lastapp,
        lastdata,
        start,
        answer,
        end,
        duration,
        billsec,
        disposition,
        "DOCUMENTATION",
    ]


def one(line: bytes, options: CdrOptions = BERLIN) -> Call:
    return call_from_legs([parse_cdr_csv_line(line)], options)


# --- columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], ()),
        (["1427211880.0"], ("uniqueid",)),
        (["rec=a.wav"], ("userfield",)),
        (["1427211880.0", ""], ("uniqueid", "userfield")),
        (["", "1706368044.0", 3], ("peeraccount", "linkedid", "sequence")),
        (["1706368044.2", "", "", "1706368044.0", 3], None),
    ],
)
def test_cdr_csv_columns_follow_the_count(
    extra: list[str | int | None], expected: tuple[str, ...] | None
) -> None:
    values = split_line(csv_line(*std(), *extra))
    columns = cdr_csv_columns(values)
    assert len(columns) == len(values)
    if expected is None:
        assert columns[16:] == ("uniqueid", "userfield", "peeraccount", "linkedid", "sequence")
    else:
        assert columns[16:] == expected


def test_a_line_with_too_many_columns_is_refused_with_the_count() -> None:
    with pytest.raises(CdrError, match="has 23 columns"):
        parse_cdr_csv_line(csv_line(*std(), *["x"] * 7))


def test_answered_internal_call() -> None:
    call = one(csv_line(*std(), "1772439304.1", ""))
    assert call.uuid == call_uuid("pbx-berlin", "1772439304.1")
    assert call.caller.raw == "1001" and call.caller_name == "Alice"
    assert call.caller_extension == "1001"
    assert call.destination_extension == "1002"
    assert call.direction is Direction.INTERNAL
    # Berlin is UTC+1 in March.
    assert call.started_at == datetime(2026, 3, 2, 8, 15, 4, tzinfo=UTC)
    assert call.answered_at == datetime(2026, 3, 2, 8, 15, 10, tzinfo=UTC)
    assert (call.duration_s, call.billsec) == (64, 58)
    assert call.hangup_cause == "NORMAL_CLEARING"


@pytest.mark.parametrize(
    ("disposition", "cause"),
    [
        ("NO ANSWER", "NO_ANSWER"),
        ("BUSY", "USER_BUSY"),
        ("FAILED", "NORMAL_TEMPORARY_FAILURE"),
        ("CONGESTION", "NORMAL_CIRCUIT_CONGESTION"),
    ],
)
def test_unanswered_dispositions_with_the_bare_empty_answer(disposition: str, cause: str) -> None:
    line = csv_line(*std(answer=None, billsec=0, disposition=disposition), "1.5", "")
    assert b'"2026-03-02 09:15:04",,"2026-03-02' in line
    call = one(line)
    assert call.answered_at is None and call.billsec == 0
    assert call.hangup_cause == cause


def test_times_are_read_in_the_pbx_zone() -> None:
    line = csv_line(*std(), "1.5", "")
    utc = call_from_legs([parse_cdr_csv_line(line)], CdrOptions(timezone="UTC"))
    moscow = call_from_legs([parse_cdr_csv_line(line)], CdrOptions(timezone="Europe/Moscow"))
    assert (utc.started_at - moscow.started_at).total_seconds() == 3 * 3600


def test_a_bad_field_is_named() -> None:
    with pytest.raises(CdrError, match=r"^duration: must be an integer"):
        one(csv_line(*std(duration="sixty"), "1.5", ""))  # type: ignore[arg-type]
    with pytest.raises(CdrError, match=r"^start: must be 'YYYY-MM-DD"):
        one(csv_line(*std(start="yesterday"), "1.5", ""))


# --- direction -----------------------------------------------------------------------


def test_inbound_from_a_trunk_channel_or_context() -> None:
    by_channel = std("+4930901820", "4930123456", clid="", channel="PJSIP/trunk_telekom-0000001")
    assert one(csv_line(*by_channel, "1.1", "")).direction is Direction.INBOUND
    by_context = std(
        "89245555937", "211553", dcontext="stadion-pstn", clid="", channel="SIP/211553-00000003"
    )
    call = one(csv_line(*by_context, "1.2", ""))
    assert call.direction is Direction.INBOUND
    assert call.caller.raw == "89245555937" and call.caller_extension == ""


def test_an_extension_dialling_out_is_outbound() -> None:
    via_trunk = std(
        "201", "+4989123456", dstchannel="PJSIP/trunk_telekom-4", lastdata="PJSIP/x@trunk_telekom"
    )
    assert one(csv_line(*via_trunk, "1.1", "")).direction is Direction.OUTBOUND
    # A trunk the default pattern cannot know: the number dialled is not local.
    by_number = std("1500", "12489398620", dstchannel="SIP/carrierx-00000004")
    assert one(csv_line(*by_number, "1.2", "")).direction is Direction.OUTBOUND
    # A failed attempt never got a channel; the Dial target says where it went.
    failed = std(
        "1001",
        "500901528",
        dstchannel="",
        lastdata="DAHDI/g0/500901528,300,T",
        answer=None,
        billsec=0,
        disposition="CONGESTION",
    )
    assert one(csv_line(*failed, "1.3", "")).direction is Direction.OUTBOUND


def test_a_local_number_of_the_pbx_is_not_outbound() -> None:
    options = CdrOptions(local=LocalNumbers(numbers=("4930123*",)))
    line = csv_line(*std("201", "4930123999", dstchannel=""), "1.1", "")
    assert one(line, options).direction is Direction.INTERNAL
    assert one(line).direction is Direction.OUTBOUND


def test_a_named_login_is_a_local_caller_and_the_ivr_is_internal() -> None:
    call = one(
        csv_line(*std("dan", "s", clid='"" <dan>', channel="PJSIP/dan-0000001f", dstchannel=""))
    )
    assert call.caller_extension == "dan"
    assert call.direction is Direction.INTERNAL


def test_trunk_and_context_patterns_are_configurable() -> None:
    options = CdrOptions(asterisk=AsteriskOptions(trunk_channels=r"^SIP/stadionpbx-"))
    line = csv_line(*std("301", "89001234567", dstchannel="SIP/stadionpbx-00000005"), "1.1", "")
    assert one(line, options).direction is Direction.OUTBOUND
    inbound = CdrOptions(asterisk=AsteriskOptions(inbound_contexts="^did-in$"))
    line = csv_line(*std("89001234567", "301", dcontext="did-in", channel="SIP/x-1"), "1.2", "")
    assert one(line, inbound).direction is Direction.INBOUND


def test_channel_and_clid_readers() -> None:
    assert channel_peer("SIP/1001-0000000a") == ("SIP", "1001")
    assert channel_peer("PJSIP/dan-0000001f") == ("PJSIP", "dan")
    assert channel_peer("Local/FMPR-1001@from-internal-00000000;1") == (
        "Local",
        "FMPR-1001@from-internal",
    )
    assert split_clid('"Anna ""AW"" Weber" <201>') == ('Anna "AW" Weber', "201")
    assert split_clid("Bob <202>") == ("Bob", "202")
    assert split_clid("") == ("", "")
    assert split_clid("apptel") == ("apptel", "")


# --- one call, many lines ------------------------------------------------------------


def test_the_sample_master_csv() -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    calls, refused = parse_lines(lines, BERLIN, CdrFormat.ASTERISK_CSV)
    assert refused == [] and len(lines) == 8 and len(calls) == 6
    by_direction = {call.destination.raw: call for call in calls}
    assert by_direction["4930123456"].direction is Direction.INBOUND
    assert by_direction["4930123456"].recording_name == "in-4930123456-201-20260302-091504.wav"
    assert by_direction["+4989123456"].direction is Direction.OUTBOUND
    assert by_direction["+4989123456"].private is True
    assert by_direction["203"].hangup_cause == "NO_ANSWER"
    assert by_direction["201"].hangup_cause == "USER_BUSY"
    assert by_direction["+4940555000"].hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    group = by_direction["600"]
    assert group.direction is Direction.INBOUND and len(group.raw["legs"]) == 3
    assert group.destination_extension == "202"  # the leg that answered
    assert (group.billsec, group.duration_s) == (95, 100)
    assert group.answered_at == datetime(2026, 3, 2, 9, 20, 5, tzinfo=UTC)
    assert group.ended_at == datetime(2026, 3, 2, 9, 21, 40, tzinfo=UTC)


def test_legs_in_any_order_make_the_same_call() -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)[5:]
    legs = [parse_cdr_csv_line(line) for line in lines]
    forward = call_from_legs(legs, BERLIN)
    backward = call_from_legs(legs[::-1], BERLIN)
    assert forward == backward and forward.raw["legs"] == backward.raw["legs"]


def test_local_channel_halves_do_not_steal_the_billsec() -> None:
    base = {"src": "89245555937", "dst": "211553", "clid": "", "dcontext": "stadion-pstn"}
    local_half = std(
        **base, channel="SIP/211553-00000011", dstchannel="Local/ch1@TimeDelay-00000006;1",
        answer="2026-01-28 02:04:12", start="2026-01-28 02:04:06", end="2026-01-28 02:04:12",
        duration=6, billsec=0,
    )  # fmt: skip
    bridged = std(
        **base, channel="SIP/211553-00000011", dstchannel="SIP/301-00000012",
        start="2026-01-28 02:04:12", answer="2026-01-28 02:04:12", end="2026-01-28 02:04:29",
        duration=17, billsec=17,
    )  # fmt: skip
    legs = [
        parse_cdr_csv_line(csv_line(*row, "1.6", "", "", "1.6", n))
        for n, row in enumerate((local_half, bridged))
    ]
    call = call_from_legs(legs, BERLIN)
    assert call.billsec == 17 and call.destination_extension == "301"
    assert call.duration_s == 23  # 02:04:06 to 02:04:29


# --- recording and privacy -----------------------------------------------------------


def test_userfield_convention_and_configurable_keys() -> None:
    call = one(csv_line(*std(), "1.1", "rec=/var/spool/asterisk/monitor/a.wav;tag=private"))
    assert call.recording_name == "/var/spool/asterisk/monitor/a.wav"  # a path, kept
    assert call.private is True
    options = CdrOptions(
        asterisk=AsteriskOptions(userfield_recording_key="file", userfield_privacy_key="p")
    )
    call = one(csv_line(*std(), "1.1", "file=b.wav;p=yes;rec=ignored.wav"), options)
    assert call.recording_name == "b.wav" and call.private is True


def test_a_userfield_path_that_leaves_the_directory_is_refused() -> None:
    with pytest.raises(CdrError, match="userfield"):
        one(csv_line(*std(), "1.1", "rec=/tmp/.."))


def test_record_and_mixmonitor_in_lastdata() -> None:
    record = std(
        lastapp="Record",
        lastdata="/var/spool/asterisk/recording/recording-1001-20250723-065517-name.wav,5,30,k",
    )
    call = one(csv_line(*record, "1.1", ""))
    assert call.recording_name == (
        "/var/spool/asterisk/recording/recording-1001-20250723-065517-name.wav"
    )
    old_syntax = one(csv_line(*std(lastapp="Record", lastdata="recording:wav"), "1.2", ""))
    assert old_syntax.recording_name == "recording.wav"
    mix = std(
        lastapp="MixMonitor", lastdata="/rec/call-1.wav,br(/rec/call-1-rx.wav)t(/rec/call-1-tx.wav)"
    )
    call = one(csv_line(*mix, "1.3", ""))
    assert call.recording_name == "/rec/call-1.wav"
    assert call.recording_legs == ("/rec/call-1-rx.wav", "/rec/call-1-tx.wav")


def test_a_call_naming_no_file_is_looked_up_by_its_uniqueid() -> None:
    call = one(csv_line(*std(), "1772432104.7", ""))
    assert call.recording_name == "uniqueid:1772432104.7" and call.recording_legs is None
    off = CdrOptions(asterisk=AsteriskOptions(recordings_by_uniqueid=False))
    assert one(csv_line(*std(), "1772432104.7", ""), off).recording_name is None
    odd = one(csv_line(*std(), "a/b", ""))  # not a uniqueid a file name can end in
    assert odd.recording_name is None


def test_a_recording_path_with_dot_dot_is_refused() -> None:
    mix = std(lastapp="MixMonitor", lastdata="/rec/../etc/x.wav,b")
    with pytest.raises(CdrError, match="lastdata"):
        one(csv_line(*mix, "1.3", ""))


# --- bytes that are not UTF-8 ---------------------------------------------------------


def test_non_utf8_bytes_fall_back_per_field_and_the_line_is_kept() -> None:
    line = csv_line(*std(), "1.1", "").replace(b"Alice", b"Al\xa5\xa5ce")
    leg = parse_cdr_csv_line(line)
    assert leg.get("clid") == '"Al¥¥ce" <1001>'
    assert leg.raw["decoded_as"] == {"clid": "cp1252"}
    assert base64.b64decode(leg.raw["line_base64"]) == line.rstrip(b"\n")
    assert "\\xa5" in leg.raw["line"]
    call = call_from_legs([leg], BERLIN)
    assert call.caller_name == "Al¥¥ce"
    json.dumps(call.raw, ensure_ascii=False).encode("utf-8")  # storable


def test_decode_field_rule() -> None:
    assert decode_field("é".encode()) == ("é", None)
    assert decode_field(b"\xe9") == ("é", "cp1252")
    assert decode_field(b"\x81") == ("\x81", "latin-1")
    assert decode_field(b"a\x00b") == ("a\ufffdb", "utf-8")


# --- cdr_custom and JSON ---------------------------------------------------------------


def test_stock_mapping_text_gives_the_stock_columns() -> None:
    mapping = "Master.csv => " + ",".join(
        f"${{CSV_QUOTE(${{CDR({c})}})}}" for c in STOCK_CUSTOM_COLUMNS
    )
    assert columns_from_mapping(mapping) == STOCK_CUSTOM_COLUMNS
    assert AsteriskOptions(csv_columns=(mapping,)).csv_columns == STOCK_CUSTOM_COLUMNS


def test_cdr_custom_line_with_the_stock_mapping() -> None:
    line = (
        b'""""" <client2>","client2","1234","default","PJSIP/client2-00000004",'
        b'"PJSIP/client1-00000005","Dial","PJSIP/client1","2023-07-26 01:52:11","",'
        b'"2023-07-26 01:52:42","30","0","NO ANSWER","DOCUMENTATION","","1690325531.5","",4\n'
    )
    leg = parse_custom_line(line, STOCK_CUSTOM_COLUMNS)
    call = call_from_legs([leg], CdrOptions(timezone="Europe/Moscow"))
    assert call.caller.raw == "client2" and call.caller_extension == "client2"
    assert call.destination_extension == "client1" and call.direction is Direction.INTERNAL
    assert call.answered_at is None and call.duration_s == 30
    with pytest.raises(CdrError, match="has 19 columns, the configured cdr_custom mapping"):
        parse_custom_line(line, STOCK_CUSTOM_COLUMNS[:5])


def test_a_header_line_is_recognised() -> None:
    with pytest.raises(CdrHeaderLine):
        parse_custom_line(b",".join(c.encode() for c in STOCK_CUSTOM_COLUMNS), STOCK_CUSTOM_COLUMNS)


def test_json_line_and_a_single_json_object() -> None:
    document = {
        "src": "5300", "dst": "5301", "dcontext": "from-internal", "clid": '"pn01" <5300>',
        "channel": "SIP/5300-00000000", "dstchannel": "SIP/5301-00000001", "lastapp": "Dial",
        "lastdata": "SIP/5301,60,", "start": "2013-12-03 11:46:40",
        "answer": "2013-12-03 11:46:43", "end": "2013-12-03 11:46:49", "duration": 9,
        "billsec": "6", "disposition": "ANSWERED", "amaflags": "DOCUMENTATION",
        "uniqueid": "1386092800.0", "userfield": "EXT", "service": "s",
    }  # fmt: skip
    leg = parse_json_line(json.dumps(document).encode() + b"\n")
    call = call_from_legs([leg], BERLIN)
    assert call.caller_name == "pn01" and call.billsec == 6
    assert call.direction is Direction.INTERNAL and call.raw["legs"][0]["document"] == document
    whole = parse_cdr(json.dumps(document).encode(), CdrOptions(format=CdrFormat.ASTERISK_JSON))
    assert whole.uuid == call_uuid("", "1386092800.0")
    with pytest.raises(CdrError, match="not an Asterisk CDR object"):
        parse_json_line(b'{"uuid": "x"}')


def test_reading_a_line_twice_changes_nothing() -> None:
    line = csv_line(*std(), "1.1", "")
    first = call_from_legs([parse_cdr_csv_line(line)], BERLIN)
    again = call_from_legs([parse_cdr_csv_line(line)], BERLIN)
    assert first == again and first.raw == again.raw
