"""The grpc-timeout header, both directions."""

from __future__ import annotations

import datetime

import pytest

from cj.rpc.timeouts import grpc_timeout_delta, parse_grpc_timeout


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2H", 7200.0),
        ("3M", 180.0),
        ("10S", 10.0),
        ("250m", 0.25),
        ("1500u", 0.0015),
        ("999n", 999e-9),
        ("99999999S", 99999999.0),
        ("0m", 0.0),
        (" 5S ", 5.0),
    ],
)
def test_parses_every_unit(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "S", "10", "10s", "10 S", "-1S", "1.5S", "123456789S", "10SS", "banana"]
)
def test_rejects_malformed_values_naming_the_header(value: str) -> None:
    with pytest.raises(ValueError, match="malformed grpc-timeout"):
        parse_grpc_timeout(value)


def test_long_garbage_is_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_grpc_timeout("x" * 1000)
    assert len(str(caught.value)) < 200


def test_short_timeouts_keep_microseconds() -> None:
    assert grpc_timeout_delta(0.25) == datetime.timedelta(milliseconds=250)
    assert grpc_timeout_delta(99.999999) == datetime.timedelta(microseconds=99_999_999)
    assert grpc_timeout_delta(0) == datetime.timedelta(microseconds=1)


def test_long_timeouts_round_up_to_whole_seconds_to_fit_eight_digits() -> None:
    delta = grpc_timeout_delta(150.25)
    assert delta == datetime.timedelta(seconds=151)
    assert delta.microseconds == 0  # purerpc then writes "151S", not 9+ digits of "u"
    assert grpc_timeout_delta(3600) == datetime.timedelta(hours=1)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 1e9])
def test_rejects_impossible_timeouts(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        grpc_timeout_delta(bad)
