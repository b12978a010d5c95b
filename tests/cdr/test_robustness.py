"""Whatever the input, parse_cdr returns a valid Call or raises CdrError: nothing else.

A `CdrUnexpectedError` (the safety net for parser bugs) counts as a failure here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cj.cdr import CdrError, CdrOptions, CdrUnexpectedError, parse_cdr
from cj.cdr.cli import call_summary
from cj.model import Call
from tests.cdr.helpers import ALL_SAMPLES

OPTIONS = (
    CdrOptions(),
    CdrOptions(timezone="Europe/Moscow"),
    CdrOptions(timezone="America/New_York"),
)
SAMPLE_BYTES = [path.read_bytes() for path in ALL_SAMPLES]
SAMPLE_DOCUMENTS = [json.loads(data) for data in SAMPLE_BYTES]

# Values that hit the parsers' edges: numbers as text, zero, huge, encoded, paths.
TRICKY_SCALARS = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "1e5",
        "NaN",
        "99999999999999999999999",
        "%2B7%20903",
        "%",
        "%zz",
        "%00",
        "../..",
        "..",
        "a\\b",
        "inbound",
        "outbound",
        "private",
        "record_session",
        "sip:486",
        "2026-03-08 02:30:00",
        "2026-02-30 25:61:61",
        "${uuid}",
        "$${x}/${nope}",
        "{a=b}/x.wav +10",
        "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444",
        2**63,
        -(2**63),
        10**30,
        0,
        1,
        1772535731,
        1772535731120455,
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | TRICKY_SCALARS
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12)
            | st.sampled_from(["app_name", "app_data", "caller_profile", "times", "profile_index"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)

# Storable JSON: what a PBX may legitimately put in a field we do not read. (NaN,
# Infinity, NUL and lone surrogates are refused by design: jsonb cannot hold them.)
STORABLE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
STORABLE_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(STORABLE_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def check(data: bytes, options: CdrOptions) -> Call | None:
    """Parse; a Call must be storable and printable, a failure must be a plain CdrError."""
    try:
        call = parse_cdr(data, options)
    except CdrUnexpectedError as exc:
        raise AssertionError(f"parser bug: {exc!r}") from exc.__cause__
    except CdrError as exc:
        assert str(exc).startswith(f"{exc.field}: ")
        return None
    assert isinstance(call, Call)
    # What the agent stores and prints must encode: raw as strict JSON, text as UTF-8.
    json.dumps(call.raw, allow_nan=False).encode("utf-8")
    json.dumps(call_summary(call), ensure_ascii=False).encode("utf-8")
    return call


@given(data=st.binary(max_size=2048), options=st.sampled_from(OPTIONS))
def test_random_bytes(data: bytes, options: CdrOptions) -> None:
    check(data, options)


@given(data=st.data(), options=st.sampled_from(OPTIONS))
def test_truncated_samples(data: st.DataObject, options: CdrOptions) -> None:
    body = data.draw(st.sampled_from(SAMPLE_BYTES))
    cut = data.draw(st.integers(0, len(body) - 1))
    check(body[:cut], options)


@given(data=st.data(), options=st.sampled_from(OPTIONS))
def test_byte_flips_in_samples(data: st.DataObject, options: CdrOptions) -> None:
    body = bytearray(data.draw(st.sampled_from(SAMPLE_BYTES)))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    check(bytes(body), options)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in a JSON value (not the root)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    for key, item in items:
        found.append((*prefix, key))
        found.extend(paths(item, (*prefix, key)))
    return found


def mutate(document: Any, path: tuple[Any, ...], replacement: Any, drop: bool) -> None:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


@given(data=st.data(), options=st.sampled_from(OPTIONS))
def test_mutated_samples(data: st.DataObject, options: CdrOptions) -> None:
    document = json.loads(json.dumps(data.draw(st.sampled_from(SAMPLE_DOCUMENTS))))
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = paths(document)
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        mutate(document, path, data.draw(JSON_VALUES), drop=data.draw(st.booleans()))
    check(json.dumps(document).encode(), options)


@given(data=st.data())
def test_mutation_keeps_valid_fields_valid(data: st.DataObject) -> None:
    # Adding unknown keys anywhere never breaks a document.
    document = json.loads(json.dumps(data.draw(st.sampled_from(SAMPLE_DOCUMENTS))))
    containers = [()] + [p for p in paths(document) if isinstance(_get(document, p), dict)]
    target = _get(document, data.draw(st.sampled_from(containers)))
    target[f"zz_unknown_{data.draw(st.integers(0, 9))}"] = data.draw(STORABLE_VALUES)
    assert check(json.dumps(document).encode(), CdrOptions(timezone="Europe/Moscow")) is not None


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


@pytest.mark.parametrize("depth", [10, 63, 1000, 200_000])
def test_deeply_nested_arrays_in_a_field(depth: int) -> None:
    body = b'{"uuid": "x", "clid": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(CdrError):
        parse_cdr(body)
