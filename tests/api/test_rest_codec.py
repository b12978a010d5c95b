"""The REST codecs without I/O (`cj_api.rest_primitives`, `call_codec`, `search_codec`,
`recording_codec`): times, uuids, calls, search parameters, upload headers, ranges and
ETags."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from cj.errors import ErrorCode, ServiceError
from cj.model import Direction
from cj_api.call_codec import batch_items_from_json, call_from_json, call_to_json
from cj_api.recording_codec import select_range, upload_header_from_headers
from cj_api.rest_primitives import (
    RestError,
    etag_matches,
    format_timestamp,
    parse_json,
    parse_timestamp,
    parse_uuid,
)
from cj_api.search_codec import search_query_from_params
from cj_api.service import InvalidCall
from tests.factories import make_call


def field_of(error: pytest.ExceptionInfo[ServiceError]) -> str | None:
    return error.value.field


# --- times and uuids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T06:00:00Z", datetime(2026, 3, 2, 6, tzinfo=UTC)),
        ("2026-03-02t06:00:00z", datetime(2026, 3, 2, 6, tzinfo=UTC)),
        ("2026-03-02T09:00:00+03:00", datetime(2026, 3, 2, 6, tzinfo=UTC)),
        ("2026-03-02T06:00:00-00:00", datetime(2026, 3, 2, 6, tzinfo=UTC)),
        ("2026-03-02T06:00:00.5Z", datetime(2026, 3, 2, 6, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-03-02T06:00:00.123456789Z", datetime(2026, 3, 2, 6, 0, 0, 123_456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
    ],
)
def test_rfc3339_times_are_read_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text, "from")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("2026-03-02T06:00:00", "timezone"),
        ("2026-03-02", "RFC 3339"),
        ("2026-03-02 06:00:00Z", "RFC 3339"),
        ("20260302T060000Z", "RFC 3339"),
        ("2026-02-30T06:00:00Z", "valid"),
        ("2026-03-02T06:00:00+25:00", "valid"),
        ("", "RFC 3339"),
        (1700000000, "string"),
    ],
)
def test_bad_times_name_the_field(text: object, hint: str) -> None:
    with pytest.raises(ServiceError) as error:
        parse_timestamp(text, "call.started_at")
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert field_of(error) == "call.started_at"
    assert hint in error.value.message


@given(st.datetimes(timezones=st.just(UTC)))
def test_formatted_times_read_back(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert text.endswith("Z")
    assert parse_timestamp(text, "t") == moment


def test_uuids_canonical_or_bare_hex_only() -> None:
    value = uuid.uuid4()
    assert parse_uuid(str(value), "u") == value
    assert parse_uuid(str(value).upper(), "u") == value
    assert parse_uuid(value.hex, "u") == value
    for bad in (f"{{{value}}}", f"urn:uuid:{value}", str(value)[:-1], "x" * 36, 5, None):
        with pytest.raises(ServiceError) as error:
            parse_uuid(bad, "call_uuid")
        assert field_of(error) == "call_uuid"


def test_json_is_strict() -> None:
    assert parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    for bad in (b"", b"  ", b"{", b'{"a": Infinity}', b"\xff", b"[" * 50_000):
        with pytest.raises(ServiceError) as error:
            parse_json(bad)
        assert field_of(error) == "body"


# --- calls ----------------------------------------------------------------------------------


def test_call_round_trips_through_json() -> None:
    call = make_call(
        caller_name="Ivan",
        recording_name="r.wav",
        private=True,
        direction=Direction.OUTBOUND,
        raw={"x": [1, {"y": None}]},
    )
    body = call_to_json(call, include_raw=True)
    assert call_from_json(body) == call
    assert call_from_json(body).raw == call.raw
    assert "raw" not in call_to_json(call)


def test_read_only_digits_are_ignored_on_input() -> None:
    body = call_to_json(make_call(caller="+7 916 123-45-67"))
    body["caller_digits"] = "000"
    assert call_from_json(body).caller.digits == "79161234567"


def test_batch_items_keep_order_and_explain_rejections() -> None:
    good = call_to_json(make_call())
    items = batch_items_from_json({"calls": [good, {**good, "uuid": "u-1"}, 7]}, 10)
    assert [type(item).__name__ for item in items] == ["Call", "InvalidCall", "InvalidCall"]
    rejected = items[1]
    assert isinstance(rejected, InvalidCall)
    assert (rejected.uuid, rejected.error.field) == ("u-1", "call.uuid")
    with pytest.raises(ServiceError) as error:
        batch_items_from_json({"calls": [good] * 11}, 10)
    assert error.value.code is ErrorCode.RESOURCE_EXHAUSTED


# --- search ---------------------------------------------------------------------------------


def test_search_parameters() -> None:
    query = search_query_from_params(
        {
            "phone": ["+7 900 280-04-21"],
            "exact": ["TRUE"],
            "from": ["2026-03-02T03:00:00+03:00"],
            "direction": ["inbound"],
            "has_recording": ["false"],
            "limit": ["7"],
            "page_token": [""],
        }
    )
    assert (query.phone, query.exact, query.limit) == ("+7 900 280-04-21", True, 7)
    assert query.start == datetime(2026, 3, 2, tzinfo=UTC) and query.end is None
    assert (query.direction, query.has_recording, query.page_token) == (
        Direction.INBOUND,
        False,
        None,
    )
    interval = search_query_from_params(
        {"from": ["2026-03-02T00:00:00Z"], "to": ["2026-03-03T00:00:00Z"]}
    )
    assert (interval.phone, interval.limit, interval.has_recording) == (None, 100, None)


def test_search_errors_use_the_rest_parameter_names() -> None:
    with pytest.raises(ServiceError) as error:
        search_query_from_params({"from": ["2026-03-03T00:00:00Z"], "to": ["2026-03-02T00:00:00Z"]})
    assert field_of(error) == "to"  # SearchQuery calls it `end`


# --- uploads --------------------------------------------------------------------------------

SHA = hashlib.sha256(b"abc").hexdigest()
CALL = uuid.uuid4()


def headers(**values: str) -> Headers:
    base = {"Content-Type": "audio/wav", "Content-Length": "3", "X-Content-SHA256": SHA}
    base.update({k.replace("_", "-"): v for k, v in values.items()})
    return Headers([(k, v) for k, v in base.items() if v != "-"])


def test_upload_headers() -> None:
    header = upload_header_from_headers(CALL, headers(X_Content_SHA256=SHA.upper()))
    assert (header.size, header.sha256, header.file_name) == (3, SHA, f"{CALL}.wav")
    digest = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    by_digest = upload_header_from_headers(
        CALL, headers(X_Content_SHA256="-", Content_Digest=f"sha-512=:AA==:, sha-256=:{digest}:")
    )
    assert by_digest.sha256 == SHA
    chunked = upload_header_from_headers(CALL, headers(Content_Length="-", X_Content_Length="3"))
    assert chunked.size == 3
    named = upload_header_from_headers(CALL, headers(X_File_Name="%D0%B0%20b.wav"))
    assert named.file_name == "а b.wav"
    typed = upload_header_from_headers(CALL, headers(Content_Type="Audio/Vnd.Wave; rate=8000"))
    assert typed.size == 3


@pytest.mark.parametrize(
    ("values", "status", "field"),
    [
        ({"Content_Type": "audio/mpeg"}, 415, "Content-Type"),
        ({"Content_Type": "-"}, 415, "Content-Type"),
        ({"Content_Length": "-"}, 411, "Content-Length"),
        ({"Content_Length": "-1"}, 400, "Content-Length"),
        ({"X_Content_Length": "4"}, 400, "X-Content-Length"),
        ({"X_Content_SHA256": "-"}, 400, "X-Content-SHA256"),
        ({"X_Content_SHA256": "g" * 64}, 400, "X-Content-SHA256"),
        ({"Content_Digest": "sha-256=:" + "A" * 44 + ":"}, 400, "Content-Digest"),
        ({"Content_Digest": "sha-256=abc"}, 400, "Content-Digest"),
        ({"Content_Digest": "sha-256=:!!:"}, 400, "Content-Digest"),
        ({"X_File_Name": "%C3"}, 400, "X-File-Name"),
    ],
)
def test_bad_upload_headers(values: dict[str, str], status: int, field: str) -> None:
    with pytest.raises(ServiceError) as error:
        upload_header_from_headers(CALL, headers(**values))
    got = error.value.http_status if isinstance(error.value, RestError) else 400
    assert (got, field_of(error)) == (status, field)


# --- ranges and ETags -----------------------------------------------------------------------

ETAG = f'"{SHA}"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-200", (90, 100)),
        ("bytes=0-1,4-5", None),  # several ranges: the whole file
        ("items=0-1", None),  # another unit: ignored
        ("bytes=9-2", None),  # malformed: ignored
        ("bytes=x", None),
    ],
)
def test_range_selection(header: str | None, expected: tuple[int, int] | None) -> None:
    chosen = select_range(header, None, ETAG, 100)
    assert (chosen and (chosen.start, chosen.end)) == expected


def test_unsatisfiable_range_is_416_with_the_size() -> None:
    for header, size in (("bytes=100-", 100), ("bytes=0-", 0)):
        with pytest.raises(RestError) as error:
            select_range(header, None, ETAG, size)
        assert error.value.http_status == 416
        assert error.value.headers == {"Content-Range": f"bytes */{size}"}


def test_if_range_needs_the_current_strong_etag() -> None:
    assert select_range("bytes=0-0", ETAG, ETAG, 10) is not None
    assert select_range("bytes=0-0", '"old"', ETAG, 10) is None
    assert select_range("bytes=0-0", f"W/{ETAG}", ETAG, 10) is None
    assert select_range("bytes=0-0", "Wed, 21 Oct 2015 07:28:00 GMT", ETAG, 10) is None
    chosen = select_range("bytes=2-4", None, ETAG, 10)
    assert chosen is not None and chosen.content_range == "bytes 2-4/10"


def test_if_none_match() -> None:
    assert etag_matches(ETAG, ETAG)
    assert etag_matches(f'"a", W/{ETAG}', ETAG)
    assert etag_matches("*", ETAG)
    assert not etag_matches('"a"', ETAG)
    assert not etag_matches(None, ETAG)
