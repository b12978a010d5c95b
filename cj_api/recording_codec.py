"""Recordings over REST: the headers of an upload → `UploadHeader` (and the answer's
JSON), and the conditional and range headers of a download. No I/O.

Uploads: the size is `Content-Length`, or `X-Content-Length` with a chunked body (411
otherwise); the checksum `X-Content-SHA256` or RFC 9530 `Content-Digest`. Downloads:
one byte range at most (RFC 9110 lets a server ignore the rest), `If-Range` by strong
ETag only, `If-None-Match` by weak comparison.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from werkzeug.datastructures import Headers
from werkzeug.http import parse_if_range_header, parse_range_header

from cj.errors import ErrorCode, ServiceError
from cj_api.rest_primitives import RestError
from cj_api.service import UploadHeader, UploadResult

__all__ = [
    "RECORDING_CONTENT_TYPES",
    "ByteRange",
    "select_range",
    "upload_header_from_headers",
    "upload_result_to_json",
]

RECORDING_CONTENT_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream"}
)
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_DIGITS = re.compile(r"^[0-9]{1,19}$")


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
