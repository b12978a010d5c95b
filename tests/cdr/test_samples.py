"""The shared samples parse to exactly the values samples/README.md lists."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from cj.cdr import CdrOptions, parse_cdr_file
from cj.model import Direction
from tests.cdr.helpers import (
    COMPACT_ANSWERED,
    COMPACT_PRIVATE,
    COMPACT_UNANSWERED,
    FS_ENCODED,
    FS_PLAIN,
    MOSCOW,
    parse,
)


def test_compact_inbound_answered_public() -> None:
    call = parse_cdr_file(COMPACT_ANSWERED, MOSCOW)
    assert call.uuid == uuid.UUID("5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111")
    assert call.caller.raw == "79161234567"
    assert call.destination.raw == "84957001020"
    assert call.direction is Direction.INBOUND
    assert call.started_at == datetime(2026, 3, 2, 6, 15, 4, tzinfo=UTC)
    assert call.answered_at == datetime(2026, 3, 2, 6, 15, 10, tzinfo=UTC)
    assert call.duration_s == 64
    assert call.billsec == 58
    assert call.private is False
    assert call.recording_name == "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav"


def test_compact_stti_agrees_with_epos() -> None:
    # The README: "stti is Europe/Moscow local time, epos agrees".
    document = json.loads(COMPACT_ANSWERED.read_bytes())
    document["epos"] = 0
    from_stti = parse(document, timezone="Europe/Moscow")
    from_epos = parse_cdr_file(COMPACT_ANSWERED, MOSCOW)
    assert (
        from_stti.started_at == from_epos.started_at == datetime(2026, 3, 2, 6, 15, 4, tzinfo=UTC)
    )


def test_compact_outbound_private() -> None:
    call = parse_cdr_file(COMPACT_PRIVATE, MOSCOW)
    assert call.caller.raw == "1004"
    assert call.caller_name == "Operator 4"
    assert call.destination.raw == "89035557788"
    assert call.direction is Direction.OUTBOUND
    assert call.private is True
    assert call.recording_name == "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222.wav"


def test_compact_unanswered_without_recording() -> None:
    call = parse_cdr_file(COMPACT_UNANSWERED, MOSCOW)
    assert call.caller.raw == "+7 (926) 000-11-22"
    assert call.caller.digits == "79260001122"
    assert call.direction is Direction.INBOUND
    assert call.answered_at is None
    assert call.recording_name is None
    assert call.billsec == 0
    assert call.sip_code == 487


def test_freeswitch_plain_values() -> None:
    call = parse_cdr_file(FS_PLAIN, MOSCOW)
    assert call.uuid == uuid.UUID("9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444")
    assert call.caller.raw == "79857771234"
    assert call.destination.raw == "4957001020"
    assert call.direction is Direction.INBOUND
    assert call.started_at == datetime(2026, 3, 3, 11, 2, 11, tzinfo=UTC)
    assert call.answered_at == datetime(2026, 3, 3, 11, 2, 17, tzinfo=UTC)
    assert call.ended_at == datetime(2026, 3, 3, 11, 3, 53, tzinfo=UTC)
    assert call.duration_s == 102
    assert call.billsec == 96
    assert call.hangup_cause == "NORMAL_CLEARING"
    assert call.hangup_side == "recv_bye"
    assert call.sip_code == 200
    assert call.private is False
    assert call.recording_name == "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav"


def test_freeswitch_recording_named_by_record_session_alone() -> None:
    # The README: the recording is named "by record_name and by the record_session
    # entry of app_log"; each alone must give the same name.
    options = CdrOptions(timezone="Europe/Moscow", recording_variables=("record_session",))
    call = parse_cdr_file(FS_PLAIN, options)
    assert call.recording_name == "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav"


def test_freeswitch_url_encoded_unanswered() -> None:
    call = parse_cdr_file(FS_ENCODED, MOSCOW)
    assert call.uuid == uuid.UUID("d1f3a5c7-0b2e-4a69-8f14-6c8e0a2b4555")
    assert call.caller_name == "Иван Петров"
    assert call.caller.raw == "+7 (903) 555-01-02"
    assert call.destination.raw == "1001"
    assert call.direction is Direction.INBOUND
    assert call.answered_at is None
    assert call.hangup_cause == "NO_ANSWER"
    assert call.sip_code == 480
    assert call.hangup_side == "send_cancel"
    assert call.recording_name is None


def test_raw_keeps_the_whole_document() -> None:
    for path in (COMPACT_ANSWERED, FS_PLAIN):
        call = parse_cdr_file(path, MOSCOW)
        assert call.raw == json.loads(path.read_bytes())


def test_source_is_copied() -> None:
    call = parse_cdr_file(FS_PLAIN, CdrOptions(source="pbx-msk-1"))
    assert call.source == "pbx-msk-1"
