"""The REST codec: JSON bodies, query parameters and headers ⇄ the model. No I/O.

Every function here either returns model objects or raises `ServiceError` naming the
field at fault, so `cj_api.rest` only wires HTTP to `CallJournalService`. Field names
follow the gRPC side (`call.started_at`, `uuids[3]`, `page_token`); query parameters
and headers are named as the client spelled them (`from`, `X-Content-SHA256`).

JSON shapes (see `cj_api.openapi` for the schemas):
- a call: flat object; times are RFC 3339 (`…Z` on output); `caller_digits` and
  `destination_digits` are read-only (sent, ignored on input).
- a call record: `{"call": Call, "recording": Recording | null}`, as gRPC's CallRecord.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from werkzeug.datastructures import Headers
from werkzeug.http import parse_etags, parse_if_range_header, parse_range_header

from cj.db.calls import CallRecord, CallState, SearchError, SearchQuery, UpsertOutcome
from cj.db.privacy import PrivacyChange
from cj.errors import ErrorCode, ServiceError
from cj.jsonlimits import MAX_JSON_DEPTH, depth_exceeds
from cj.model import Call, Direction, ModelError, Recording, RecordingStatus
from cj.phone import PhoneNumber
from cj_api.admin_codec import flag_and_reason_from_json
from cj_api.service import AddCallsResult, InvalidCall, UploadHeader, UploadResult

__all__ = [
    "CALL_FIELDS",
    "MAX_BATCH_CALLS",
    "RECORDING_CONTENT_TYPES",
    "SEARCH_PARAMETERS",
    "ByteRange",
    "RestError",
    "add_call_outcome_to_json",
    "add_calls_result_to_json",
    "batch_items_from_json",
    "call_from_json",
    "call_state_to_json",
    "call_to_json",
    "check_uuids_from_json",
    "etag_matches",
    "format_timestamp",
    "parse_json",
    "parse_timestamp",
    "parse_uuid",
    "privacy_change_to_json",
    "privacy_request_from_json",
    "record_to_json",
    "recording_to_json",
    "search_query_from_params",
    "select_range",
    "upload_header_from_headers",
    "upload_result_to_json",
]

# The fields of a call on input, and which of them must be given.
CALL_FIELDS = frozenset(
    {
        "uuid",
        "source",
        "caller_number",
        "caller_digits",
        "caller_name",
        "caller_extension",
        "destination_number",
        "destination_digits",
        "destination_extension",
        "direction",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_s",
        "billsec",
        "hangup_cause",
        "hangup_side",
        "sip_code",
        "private",
        "recording_name",
        "raw",
    }
)
REQUIRED_CALL_FIELDS = ("uuid", "caller_number", "destination_number", "started_at")
SEARCH_PARAMETERS = (
    "phone",
    "exact",
    "from",
    "to",
    "direction",
    "has_recording",
    "limit",
    "page_token",
)
RECORDING_CONTENT_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream"}
)
DEFAULT_LIMIT = 100
MAX_BATCH_CALLS = 10_000

# RFC 3339 date-time; the offset is optional here only to say "naive" precisely.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}):(\d{2})(\.\d{1,32})?([Zz]|[+-]\d{2}:\d{2})?$"
)
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}$"
)
_DIGITS = re.compile(r"^[0-9]{1,19}$")


class RestError(ServiceError):
    """A ServiceError with an HTTP status more precise than its code's, plus headers.

    411 (no length), 415 (media type) and 416 (range) have no code of their own: the
    body still carries the closest code, the status line the precise answer.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, field=field)
        self.http_status = status
        self.headers = dict(headers or {})


# --- primitives ------------------------------------------------------------------------


