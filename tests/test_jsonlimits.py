"""The JSON nesting limit (cj.jsonlimits): exact at the boundary, cheap on hostile input."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cj.codec import MAX_RAW_JSON, call_from_pb, call_to_pb
from cj.errors import ErrorCode, ServiceError
from cj.jsonlimits import MAX_JSON_DEPTH, depth_exceeds
from tests.factories import make_call


def nested(depth: int) -> Any:
    value: Any = {}
    for index in range(depth - 1):
        value = [value] if index % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_up_to_the_limit_is_accepted(depth: int) -> None:
    assert not depth_exceeds(nested(depth))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900])
def test_beyond_the_limit_is_refused(depth: int) -> None:
    assert depth_exceeds(nested(depth))


def test_scalars_and_wide_documents_are_shallow() -> None:
    assert not depth_exceeds("text")
    assert not depth_exceeds({"a": list(range(10_000)), "b": [{"c": 1}] * 1000})


@pytest.mark.parametrize(
    "raw_json",
    [
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser goes
        '{"a": "' + '\\"' * 400_000,  # an unterminated string full of escapes
        '"' * (MAX_RAW_JSON - 10),
        "{" * 500_000,
    ],
)
def test_hostile_raw_json_is_refused_quickly_naming_the_field(raw_json: str) -> None:
    message = call_to_pb(make_call())
    message.raw_json = raw_json
    began = time.perf_counter()
    with pytest.raises(ServiceError) as info:
        call_from_pb(message)
    assert time.perf_counter() - began < 1.0
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert info.value.field == "call.raw_json"


def test_raw_json_at_the_limit_is_kept() -> None:
    message = call_to_pb(make_call())
    message.raw_json = json.dumps(nested(MAX_JSON_DEPTH))
    assert call_from_pb(message).raw == nested(MAX_JSON_DEPTH)
