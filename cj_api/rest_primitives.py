"""What every REST codec shares: `RestError`, and the text forms of a JSON document,
a UUID and an RFC 3339 timestamp; `If-None-Match` against an ETag. No I/O.

The codecs (`cj_api.call_codec`, `cj_api.search_codec`, `cj_api.recording_codec`,
`cj_api.admin_codec`) return model objects or raise `ServiceError` naming the field at
fault, so the route modules (`cj_api.rest_*`) only wire HTTP to `CallJournalService`.
Field names follow the gRPC side (`call.started_at`, `uuids[3]`, `page_token`); query
parameters and headers are named as the client spelled them (`from`, `X-Content-SHA256`).
Times are RFC 3339 (`…Z` on output).
"""

from __future__ import annotations

import json
import re
import uuid as uuid_module
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.http import parse_etags

from cj.errors import ErrorCode, ServiceError
from cj.jsonlimits import MAX_JSON_DEPTH

__all__ = [
    "RestError",
    "etag_matches",
    "format_timestamp",
    "parse_json",
    "parse_timestamp",
    "parse_uuid",
]

# RFC 3339 date-time; the offset is optional here only to say "naive" precisely.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}):(\d{2})(\.\d{1,32})?([Zz]|[+-]\d{2}:\d{2})?$"
)
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}$"
)


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


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, `*` matches anything)."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    return tags.star_tag or tags.contains_weak(etag.strip('"'))