def parse_json(data: bytes) -> Any:
    """Decode a UTF-8 JSON document; NaN and Infinity are refused (they are not JSON)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError.invalid("body", "is not UTF-8") from None
    if not text.strip():
        raise ServiceError.invalid("body", "is empty: send a JSON object")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, and _refuse_constant's
        raise ServiceError.invalid("body", f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise ServiceError.invalid(
            "body", f"is nested too deeply (calls' raw documents: {MAX_JSON_DEPTH} levels at most)"
        ) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_uuid(value: object, field: str) -> uuid_module.UUID:
    """A UUID from its text (8-4-4-4-12 hex digits, hyphens optional, any case), else
    INVALID_ARGUMENT naming `field`. Unlike `uuid.UUID`, no braces or `urn:uuid:`."""
    if not isinstance(value, str):
        raise ServiceError.invalid(field, "must be a UUID string")
    if not _UUID.match(value):
        raise ServiceError.invalid(field, f"not a valid UUID: {value[:64]!r}")
    return uuid_module.UUID(value)


def parse_timestamp(value: object, field: str) -> datetime:
    """An RFC 3339 date-time with a zone (`Z` or `±hh:mm`), as UTC; else 400 naming `field`."""
    if not isinstance(value, str):
        raise ServiceError.invalid(field, "must be an RFC 3339 date-time string")
    match = _RFC3339.match(value)
    if match is None:
        raise ServiceError.invalid(
            field, f"not an RFC 3339 date-time (like 2026-03-02T06:00:00Z): {value[:64]!r}"
        )
    date, hours_minutes, seconds, fraction, offset = match.groups()
    if offset is None:
        raise ServiceError.invalid(field, "must carry a timezone: end it with Z or ±hh:mm")
    # A leap second (…:60) is valid RFC 3339 that datetime cannot hold: it is the next one.
    leap = seconds == "60"
    text = f"{date}T{hours_minutes}:{'59' if leap else seconds}{(fraction or '')[:7]}"
    text += "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ServiceError.invalid(field, f"not a valid date-time: {exc}") from None
    try:
        return moment.astimezone(UTC) + (timedelta(seconds=1) if leap else timedelta(0))
    except OverflowError:
        raise ServiceError.invalid(field, "is out of the supported range") from None


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`, microseconds only when there are some."""
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _optional_timestamp(value: object, field: str) -> datetime | None:
    return None if value is None else parse_timestamp(value, field)


# --- calls ------------------------------------------------------------------------------


