"""Asterisk CDR lines to legs: cdr_csv (Master.csv), cdr_custom CSV, JSON (docs/asterisk.md).

A *leg* is one CDR line: the Asterisk fields by name (`src`, `dst`, `clid`, `channel`,
`start`, …) as text, plus what is kept of the original (`raw`). Legs sharing a
linkedid (or, in files without one, a uniqueid) are one call: `asterisk_call` builds it.

cdr_csv columns, by count (Asterisk's `cdr_csv.c` order): the standard 16 (accountcode,
src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end,
duration, billsec, disposition, amaflags), then `uniqueid` if `loguniqueid`, `userfield`
if `loguserfield`, then `peeraccount, linkedid, sequence` if `newcdrcolumns` (12+):
16, 17 (uniqueid or userfield, told apart by the value), 18, 19, 20, 21 columns.

Bytes that are not UTF-8 never stop a file (the non-UTF-8 rule): each field is decoded
as UTF-8, else as cp1252, else as latin-1 (which decodes anything); the line's exact
bytes are then kept in `raw["line_base64"]` and the fields that needed a fallback are
named in `raw["decoded_as"]`. A NUL byte becomes U+FFFD (PostgreSQL cannot store it).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cj.cdr.document import decode_document
from cj.cdr.errors import CdrDocumentError, CdrFieldError, CdrFormatError

LINE = "line"
STANDARD_COLUMNS: tuple[str, ...] = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
NEW_COLUMNS: tuple[str, ...] = ("peeraccount", "linkedid", "sequence")
# The Asterisk CDR fields a JSON object is recognised by (and read from).
JSON_FIELDS: tuple[str, ...] = (
    *STANDARD_COLUMNS,
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
)
# Present in every Asterisk CDR object, absent from the other JSON formats.
SIGNATURE = ("dcontext", "dstchannel", "lastapp", "disposition")
MAX_LINE_BYTES = 64 * 1024
# `1427211880.0`, `mainserverdss-1706407446.50`: the value of a uniqueid column.
_UNIQUEID = re.compile(r"(?:[A-Za-z0-9_.-]+-)?[0-9]{9,11}\.[0-9]+")
_HEADER_STARTS = frozenset({"start", "start time", "calldate", "starttime"})


@dataclass(frozen=True)
class AsteriskLeg:
    """One CDR line: its fields by Asterisk name and the original kept for `Call.raw`.

    `key` groups the legs of a call: the linkedid, else the uniqueid, else (a file
    with neither) a digest of the line, so that line is a call of its own.
    """

    fields: Mapping[str, str]
    raw: Mapping[str, Any] = field(compare=False)

    @property
    def key(self) -> str:
        for name in ("linkedid", "uniqueid"):
            value = self.fields.get(name, "")
            if value:
                return value
        return "line:" + str(self.raw.get("sha256", ""))

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


class CdrHeaderLine(CdrFormatError):
    """The line is a header (column names), not a call: skipped, not quarantined."""


def decode_field(data: bytes) -> tuple[str, str | None]:
    """Text of one field and the fallback encoding used (None: it was UTF-8)."""
    encoding: str | None = None
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            value, encoding = data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are not cp1252
            value, encoding = data.decode("latin-1"), "latin-1"
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
        encoding = encoding or "utf-8"
    return value, encoding


def split_line(line: bytes) -> list[bytes]:
    """The fields of one CSV line (quotes doubled inside quoted fields), as bytes.

    Split as latin-1, which maps every byte to one character and back, so the
    delimiters (ASCII) are found whatever the fields' real encoding is.
    """
    text = _strip_eol(line).decode("latin-1")
    try:
        rows = list(csv.reader([text], strict=False))
    except csv.Error as exc:
        raise CdrDocumentError(LINE, f"not a CSV line: {exc}") from None
    if len(rows) != 1:
        raise CdrDocumentError(LINE, "is empty")
    return [value.encode("latin-1") for value in rows[0]]


def cdr_csv_columns(values: Sequence[bytes]) -> tuple[str, ...]:
    """The column names of a Master.csv line with this many values (see the module doc)."""
    count = len(values)
    standard = len(STANDARD_COLUMNS)
    extra = count - standard
    new = extra >= len(NEW_COLUMNS) and _looks_like_sequence(values[-1])
    middle_count = extra - len(NEW_COLUMNS) if new else extra
    if middle_count == 2:
        middle: tuple[str, ...] = ("uniqueid", "userfield")
    elif middle_count == 1:
        probe = values[standard].decode("latin-1").strip()
        middle = ("uniqueid",) if _UNIQUEID.fullmatch(probe) else ("userfield",)
    elif middle_count == 0:
        middle = ()
    else:
        raise CdrFormatError(
            LINE,
            f"has {count} columns; a cdr_csv line has 16 to 21 "
            "(standard 16, uniqueid, userfield, then peeraccount, linkedid, sequence)",
        )
    return STANDARD_COLUMNS + middle + (NEW_COLUMNS if new else ())


def parse_cdr_csv_line(line: bytes) -> AsteriskLeg:
    """One cdr_csv (Master.csv) line; CdrError naming what is wrong."""
    values = split_line(_checked(line))
    return _leg(line, cdr_csv_columns(values), values)


def parse_custom_line(line: bytes, columns: Sequence[str]) -> AsteriskLeg:
    """One cdr_custom line, whose columns are `columns` (the mapping's order)."""
    values = split_line(_checked(line))
    if len(values) != len(columns):
        raise CdrFormatError(
            LINE,
            f"has {len(values)} columns, the configured cdr_custom mapping (csv_columns) "
            f"has {len(columns)}: {', '.join(columns)}",
        )
    return _leg(line, tuple(columns), values)


def parse_json_line(line: bytes) -> AsteriskLeg:
    """One JSON line (or a whole document) holding an object of Asterisk CDR fields."""
    data = _checked(line)
    try:
        document = decode_document(data)
        encoding = None
    except CdrDocumentError as exc:
        if "UTF-8" not in exc.reason:
            raise
        # Same non-UTF-8 rule as CSV: the text is read as cp1252 (latin-1 for the rest).
        document = decode_document(decode_field(data)[0].encode("utf-8"))
        encoding = "cp1252"
    leg = leg_from_document(document)
    raw = dict(leg.raw)
    if encoding is not None:
        raw["decoded_as"] = {"line": encoding}
        raw["line_base64"] = base64.b64encode(_strip_eol(data)).decode("ascii")
    return AsteriskLeg(leg.fields, raw)


def leg_from_document(document: Mapping[str, Any]) -> AsteriskLeg:
    """The leg an Asterisk CDR JSON object describes (Grandstream, cdr_manager → JSON …).

    Keys are matched case-insensitively (`Uniqueid`, `UniqueID`); values may be text or
    numbers; `calldate` (database backends) stands for `start`. The whole object is kept
    as `raw["document"]`.
    """
    lowered = {str(key).lower(): value for key, value in document.items()}
    if "start" not in lowered and "calldate" in lowered:
        # cdr_sqlite3_custom, cdr_adaptive_odbc, cdr_mysql: the start is `calldate`.
        lowered["start"] = lowered["calldate"]
    if not any(name in lowered for name in SIGNATURE) or "start" not in lowered:
        missing = [name for name in ("start", *SIGNATURE) if name not in lowered]
        raise CdrFormatError(
            "document",
            "not an Asterisk CDR object (src, dst, dcontext, channel, start …): "
            f"missing {', '.join(missing)}",
        )
    values: dict[str, str] = {}
    for name in JSON_FIELDS:
        value = lowered.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CdrFieldError(name, "must be text or a number")
        values[name] = (
            str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        )
    return AsteriskLeg(values, {"fields": values, "document": dict(document)})


def _leg(line: bytes, columns: tuple[str, ...], values: Sequence[bytes]) -> AsteriskLeg:
    fields: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for name, value in zip(columns, values, strict=True):
        text, encoding = decode_field(value)
        if name:
            fields[name] = text
        if encoding is not None:
            fallbacks[name or f"column{len(fields)}"] = encoding
    start = fields.get("start", "").strip().lower()
    if start in _HEADER_STARTS:
        raise CdrHeaderLine(LINE, "is a header line (column names), not a call")
    body = _strip_eol(line)
    raw: dict[str, Any] = {
        "fields": fields,
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    if fallbacks:
        raw["decoded_as"] = fallbacks
        raw["line_base64"] = base64.b64encode(body).decode("ascii")
        raw["line"] = body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    else:
        raw["line"] = body.decode("utf-8")
    return AsteriskLeg(fields, raw)


def _checked(line: bytes) -> bytes:
    if not isinstance(line, bytes | bytearray | memoryview):
        raise CdrDocumentError(LINE, f"must be bytes, got {type(line).__name__}")
    line = bytes(line)
    if len(line) > MAX_LINE_BYTES:
        raise CdrDocumentError(LINE, f"longer than {MAX_LINE_BYTES} bytes: {len(line)} bytes")
    if not line.strip():
        raise CdrDocumentError(LINE, "is empty")
    return line


def _strip_eol(line: bytes) -> bytes:
    return line.rstrip(b"\r\n")


def _looks_like_sequence(value: bytes) -> bool:
    return value.strip().isdigit()


def json_dumps_leg(leg: AsteriskLeg) -> str:
    """A leg as one JSON line (the samples and tests write asterisk_json with it)."""
    return json.dumps(dict(leg.fields), ensure_ascii=False)
