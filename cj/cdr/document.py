"""Bytes to a JSON object, refusing anything a CDR cannot be: the first line of defence.

Whatever comes in (random bytes, a truncated file, a BOM, NaN, a 10 000-digit number,
`[[[[…`), the result is a `dict` whose strings are storable text, or `CdrDocumentError`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cj.cdr.errors import CdrDocumentError

MAX_DOCUMENT_BYTES = 1024 * 1024
# Real CDRs nest about six levels (callflow → caller_profile → originatee → profiles);
# the limit only has to stop pathological input before it reaches jsonb or a log.
MAX_DEPTH = 64
# Longer integer literals are not CDR values; Python would also refuse >4300 digits
# with a bare ValueError.
MAX_INTEGER_DIGITS = 40

# PostgreSQL jsonb cannot store U+0000, and a lone surrogate is not encodable as UTF-8;
# either would make the kept original (`Call.raw`) unstorable or unprintable.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

DOCUMENT = "document"


def decode_document(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse CDR bytes (UTF-8, optional BOM) into a JSON object, or raise CdrDocumentError.

    Repeated keys keep every value: the key maps to a list of them in document order.
    Old FreeSWITCH builds repeat `callflow` once per caller profile; standard JSON
    parsing would silently keep only the last one.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CdrDocumentError(DOCUMENT, f"must be bytes, got {type(data).__name__}")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CdrDocumentError(
            DOCUMENT, f"larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB): {len(data)} bytes"
        )
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CdrDocumentError(DOCUMENT, f"not valid UTF-8 (at byte {exc.start})") from None
    if not text.strip():
        raise CdrDocumentError(DOCUMENT, "is empty")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object_from_pairs,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except CdrDocumentError:
        raise
    except json.JSONDecodeError as exc:
        raise CdrDocumentError(
            DOCUMENT, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise CdrDocumentError(DOCUMENT, "nested too deeply") from None
    if not isinstance(document, dict):
        raise CdrDocumentError(DOCUMENT, f"must be a JSON object, got {json_kind(document)}")
    _check_tree(document)
    return document


def json_kind(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key not in result:
            result[key] = value
        elif key in repeated:
            result[key].append(value)
        else:
            result[key] = [result[key], value]
            repeated.add(key)
    return result


def _refuse_constant(name: str) -> Any:
    raise CdrDocumentError(DOCUMENT, f"{name} is not a JSON value")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise CdrDocumentError(DOCUMENT, f"number {literal[:32]}… is out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise CdrDocumentError(DOCUMENT, f"integer with {len(literal)} digits is out of range")
    return int(literal)


def check_tree(document: dict[str, Any]) -> None:
    """Refuse a decoded document nested too deeply or holding unstorable text
    (CdrDocumentError); for documents decoded from other syntaxes (mod_xml_cdr)."""
    _check_tree(document)


def _check_tree(document: dict[str, Any]) -> None:
    # Iterative, so the check itself cannot hit the recursion limit.
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CdrDocumentError(DOCUMENT, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    match = _UNSTORABLE.search(text)
    if match is not None:
        what = "a NUL character" if match.group() == "\x00" else "a lone UTF-16 surrogate"
        raise CdrDocumentError(DOCUMENT, f"contains {what} (\\u{ord(match.group()):04x})")