def call_from_json(data: object, prefix: str = "call") -> Call:
    """A Call from its JSON object; ServiceError INVALID_ARGUMENT naming `prefix.field`."""
    if not isinstance(data, dict):
        raise ServiceError.invalid(prefix, "must be a JSON object")
    unknown = sorted(set(data) - CALL_FIELDS)
    if unknown:
        raise ServiceError.invalid(
            f"{prefix}.{unknown[0]}", f"unknown field(s): {', '.join(unknown)[:200]}"
        )
    missing = [name for name in REQUIRED_CALL_FIELDS if data.get(name) is None]
    if missing:
        raise ServiceError.invalid(f"{prefix}.{missing[0]}", "is required")

    def field(name: str) -> str:
        return f"{prefix}.{name}"

    # Absent fields take the model's defaults; null is only accepted where the schema
    # says nullable (answered_at, ended_at, sip_code, recording_name, raw).
    def text(name: str, default: str = "", *, nullable: bool = False) -> str:
        value = data.get(name, default)
        if value is None and nullable:
            return default
        if not isinstance(value, str):
            raise ServiceError.invalid(field(name), "must be a string")
        return value

    def integer(name: str, default: int) -> int:
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ServiceError.invalid(field(name), "must be an integer")
        return value

    def number(name: str) -> PhoneNumber:
        try:
            return PhoneNumber(text(name))
        except ValueError as exc:
            raise ServiceError.invalid(field(name), str(exc)) from None

    try:
        direction = Direction(text("direction", Direction.UNKNOWN.value))
    except ValueError:
        allowed = ", ".join(d.value for d in Direction)
        raise ServiceError.invalid(field("direction"), f"must be one of {allowed}") from None
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise ServiceError.invalid(field("private"), "must be true or false")
    raw = data.get("raw")
    if raw is not None and not isinstance(raw, dict):
        raise ServiceError.invalid(field("raw"), "must be a JSON object")
    if raw and depth_exceeds(raw):
        raise ServiceError.invalid(field("raw"), f"nested deeper than {MAX_JSON_DEPTH} levels")
    sip_code = data.get("sip_code")
    if sip_code is not None and (isinstance(sip_code, bool) or not isinstance(sip_code, int)):
        raise ServiceError.invalid(field("sip_code"), "must be an integer")
    try:
        return Call(
            uuid=parse_uuid(data["uuid"], field("uuid")),
            caller=number("caller_number"),
            destination=number("destination_number"),
            started_at=parse_timestamp(data["started_at"], field("started_at")),
            answered_at=_optional_timestamp(data.get("answered_at"), field("answered_at")),
            ended_at=_optional_timestamp(data.get("ended_at"), field("ended_at")),
            direction=direction,
            source=text("source"),
            caller_name=text("caller_name"),
            caller_extension=text("caller_extension"),
            destination_extension=text("destination_extension"),
            duration_s=integer("duration_s", 0),
            billsec=integer("billsec", 0),
            hangup_cause=text("hangup_cause"),
            hangup_side=text("hangup_side"),
            sip_code=sip_code,
            private=private,
            # As in gRPC (proto3 strings), an empty name means "no name".
            recording_name=text("recording_name", nullable=True) or None,
            raw=raw or {},
        )
    except ModelError as exc:
        raise ServiceError.invalid(field(exc.field), exc.reason) from None


def call_to_json(call: Call, *, include_raw: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": str(call.uuid),
        "source": call.source,
        "caller_number": call.caller.raw,
        "caller_digits": call.caller.digits,
        "caller_name": call.caller_name,
        "caller_extension": call.caller_extension,
        "destination_number": call.destination.raw,
        "destination_digits": call.destination.digits,
        "destination_extension": call.destination_extension,
        "direction": call.direction.value,
        "started_at": format_timestamp(call.started_at),
        "answered_at": call.answered_at and format_timestamp(call.answered_at),
        "ended_at": call.ended_at and format_timestamp(call.ended_at),
        "duration_s": call.duration_s,
        "billsec": call.billsec,
        "hangup_cause": call.hangup_cause,
        "hangup_side": call.hangup_side,
        "sip_code": call.sip_code,
        "private": call.private,
        "recording_name": call.recording_name,
    }
    if include_raw:
        body["raw"] = dict(call.raw)
    return body


def recording_to_json(recording: Recording | None) -> dict[str, Any] | None:
    """The recording as a client sees it; content_type/size/sha256 describe what a
    download sends now: the MP3 once encoded, the original WAV before."""
    if recording is None:
        return None
    encoded = recording.status in (RecordingStatus.STORED, RecordingStatus.PURGED) and (
        recording.size is not None and recording.sha256 is not None
    )
    return {
        "status": recording.status.value,
        "original_name": recording.original_name,
        "original_size": recording.original_size,
        "original_sha256": recording.original_sha256,
        "content_type": "audio/mpeg" if encoded else "audio/wav",
        "size": recording.size if encoded else recording.original_size,
        "sha256": recording.sha256 if encoded else recording.original_sha256,
        "duration_ms": recording.duration_ms,
        "sample_rate": recording.sample_rate,
        "channels": recording.channels,
        "attempts": recording.attempts,
        "last_error": recording.last_error,
    }


def record_to_json(record: CallRecord, *, include_raw: bool = False) -> dict[str, Any]:
    return {
        "call": call_to_json(record.call, include_raw=include_raw),
        "recording": recording_to_json(record.recording),
    }


