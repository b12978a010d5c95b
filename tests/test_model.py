"""The call model and phone-number keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cj.model import Call, Direction, ModelError, parse_uuid
from cj.phone import PhoneNumber, digits_of, search_key
from tests.factories import BASE_TIME, make_call


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+7 (926) 000-11-22", "79260001122"),
        ("8 900 280 04 21", "89002800421"),
        ("1004", "1004"),
        ("", ""),
        ("anonymous", ""),
        ("٣٤٥", ""),  # non-ASCII digits are not dialable digits
    ],
)
def test_digits_keep_only_ascii_digits(raw: str, digits: str) -> None:
    number = PhoneNumber(raw)
    assert number.raw == raw
    assert number.digits == digits
    assert number.reversed_digits == digits[::-1]


def test_search_key_cuts_long_queries_to_the_significant_digits() -> None:
    assert search_key("89260001122") == "9260001122"
    assert search_key("+7 926 000-11-22") == "9260001122"
    assert search_key("1004") == "1004"
    assert search_key("89260001122", exact=True) == "89260001122"
    with pytest.raises(ValueError, match="at least one digit"):
        search_key("+-() ")


@given(st.text(max_size=40))
def test_digits_of_is_a_subsequence(text: str) -> None:
    digits = digits_of(text)
    assert all(c in "0123456789" for c in digits)
    assert len(digits) == sum(c in "0123456789" for c in text)


def test_times_are_normalised_to_utc() -> None:
    moscow = timezone(timedelta(hours=3))
    call = make_call(
        started_at=datetime(2026, 3, 2, 9, 15, 4, tzinfo=moscow),
        answered_at=None,
        ended_at=None,
    )
    assert call.started_at == datetime(2026, 3, 2, 6, 15, 4, tzinfo=UTC)
    assert call.started_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"answered_at": BASE_TIME - timedelta(seconds=1)}, "answered_at"),
        ({"ended_at": BASE_TIME - timedelta(seconds=1)}, "ended_at"),
        ({"duration_s": -1}, "duration_s"),
        ({"billsec": -1}, "billsec"),
        ({"billsec": 100, "duration_s": 10}, "billsec"),
        ({"sip_code": 42}, "sip_code"),
        ({"started_at": datetime(2026, 1, 1)}, "started_at"),
        ({"caller_name": "x" * 300}, "caller_name"),
        ({"caller_name": "a\x00b"}, "caller_name"),
        ({"recording_name": ""}, "recording_name"),
        ({"duration_s": True}, "duration_s"),
    ],
)
def test_invalid_calls_name_the_field(overrides: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ModelError) as info:
        make_call(**overrides)
    assert info.value.field == field


def test_phone_number_refuses_nul_and_overlong() -> None:
    with pytest.raises(ValueError, match="NUL"):
        PhoneNumber("1\x002")
    with pytest.raises(ValueError, match="longer"):
        PhoneNumber("1" * 200)


def test_parse_uuid() -> None:
    value = uuid.uuid4()
    assert parse_uuid(f" {value} ") == value
    with pytest.raises(ModelError, match="call_uuid: not a valid UUID"):
        parse_uuid("nope", "call_uuid")


def test_direction_values_are_the_api_names() -> None:
    assert [d.value for d in Direction] == ["inbound", "outbound", "internal", "unknown"]
    assert isinstance(make_call(), Call)
