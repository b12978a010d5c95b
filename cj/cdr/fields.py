"""Readers that turn loosely typed JSON values into checked ones, naming the field on failure.

PBXs write numbers as strings or integers, leave fields empty, and write `0` for
"did not happen". Each reader takes the raw value and the field's name in the document
(`epos`, `variables.start_epoch`, `callflow[1].times.created_time`) and returns a checked
value or None for "absent", or raises CdrFieldError naming the field.

Times have whole-second precision: both formats count seconds (`epos`, `*_epoch`,
`duration`), and `*_uepoch` / callflow microseconds are truncated the way FreeSWITCH
derives its own `*_epoch` from them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from cj.cdr.document import json_kind
from cj.cdr.errors import CdrFieldError
from cj.model import Call, ModelError
from cj.phone import PhoneNumber

# 9999-12-31T23:59:59Z: beyond it datetime cannot represent the instant.
MAX_EPOCH_S = 253_402_300_799
MAX_FILE_NAME_BYTES = 255  # NAME_MAX on every file system the agent runs on

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_LOCAL_STAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
# "487", "487 Request Terminated"
_SIP_STATUS = re.compile(r"([0-9]{1,3})(?:\s+\S.*)?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def text(value: object, field: str) -> str | None:
    """Text with surrounding whitespace removed; integers are accepted as their digits.

    None (JSON null) means absent. Booleans, floats, arrays and objects are errors.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise CdrFieldError(field, f"must be text, got {json_kind(value)}")


def integer(value: object, field: str) -> int | None:
    """An integer from a JSON number or a decimal string; None for null or empty text."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CdrFieldError(field, "must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise CdrFieldError(field, f"must be an integer, got {value!r}")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        raise CdrFieldError(field, f"must be an integer, got {_excerpt(value)}")
    raise CdrFieldError(field, f"must be an integer, got {json_kind(value)}")


def count(value: object, field: str) -> int | None:
    """A non-negative integer (seconds, a SIP status); None when absent."""
    number = integer(value, field)
    if number is not None and number < 0:
        raise CdrFieldError(field, f"must not be negative, got {number}")
    return number


def epoch_seconds(value: object, field: str) -> datetime | None:
    """A UTC time from Unix seconds; 0 and empty mean absent."""
    seconds = integer(value, field)
    if not seconds:
        return None
    return _from_epoch(seconds, field)


def epoch_microseconds(value: object, field: str) -> datetime | None:
    """A UTC time from Unix microseconds (truncated to the second); 0 means absent."""
    micros = integer(value, field)
    if not micros:
        return None
    if micros < 0:
        raise CdrFieldError(field, f"must not be negative, got {micros}")
    return _from_epoch(micros // 1_000_000, field)


def _from_epoch(seconds: int, field: str) -> datetime:
    if not 0 < seconds <= MAX_EPOCH_S:
        raise CdrFieldError(field, f"Unix time {seconds} is out of range")
    return datetime.fromtimestamp(seconds, UTC)


def local_stamp(value: object, field: str, zone: tzinfo) -> datetime | None:
    """A `YYYY-MM-DD HH:MM:SS` wall-clock time in the PBX zone, as UTC; empty means absent.

    DST rule (PEP 495 `fold=0`, deterministic): a time that occurs twice (clocks go
    back) is the first occurrence, in the offset before the change; a time that never
    occurs (clocks go forward) is read with the offset before the change, so
    02:30 in a 02:00→03:00 gap becomes the instant the clock showed as 03:30.
    A stamp that carries its own offset (`Z`, `+03:00`) is read with it instead.
    Fractional seconds are dropped.
    """
    stamp = text(value, field)
    if not stamp:
        return None
    match = _LOCAL_STAMP.fullmatch(stamp)
    if match is None:
        raise CdrFieldError(field, f"must be 'YYYY-MM-DD HH:MM:SS', got {_excerpt(stamp)}")
    *parts, offset = match.groups()
    try:
        year, month, day, hour, minute, second = (int(part) for part in parts)
        wall = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        if offset is not None:
            wall = wall.replace(tzinfo=_fixed_offset(offset))
        moment = wall.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CdrFieldError(field, f"not a valid date and time: {_excerpt(stamp)}") from None
    # The same range as epochs, so both sources accept the same instants.
    if not 0 < moment.timestamp() <= MAX_EPOCH_S:
        raise CdrFieldError(field, f"{_excerpt(stamp)} is out of range (1970 to 9999)")
    return moment


def _fixed_offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    # timezone() refuses offsets of 24 h or more with ValueError, reported by the caller.
    return timezone((-1 if text[0] == "-" else 1) * timedelta(minutes=minutes))


def sip_status(value: object, field: str) -> int | None:
    """A SIP status code from 487, "487" or "487 Request Terminated"; 0/empty = none.

    The range (100-699) is checked by the model.
    """
    if isinstance(value, str):
        match = _SIP_STATUS.fullmatch(value.strip())
        if match is not None:
            return int(match.group(1)) or None
    return count(value, field) or None


def phone(value: object, field: str) -> PhoneNumber:
    """A phone number as written (integers become their digits); absent is empty."""
    try:
        return PhoneNumber(text(value, field) or "")
    except ValueError as exc:
        raise CdrFieldError(field, str(exc)) from None


def flag(value: object, field: str) -> bool | None:
    """A boolean from true/false, 1/0, "true"/"false", "yes"/"no"; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise CdrFieldError(field, f"must be true or false, got {_describe(value)}")