def add_call_outcome_to_json(outcome: UpsertOutcome) -> dict[str, Any]:
    return {"outcome": outcome.value}


def batch_items_from_json(payload: object, max_calls: int) -> list[Call | InvalidCall]:
    """The items of `{"calls": [...]}`: each a Call, or an InvalidCall saying why not."""
    if not isinstance(payload, dict):
        raise ServiceError.invalid("body", 'must be a JSON object {"calls": [...]}')
    unknown = sorted(set(payload) - {"calls"})
    if unknown:
        raise ServiceError.invalid(unknown[0], f"unknown field(s): {', '.join(unknown)[:200]}")
    calls = payload.get("calls")
    if not isinstance(calls, list):
        raise ServiceError.invalid("calls", "must be an array of calls")
    if len(calls) > max_calls:
        raise ServiceError.resource_exhausted(
            f"{len(calls)} calls is over the limit of {max_calls} per batch; split the batch",
            field="calls",
        )
    items: list[Call | InvalidCall] = []
    for item in calls:
        try:
            items.append(call_from_json(item))
        except ServiceError as exc:
            claimed = item.get("uuid") if isinstance(item, dict) else None
            items.append(InvalidCall(claimed[:64] if isinstance(claimed, str) else "", exc))
    return items


def add_calls_result_to_json(result: AddCallsResult) -> dict[str, Any]:
    return {
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "rejections": [
            {
                "index": r.index,
                "uuid": r.uuid,
                "field": r.field,
                "reason": r.reason,
                "code": r.code.value,
            }
            for r in result.rejections
        ],
    }


def privacy_request_from_json(payload: object) -> tuple[bool, str]:
    """(private, reason) of `{"private": bool, "reason": "..."}`; both required."""
    return flag_and_reason_from_json(
        payload, "private", "true or false", "say why the privacy changes"
    )


def privacy_change_to_json(change: PrivacyChange) -> dict[str, Any]:
    return {"uuid": str(change.call_uuid), "private": change.private, "changed": change.changed}


def check_uuids_from_json(payload: object, max_uuids: int) -> list[uuid_module.UUID]:
    if not isinstance(payload, dict):
        raise ServiceError.invalid("body", 'must be a JSON object {"uuids": [...]}')
    unknown = sorted(set(payload) - {"uuids"})
    if unknown:
        raise ServiceError.invalid(unknown[0], f"unknown field(s): {', '.join(unknown)[:200]}")
    uuids = payload.get("uuids")
    if not isinstance(uuids, list):
        raise ServiceError.invalid("uuids", "must be an array of UUID strings")
    if not 1 <= len(uuids) <= max_uuids:
        raise ServiceError.invalid("uuids", f"give 1 to {max_uuids} uuids")
    return [parse_uuid(value, f"uuids[{index}]") for index, value in enumerate(uuids)]


def call_state_to_json(state: CallState) -> dict[str, Any]:
    return {
        "uuid": str(state.uuid),
        "exists": state.exists,
        "recording_status": state.recording_status and state.recording_status.value,
        "recording_sha256": state.recording_sha256,
    }


# --- search -----------------------------------------------------------------------------

# SearchQuery names the interval start/end; the REST parameters are from/to.
_SEARCH_FIELD_NAMES = {"start": "from", "end": "to"}


