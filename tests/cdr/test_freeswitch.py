"""FreeSWITCH mod_json_cdr: URL-decoding, callflow shapes, time sources, recordings."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from cj.cdr import CdrError, CdrFieldError, CdrOptions, parse_cdr
from cj.model import Direction
from tests.cdr.helpers import DROP, FS_PLAIN, UUID, freeswitch, load, parse, profile

START = datetime(2026, 3, 3, 11, 2, 11, tzinfo=UTC)  # start_epoch 1772535731
END = datetime(2026, 3, 3, 11, 3, 53, tzinfo=UTC)  # end_epoch 1772535833


# --- URL-decoding --------------------------------------------------------------------


def test_values_are_url_decoded_but_plus_stays_a_plus() -> None:
    document = freeswitch(
        callflow=[
            profile(
                number="%2B7%20%28903%29%20555-01-02",
                name="%D0%98%D0%B2%D0%B0%D0%BD",
                destination="8%20800%20100",
            )
        ]
    )
    call = parse(document)
    assert call.caller.raw == "+7 (903) 555-01-02"
    assert call.caller_name == "Иван"
    assert call.destination.raw == "8 800 100"


def test_a_literal_plus_is_not_a_space() -> None:
    # encode-values=false writes plain text: `+` must not turn into a space.
    call = parse(freeswitch(callflow=[profile(number="+7 903 555+01+02", name="A+B")]))
    assert call.caller.raw == "+7 903 555+01+02"
    assert call.caller_name == "A+B"


def test_encoded_variables_are_decoded() -> None:
    document = freeswitch(
        {
            "hangup_cause": "NORMAL%5FCLEARING",
            "sip_hangup_disposition": "recv%5Fbye",
            "record_name": "%2Fvar%2Frec%2Fcall%201.wav",
            "start_epoch": DROP,
            "end_epoch": DROP,
            "start_stamp": "2026-03-03%2014%3A02%3A11",
        }
    )
    call = parse(document, timezone="Europe/Moscow")
    assert call.hangup_cause == "NORMAL_CLEARING"
    assert call.hangup_side == "recv_bye"
    assert call.recording_name == "call 1.wav"
    assert call.started_at == START


# --- callflow shapes and the originating profile -------------------------------------


def test_callflow_as_a_single_object_old_builds() -> None:
    call = parse(freeswitch(callflow=profile(number="1004", destination="89035557788")))
    assert (call.caller.raw, call.destination.raw) == ("1004", "89035557788")


def test_repeated_callflow_keys_old_builds_pick_the_originating_profile() -> None:
    # Old builds add one "callflow" key per profile, newest first.
    newest = json.dumps(profile(None, destination="1002"))
    oldest = json.dumps(profile(None, destination="4957001020"))
    body = json.dumps(freeswitch())[:-1] + f', "callflow": {newest}, "callflow": {oldest}}}'
    call = parse_cdr(body.encode())
    assert call.destination.raw == "4957001020"
    assert len(call.raw["callflow"]) == 2  # both kept for forensics


def test_transferred_call_uses_the_originating_profile_and_later_times() -> None:
    # As FreeSWITCH writes it: newest profile (index 2) first; answer and hangup times
    # only on the profile current at that moment.
    document = freeswitch(
        {"start_epoch": DROP, "end_epoch": DROP},
        callflow=[
            profile(
                "2",
                number="1001",
                destination="1002",
                times={
                    "created_time": "1772535731120455",
                    "answered_time": "1772535737400012",
                    "hangup_time": "1772535833003871",
                },
            ),
            profile(
                "1",
                number="79857771234",
                destination="4957001020",
                times={
                    "created_time": "1772535731120455",
                    "answered_time": "0",
                    "hangup_time": "0",
                },
            ),
        ],
    )
    call = parse(document)
    assert call.caller.raw == "79857771234"
    assert call.destination.raw == "4957001020"
    assert call.started_at == START
    assert call.answered_at == datetime(2026, 3, 3, 11, 2, 17, tzinfo=UTC)
    assert call.ended_at == END
    # No duration/billsec variables: computed from the times.
    assert (call.duration_s, call.billsec) == (102, 96)


def test_without_profile_index_the_last_entry_is_the_originating_one() -> None:
    document = freeswitch(
        callflow=[profile(None, destination="1002"), profile(None, destination="4957001020")]
    )
    assert parse(document).destination.raw == "4957001020"


def test_everything_from_callflow_when_variables_are_missing() -> None:
    document = freeswitch(
        variables=DROP,
        callflow=[
            profile(
                times={
                    "created_time": "1772535731120455",
                    "answered_time": "0",
                    "hangup_time": "1772535833003871",
                }
            )
        ],
    )
    call = parse(document)
    assert call.uuid == uuid.UUID(UUID)
    assert (call.started_at, call.answered_at, call.ended_at) == (START, None, END)
    assert (call.duration_s, call.billsec) == (102, 0)
    assert call.direction is Direction.INBOUND  # from channel_data


# --- times ---------------------------------------------------------------------------


def test_epoch_then_uepoch_then_callflow_then_stamp() -> None:
    times = {"created_time": "1772535000000000", "answered_time": "0", "hangup_time": "0"}
    base = {"start_stamp": "2026-03-03 00:00:00", "end_epoch": DROP}
    with_epoch = freeswitch(
        {**base, "start_epoch": "1772535731", "start_uepoch": "1772535111000000"},
        callflow=[profile(times=times)],
    )
    assert parse(with_epoch).started_at == START
    with_uepoch = freeswitch(
        {**base, "start_epoch": "0", "start_uepoch": "1772535731999999"},
        callflow=[profile(times=times)],
    )
    assert parse(with_uepoch).started_at == START  # truncated to the second
    with_times = freeswitch({**base, "start_epoch": DROP}, callflow=[profile(times=times)])
    assert parse(with_times).started_at == datetime(2026, 3, 3, 10, 50, tzinfo=UTC)
    with_stamp = freeswitch({**base, "start_epoch": DROP})
    assert parse(with_stamp, timezone="Europe/Moscow").started_at == datetime(
        2026, 3, 2, 21, 0, tzinfo=UTC
    )


def test_local_stamps_follow_the_configured_zone() -> None:
    document = freeswitch(
        {
            "start_epoch": DROP,
            "end_epoch": DROP,
            "start_stamp": "2026-03-03 14:02:11",
            "answer_stamp": "2026-03-03 14:02:17",
            "end_stamp": "2026-03-03 14:03:53",
        }
    )
    call = parse(document, timezone="Europe/Moscow")
    assert call.started_at == START
    assert call.answered_at == datetime(2026, 3, 3, 11, 2, 17, tzinfo=UTC)
    assert call.ended_at == END
    assert parse(document, timezone="UTC").started_at == datetime(2026, 3, 3, 14, 2, 11, tzinfo=UTC)


def test_answer_epoch_zero_means_not_answered() -> None:
    call = parse(freeswitch({"answer_epoch": "0", "answer_uepoch": "0", "billsec": "0"}))
    assert call.answered_at is None


def test_no_start_time_anywhere_is_an_error() -> None:
    with pytest.raises(CdrFieldError, match=r"^variables\.start_epoch: "):
        parse(freeswitch({"start_epoch": DROP}))


# --- direction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "caller", "destination", "expected"),
    [
        ("inbound", "79857771234", "4957001020", Direction.INBOUND),
        ("outbound", "1004", "89035557788", Direction.OUTBOUND),
        ("INBOUND", "79857771234", "1001", Direction.INBOUND),
        ("inbound", "1001", "1002", Direction.INTERNAL),
        ("outbound", "1001", "1002", Direction.INTERNAL),
        ("sideways", "79857771234", "4957001020", Direction.UNKNOWN),
        ("inbound", "*97", "1002", Direction.INBOUND),  # a feature code is no extension
    ],
)
def test_direction(direction: str, caller: str, destination: str, expected: Direction) -> None:
    document = freeswitch(
        {"direction": direction}, callflow=[profile(number=caller, destination=destination)]
    )
    assert parse(document).direction is expected


def test_direction_falls_back_to_channel_data() -> None:
    document = freeswitch({"direction": DROP}, channel_data={"direction": "outbound"})
    assert parse(document).direction is Direction.OUTBOUND
    document = freeswitch({"direction": DROP}, channel_data=DROP)
    assert parse(document).direction is Direction.UNKNOWN


# --- identity and numbers fallbacks --------------------------------------------------


def test_uuid_never_comes_from_call_uuid() -> None:
    # On a b-leg `call_uuid` is the a-leg's uuid; taking it would overwrite that call.
    document = freeswitch({"call_uuid": "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444"})
    assert parse(document).uuid == uuid.UUID(UUID)
    with pytest.raises(CdrFieldError, match=r"^variables\.uuid: is missing"):
        parse(freeswitch({"uuid": DROP, "call_uuid": UUID}))


def test_uuid_from_the_caller_profile() -> None:
    assert parse(freeswitch({"uuid": DROP}, callflow=[profile()])).uuid == uuid.UUID(UUID)


def test_numbers_from_variables_without_callflow() -> None:
    document = freeswitch(
        {
            "caller_id": "%22%D0%98%D0%B2%D0%B0%D0%BD%22%20%3C%2B7%20903%20555%3E",
            "sip_to_user": "4957001020",
        }
    )
    call = parse(document)
    assert (call.caller_name, call.caller.raw) == ("Иван", "+7 903 555")
    assert call.destination.raw == "4957001020"
    fallback = parse(freeswitch({"sip_from_user": "1004", "sip_req_user": "1002"}))
    assert (fallback.caller.raw, fallback.destination.raw) == ("1004", "1002")


def test_malformed_fallbacks_that_are_not_needed_do_not_matter() -> None:
    document = freeswitch({"ani": {"x": 1}, "sip_req_user": [1]}, callflow=[profile()])
    assert parse(document).caller.raw == "79857771234"
    with pytest.raises(CdrFieldError, match=r"^variables\.ani: must be text"):
        parse(freeswitch({"ani": {"x": 1}}))


# --- hangup and SIP code -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"sip_term_status": "486"}, 486),
        ({"sip_term_status": DROP, "proto_specific_hangup_cause": "sip%3A603"}, 603),
        ({"sip_term_status": DROP, "sip_invite_failure_status": "487"}, 487),
        ({"sip_term_status": DROP}, None),
    ],
)
def test_sip_code_sources(variables: dict[str, object], expected: int | None) -> None:
    assert parse(freeswitch(variables)).sip_code == expected


@pytest.mark.parametrize("disposition", ["recv_bye", "send_bye", "recv_cancel", "send_refuse"])
def test_hangup_disposition(disposition: str) -> None:
    assert parse(freeswitch({"sip_hangup_disposition": disposition})).hangup_side == disposition


# --- recording name ------------------------------------------------------------------

RECORD_SESSION_LOG = {
    "applications": [
        {"app_name": "record_session", "app_data": "/rec/first.wav"},
        {"app_name": "bridge", "app_data": "sofia/gateway/trunk1/4957001020"},
        {"app_name": "record_session", "app_data": "{record_min_sec=3}/rec/second.wav +600"},
    ]
}


def test_recording_candidates_are_tried_in_order() -> None:
    variables = {
        "cj_record_name": "cj.wav",
        "record_name": "name.wav",
        "record_path": "/var/rec",
    }
    assert parse(freeswitch(variables, app_log=RECORD_SESSION_LOG)).recording_name == "cj.wav"
    variables["cj_record_name"] = DROP
    assert parse(freeswitch(variables, app_log=RECORD_SESSION_LOG)).recording_name == "name.wav"
    variables["record_name"] = DROP
    # record_path alone is not a file: fall through to record_session, the last one.
    assert parse(freeswitch(variables, app_log=RECORD_SESSION_LOG)).recording_name == "second.wav"
    assert parse(freeswitch(variables)).recording_name is None


def test_custom_recording_variables() -> None:
    document = freeswitch(
        {
            "my_file": "%2Fdata%2Fmine.wav",
            "record_name": "name.wav",
            "dir": "/x",
            "base": "joined.wav",
        },
        app_log=RECORD_SESSION_LOG,
    )
    assert parse(document, recording_variables=("my_file",)).recording_name == "mine.wav"
    assert parse(document, recording_variables=("dir+base",)).recording_name == "joined.wav"
    assert (
        parse(document, recording_variables=("record_session", "record_name")).recording_name
        == "second.wav"
    )
    assert parse(document, recording_variables=("absent",)).recording_name is None
    assert parse(document, recording_variables=()).recording_name is None


def test_record_session_from_the_dialplan_with_variables_expanded() -> None:
    applications = [{"app_name": "record_session", "app_data": "/rec/${uuid}.wav"}]
    document = freeswitch(callflow=[profile(applications=applications)])
    assert parse(document).recording_name == f"{UUID}.wav"
    # A global ($${…}) cannot be resolved from the CDR, but only the base name is used;
    # an unknown variable in the name makes the candidate unusable.
    classic = [{"app_name": "record_session", "app_data": "$${recordings_dir}/${uuid}.wav"}]
    assert (
        parse(freeswitch(callflow=[profile(applications=classic)])).recording_name == f"{UUID}.wav"
    )
    in_dir = [{"app_name": "record_session", "app_data": "/rec/${nope}/x.wav"}]
    assert parse(freeswitch(callflow=[profile(applications=in_dir)])).recording_name == "x.wav"
    unknown = [{"app_name": "record_session", "app_data": "/rec/${nope}.wav"}]
    assert parse(freeswitch(callflow=[profile(applications=unknown)])).recording_name is None


def test_app_log_wins_over_the_dialplan() -> None:
    applications = [{"app_name": "record_session", "app_data": "/rec/dialplan.wav"}]
    document = freeswitch(callflow=[profile(applications=applications)], app_log=RECORD_SESSION_LOG)
    assert parse(document).recording_name == "second.wav"


def test_record_session_from_last_app() -> None:
    document = freeswitch({"last_app": "record_session", "last_arg": "%2Frec%2Flast.wav"})
    assert parse(document).recording_name == "last.wav"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("record_name", ".."),
        ("record_name", "%2E%2E"),
        ("record_name", "/var/rec/"),
        ("record_name", "..%5C..%5Cwin.ini"),
        ("record_name", "a%00b.wav"),
        ("cj_record_name", "x%0Ay.wav"),
    ],
)
def test_recording_traversal_is_refused(variable: str, value: str) -> None:
    with pytest.raises(CdrFieldError, match=rf"^variables\.{variable}: "):
        parse(freeswitch({variable: value}))


def test_traversal_in_record_session_is_refused() -> None:
    log = {"applications": [{"app_name": "record_session", "app_data": "/rec/.. +10"}]}
    with pytest.raises(CdrFieldError, match=r"^app_log\.applications\[0\]\.app_data: "):
        parse(freeswitch(app_log=log))


# --- privacy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "private"),
    [
        ("private", True),
        ("PRIVATE", True),
        ("true", True),
        ("public", False),
        ("", False),
        (DROP, False),
    ],
)
def test_privacy_variable(value: object, private: bool) -> None:
    assert parse(freeswitch({"cj_record_tag": value})).private is private


def test_custom_privacy_variable() -> None:
    document = freeswitch({"cj_record_tag": "public", "rec_privacy": "private"})
    assert parse(document).private is False
    assert parse(document, privacy_variable="rec_privacy").private is True


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (freeswitch(variables=DROP, callflow="x"), "callflow"),
        (freeswitch(callflow=[1]), r"callflow\[0\]"),
        (freeswitch(callflow=[{"caller_profile": []}]), r"callflow\[0\]\.caller_profile"),
        (freeswitch(callflow=[{"profile_index": "one"}]), r"callflow\[0\]\.profile_index"),
        (freeswitch({"start_epoch": "yesterday"}), r"variables\.start_epoch"),
        (freeswitch({"start_epoch": "99999999999999"}), r"variables\.start_epoch"),
        (freeswitch({"end_epoch": "1772535000"}), r"variables\.end_epoch \(ended_at\)"),
        (freeswitch({"duration": "-1"}), r"variables\.duration"),
        (freeswitch({"billsec": "500", "duration": "10"}), r"variables\.billsec \(billsec\)"),
        (freeswitch({"sip_term_status": "99"}), r"variables\.sip_term_status \(sip_code\)"),
        (freeswitch({"uuid": "nope"}), r"variables\.uuid"),
        (freeswitch({"hangup_cause": {"a": 1}}), r"variables\.hangup_cause"),
        (freeswitch(app_log={"applications": "record_session"}), r"app_log\.applications"),
    ],
)
def test_errors_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(CdrError, match=rf"^{field}: "):
        parse(document)


def test_integer_variables_are_accepted() -> None:
    # encode-values=false with a post-processor that wrote numbers as numbers.
    document = load(FS_PLAIN)
    document["variables"].update({"start_epoch": 1772535731, "duration": 102, "billsec": 96})
    call = parse_cdr(json.dumps(document).encode(), CdrOptions())
    assert (call.started_at, call.duration_s, call.billsec) == (START, 102, 96)