def recording_file_name(value: str, field: str) -> str | None:
    """The base name of a recording path, refusing anything but a plain file name.

    `/var/lib/freeswitch/recordings/x.wav` → `x.wav`. Empty means no recording. A name
    that is empty after the last `/` (a directory), `.`, `..`, or holds a backslash
    (a Windows path or an attempt to smuggle separators), a control character, or
    more than 255 bytes is refused: the agent opens this name in its recordings
    directory.
    """
    path = value.strip()
    if not path:
        return None
    name = posixpath.basename(path)
    if not name or name in (".", ".."):
        raise CdrFieldError(field, f"{_excerpt(path)} does not end in a file name")
    if "\\" in name:
        raise CdrFieldError(field, f"{_excerpt(name)} contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise CdrFieldError(field, f"{_excerpt(name)} contains a control character")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise CdrFieldError(field, f"file name longer than {MAX_FILE_NAME_BYTES} bytes")
    return name


MAX_RECORDING_PATH_BYTES = 1024


def recording_path(value: str, field: str) -> str | None:
    """A recording path as the PBX wrote it, kept whole (the agent's resolver maps it
    below its recordings directory: cj_agent/recordings.py); None when empty.

    Refused like `recording_file_name` (its last part must be a file name; no
    backslash, no control character), and so is a `..` component or a path longer
    than 1024 bytes.
    """
    path = value.strip()
    if not path:
        return None
    recording_file_name(path, field)
    if ".." in path.split("/"):
        raise CdrFieldError(field, f"{_excerpt(path)} holds a '..' component")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_RECORDING_PATH_BYTES:
        raise CdrFieldError(field, f"path longer than {MAX_RECORDING_PATH_BYTES} bytes")
    return path


def looks_like_extension(number: PhoneNumber) -> bool:
    """1 to 5 ASCII digits and nothing else: a PBX extension, not a public number."""
    raw = number.raw.strip()
    return 1 <= len(raw) <= 5 and raw.isascii() and raw.isdigit()


def build_call(sources: Mapping[str, str], **fields: Any) -> Call:
    """Construct the Call, turning a model violation into CdrFieldError.

    `sources` maps a Call attribute to the document field it came from, so the error
    names what the operator can find in the file (`epoa`, not `answered_at`).
    """
    try:
        return Call(**fields)
    except ModelError as exc:
        source = sources.get(exc.field)
        label = exc.field if source is None else f"{source} ({exc.field})"
        raise CdrFieldError(label, exc.reason) from None


def _excerpt(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "…")


def _describe(value: object) -> str:
    return _excerpt(value) if isinstance(value, str) else json_kind(value)
