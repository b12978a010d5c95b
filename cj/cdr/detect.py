"""Entry points: bytes or a file to a Call, with the format detected per document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cj.cdr import asterisk, compact, freeswitch
from cj.cdr.asterisk_call import call_from_legs
from cj.cdr.document import DOCUMENT, MAX_DOCUMENT_BYTES, decode_document
from cj.cdr.errors import CdrDocumentError, CdrError, CdrFormatError, CdrUnexpectedError
from cj.cdr.freeswitch_xml import RECOVERED, decode_xml_document, looks_like_xml
from cj.cdr.options import CdrOptions
from cj.config import CdrFormat
from cj.model import Call

_DEFAULT_OPTIONS = CdrOptions()


# Asterisk CDR fields (cdr.conf, CDR() dialplan function, cdr_manager / cdr_custom).
ASTERISK_FIELDS = frozenset(
    {
        "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
        "disposition", "amaflags", "uniqueid", "linkedid", "userfield", "billsec",
        "accountcode",
    }
)  # fmt: skip
_KAZOO_FIELDS = frozenset({"call_id", "custom_channel_vars", "pvt_type", "app_name", "node"})
_FREESWITCH_EVENT = frozenset({"Event-Name", "Core-UUID", "Unique-ID"})


def detect_format(document: Mapping[str, Any]) -> CdrFormat:
    """The format of a parsed JSON document, or CdrFormatError saying what it resembles.

    FreeSWITCH: a `variables` object or a `callflow`. An Asterisk CDR object (three or
    more of src, dst, dcontext, channel, disposition, uniqueid …): ASTERISK_JSON.
    Compact: any of `clid, dest, dirc, stti, epos` (so a compact document without
    `uuid` is reported as such, not as an unknown format). Anything
    else is refused naming the format it resembles (Kazoo, a FreeSWITCH event) or as
    unknown, with the fields a known format would need.
    """
    if isinstance(document.get("variables"), dict) or "callflow" in document:
        return CdrFormat.FREESWITCH
    keys = set(document)
    asterisk = sorted(keys & ASTERISK_FIELDS)
    if len(asterisk) >= 3:
        return CdrFormat.ASTERISK_JSON
    if any(key in document for key in compact.SIGNATURE):
        return CdrFormat.COMPACT
    absent = [key for key in ("uuid", "clid", "dest", "stti") if key not in keys]
    missing = (
        "neither FreeSWITCH (variables and callflow are missing) nor compact "
        f"({', '.join(absent)} missing)"
    )
    kazoo = sorted(keys & _KAZOO_FIELDS)
    if "call_id" in keys and len(kazoo) >= 2:
        raise CdrFormatError(
            DOCUMENT,
            f"a Kazoo CDR ({', '.join(kazoo)}), not a format the agent reads: {missing}; "
            "point the agent at the FreeSWITCH servers' mod_json_cdr output instead",
        )
    if keys & _FREESWITCH_EVENT:
        raise CdrFormatError(
            DOCUMENT,
            "a FreeSWITCH event (Event-Name, Unique-ID …), not a CDR: "
            f"{missing}; configure mod_json_cdr or mod_xml_cdr",
        )
    shown = ", ".join(sorted(keys)[:8]) + (" …" if len(keys) > 8 else "")
    raise CdrFormatError(DOCUMENT, f"an unknown format (fields: {shown or 'none'}): {missing}")


def parse_cdr(data: bytes | bytearray | memoryview, options: CdrOptions = _DEFAULT_OPTIONS) -> Call:
    """The call a CDR document describes. Raises CdrError, and nothing else, on bad input."""
    return explain_cdr(data, options)[0]


def explain_cdr(
    data: bytes | bytearray | memoryview, options: CdrOptions = _DEFAULT_OPTIONS
) -> tuple[Call, dict[str, str]]:
    """`parse_cdr`, and per Call field the document field that decided it (and why)."""
    try:
        return _explain(data, options)
    except CdrError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # A parser bug must quarantine one file, not stop the agent.
        raise CdrUnexpectedError(
            DOCUMENT, f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def _explain(
    data: bytes | bytearray | memoryview, options: CdrOptions
) -> tuple[Call, dict[str, str]]:
    kind = options.format
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CdrDocumentError(DOCUMENT, f"must be bytes, got {type(data).__name__}")
    if kind is CdrFormat.FREESWITCH_XML or (kind is CdrFormat.AUTO and looks_like_xml(data)):
        document, note = decode_xml_document(data)
        call, explanation = freeswitch.explain_freeswitch(document, options)
        if note:
            explanation[RECOVERED] = note
        return call, explanation
    if kind is CdrFormat.FREESWITCH_CSV:
        raise CdrFormatError(
            DOCUMENT,
            "freeswitch_csv is a line format: its files are tailed line by line "
            "(cj.cdr.freeswitch_csv.parse_freeswitch_csv_line), not read as one document",
        )
    return explain_document(decode_document(data), options)


def parse_document(document: Mapping[str, Any], options: CdrOptions = _DEFAULT_OPTIONS) -> Call:
    """The call an already decoded JSON object describes (see `decode_document`)."""
    return explain_document(document, options)[0]


def explain_document(
    document: Mapping[str, Any], options: CdrOptions = _DEFAULT_OPTIONS
) -> tuple[Call, dict[str, str]]:
    """`parse_document` with the explanation of `explain_cdr`."""
    kind = options.format
    if kind is CdrFormat.AUTO:
        kind = detect_format(document)
    if kind is CdrFormat.COMPACT:
        return compact.explain_compact(document, options)
    if kind in (CdrFormat.ASTERISK_JSON, CdrFormat.ASTERISK_CSV, CdrFormat.ASTERISK_CUSTOM):
        call = parse_asterisk_document(document, options)
        return call, {"format": f"{kind.value}: one Asterisk CDR object (cj/cdr/asterisk.py)"}
    if kind in (CdrFormat.FREESWITCH, CdrFormat.FREESWITCH_XML):
        return freeswitch.explain_freeswitch(document, options)
    raise CdrFormatError(DOCUMENT, f"the {kind.value} format is not read from JSON documents")


def parse_asterisk_document(document: Mapping[str, Any], options: CdrOptions) -> Call:
    """A single Asterisk CDR object (one leg: a call of its own), e.g. grandstream-2.json."""
    leg = asterisk.leg_from_document(document)
    return call_from_legs([leg], options, format_name=CdrFormat.ASTERISK_JSON.value)


def parse_cdr_file(path: Path, options: CdrOptions = _DEFAULT_OPTIONS) -> Call:
    """Read and parse one CDR file; unreadable or oversized files raise CdrError."""
    return parse_cdr(read_cdr_file(path), options)


def read_cdr_file(path: Path) -> bytes:
    """The bytes of a CDR file, at most MAX_DOCUMENT_BYTES + 1 of them (so the size check
    in `parse_cdr` refuses a larger file without reading all of it)."""
    try:
        with Path(path).open("rb") as file:
            return file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise CdrDocumentError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. a NUL in the path
        raise CdrDocumentError(repr(str(path)), f"cannot read: {exc}") from None