def search_query_from_params(params: Mapping[str, Sequence[str]]) -> SearchQuery:
    """The SearchQuery of `GET /api/v1/calls?…`; unknown or repeated parameters are 400.

    With `phone` it is a phone search (from/to optional); without, an interval search
    that needs both `from` and `to`.
    """
    unknown = sorted(set(params) - set(SEARCH_PARAMETERS))
    if unknown:
        raise ServiceError.invalid(
            unknown[0],
            f"unknown query parameter(s): {', '.join(unknown)[:200]} "
            f"(known: {', '.join(SEARCH_PARAMETERS)})",
        )
    single: dict[str, str] = {}
    for name, values in params.items():
        if len(values) != 1:
            raise ServiceError.invalid(name, "given more than once")
        single[name] = values[0]
    phone = single.get("phone")
    start = _time_param(single, "from")
    end = _time_param(single, "to")
    if phone is None:
        for name, value in (("from", start), ("to", end)):
            if value is None:
                raise ServiceError.invalid(
                    name, "is required for an interval search (or give phone)"
                )
    direction = None
    if "direction" in single:
        try:
            direction = Direction(single["direction"])
        except ValueError:
            allowed = ", ".join(d.value for d in Direction)
            raise ServiceError.invalid("direction", f"must be one of {allowed}") from None
    limit_text = single.get("limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not re.fullmatch(r"[0-9]+", limit_text.strip()):
            raise ServiceError.invalid("limit", "must be an integer")
        limit = int(limit_text)  # SearchQuery checks the range
    try:
        return SearchQuery(
            phone=phone,
            exact=_bool_param(single, "exact") or False,
            start=start,
            end=end,
            direction=direction,
            has_recording=_bool_param(single, "has_recording"),
            limit=limit,
            page_token=single.get("page_token") or None,
        )
    except SearchError as exc:
        raise ServiceError.invalid(
            _SEARCH_FIELD_NAMES.get(exc.field, exc.field), exc.reason
        ) from None


def _time_param(params: Mapping[str, str], name: str) -> datetime | None:
    value = params.get(name)
    return None if value is None else parse_timestamp(value, name)


def _bool_param(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ServiceError.invalid(name, "must be true or false")
    return lowered == "true"


# --- uploads ----------------------------------------------------------------------------


def upload_header_from_headers(call_uuid: uuid_module.UUID, headers: Headers) -> UploadHeader:
    """The UploadHeader of `PUT …/recording` from its HTTP headers.

    Size: `Content-Length`; a chunked body (or HTTP/2 without it) must send
    `X-Content-Length` instead (411 otherwise). Checksum: `X-Content-SHA256: <hex>` or
    RFC 9530 `Content-Digest: sha-256=:<base64>:` (both: they must agree). Name:
    `X-File-Name`, percent-encoded UTF-8, default `<uuid>.wav`.
    """
    content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type not in RECORDING_CONTENT_TYPES:
        allowed = ", ".join(sorted(RECORDING_CONTENT_TYPES))
        raise RestError(
            ErrorCode.INVALID_ARGUMENT,
            f"a recording is sent as one of {allowed}, not {content_type or 'nothing'!r}",
            status=415,
            field="Content-Type",
        )
    size = _declared_size(headers)
    sha256 = _declared_sha256(headers)
    encoded_name = headers.get("X-File-Name")
    if encoded_name is None:
        file_name = f"{call_uuid}.wav"
    else:
        try:
            file_name = unquote(encoded_name.strip(), errors="strict")
        except UnicodeDecodeError:
            raise ServiceError.invalid("X-File-Name", "must be percent-encoded UTF-8") from None
    return UploadHeader(call_uuid=call_uuid, file_name=file_name, size=size, sha256=sha256)


def _declared_size(headers: Headers) -> int:
    length = _size_header(headers, "Content-Length")
    declared = _size_header(headers, "X-Content-Length")
    if length is None and declared is None:
        raise RestError(
            ErrorCode.INVALID_ARGUMENT,
            "the upload's size is needed before its bytes: send Content-Length "
            "(or X-Content-Length with a chunked body)",
            status=411,
            field="Content-Length",
        )
    if length is not None and declared is not None and length != declared:
        raise ServiceError.invalid(
            "X-Content-Length", f"says {declared} bytes but Content-Length says {length}"
        )
    return length if length is not None else declared  # type: ignore[return-value]


def _header(headers: Headers, name: str) -> str | None:
    """A header's value; an empty one counts as absent."""
    value = headers.get(name)
    return value if value is not None and value.strip() else None


def _size_header(headers: Headers, name: str) -> int | None:
    value = _header(headers, name)
    if value is None:
        return None
    if not _DIGITS.match(value.strip()):
        raise ServiceError.invalid(name, "must be a non-negative integer number of bytes")
    return int(value)


def _declared_sha256(headers: Headers) -> str:
    hex_value = _header(headers, "X-Content-SHA256")
    digest_value = _header(headers, "Content-Digest")
    from_hex = None
    if hex_value is not None:
        if not _HEX_SHA256.match(hex_value.strip()):
            raise ServiceError.invalid("X-Content-SHA256", "must be 64 hexadecimal digits")
        from_hex = hex_value.strip().lower()
    from_digest = None if digest_value is None else _content_digest_sha256(digest_value)
    if from_hex is None and from_digest is None:
        raise ServiceError.invalid(
            "X-Content-SHA256",
            "is required: send the sha256 of the body as X-Content-SHA256: <hex> "
            "or Content-Digest: sha-256=:<base64>:",
        )
    if from_hex is not None and from_digest is not None and from_hex != from_digest:
        raise ServiceError.invalid("Content-Digest", "disagrees with X-Content-SHA256")
    return from_hex or from_digest  # type: ignore[return-value]


def _content_digest_sha256(value: str) -> str:
    """The sha-256 member of an RFC 9530 Content-Digest (a structured-field dictionary)."""
    for member in value.split(","):
        key, _, rest = member.strip().partition("=")
        if key.strip().lower() != "sha-256":
            continue
        item = rest.split(";", 1)[0].strip()  # parameters, if any, do not matter here
        if len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise ServiceError.invalid("Content-Digest", "sha-256 must be a :base64: value")
        try:
            raw = base64.b64decode(item[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError.invalid("Content-Digest", "sha-256 is not valid base64") from None
        if len(raw) != 32:
            raise ServiceError.invalid("Content-Digest", "sha-256 must be 32 bytes")
        return raw.hex()
    raise ServiceError.invalid("Content-Digest", "has no sha-256 member")


def upload_result_to_json(result: UploadResult) -> dict[str, Any]:
    return {
        "duplicate": result.duplicate,
        "size": result.size,
        "sha256": result.sha256,
        "status": result.status.value,
    }


# --- downloads --------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """Bytes `[start, end)` of a representation of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, `*` matches anything)."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    return tags.star_tag or tags.contains_weak(etag.strip('"'))


def select_range(
    range_header: str | None, if_range: str | None, etag: str, size: int
) -> ByteRange | None:
    """The single byte range to serve, or None for the whole representation.

    RFC 9110: a Range header that does not parse, uses another unit, or asks for several
    ranges is ignored (the whole file is served with 200; we do not build multipart
    answers). `If-Range` must name the current ETag exactly, else the whole file is sent.
    An unsatisfiable single range raises RestError 416 with `Content-Range: bytes */size`.
    """
    if not range_header:
        return None
    if if_range:
        condition = parse_if_range_header(if_range)
        # Only strong ETags count (RFC 9110 §13.1.5); we send no Last-Modified, so a
        # date can never prove the client's copy current.
        if condition.date is not None or if_range.strip() != etag:
            return None
    parsed = parse_range_header(range_header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    first, stop = parsed.ranges[0]  # [first, stop); a suffix is (-n, None)
    if first < 0:
        # The last n bytes; a suffix longer than the file means all of it (RFC 9110).
        start, end = max(0, size + first), size
    else:
        start, end = first, size if stop is None else min(stop, size)
    if start >= size:
        raise RestError(
            ErrorCode.OUT_OF_RANGE,
            f"range {range_header.strip()[:80]!r} is outside the recording ({size} bytes)",
            status=416,
            field="Range",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return ByteRange(start, end, size)
