"""Entry points: bytes or a file to a Call, with the format detected per document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cj.cdr import asterisk, compact, freeswitch
from cj.cdr.asterisk_call import call_from_legs
from cj.cdr.document import DOCUMENT, MAX_DOCUMENT_BYTES, decode_document
from cj.cdr.errors import CdrDocumentError, CdrError, CdrFormatError, CdrUnexpectedError
from cj.cdr.options import CdrOptions
from cj.config import CdrFormat
from cj.model import Call

_DEFAULT_OPTIONS = CdrOptions()


def detect_format(document: Mapping[str, Any]) -> CdrFormat:
    """COMPACT or FREESWITCH for a parsed document, or CdrFormatError.

    FreeSWITCH: a `variables` object or a `callflow`. Compact: any of
    `clid, dest, dirc, stti, epos` (so a compact document without `uuid` is reported as
    such, not as an unknown format).
    """
    if isinstance(document.get("variables"), dict) or "callflow" in document:
        return CdrFormat.FREESWITCH
    if any(key in document for key in compact.SIGNATURE):
        return CdrFormat.COMPACT
    raise CdrFormatError(
        DOCUMENT,
        "neither a compact CDR (uuid, clid, dest, stti …) nor a FreeSWITCH "
        "mod_json_cdr document (variables, callflow)",
    )


def parse_cdr(data: bytes | bytearray | memoryview, options: CdrOptions = _DEFAULT_OPTIONS) -> Call:
    """The call a CDR document describes. Raises CdrError, and nothing else, on bad input."""
    document = decode_document(data)
    try:
        return parse_document(document, options)
    except CdrError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # A parser bug must quarantine one file, not stop the agent.
        raise CdrUnexpectedError(
            DOCUMENT, f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def parse_document(document: Mapping[str, Any], options: CdrOptions = _DEFAULT_OPTIONS) -> Call:
    """The call an already decoded JSON object describes (see `decode_document`)."""
    kind = options.format
    if kind is CdrFormat.AUTO:
        kind = detect_format(document)
    if kind is CdrFormat.COMPACT:
        return compact.parse_compact(document, options)
    if kind in (CdrFormat.ASTERISK_JSON, CdrFormat.ASTERISK_CSV, CdrFormat.ASTERISK_CUSTOM):
        return parse_asterisk_document(document, options)
    return freeswitch.parse_freeswitch(document, options)


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
