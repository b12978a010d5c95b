"""CDR parsers: the compact JSON format and FreeSWITCH mod_json_cdr to `cj.model.Call`.

Pure functions, no I/O beyond `parse_cdr_file`. Every failure is a `CdrError` whose
message starts with the field at fault; see `compact` and `freeswitch` for the field
rules, `fields.local_stamp` for the DST rule.

    call = parse_cdr(data, CdrOptions(timezone="Europe/Moscow", source="pbx-msk-1"))
"""

from cj.cdr.detect import detect_format, parse_cdr, parse_cdr_file, parse_document, read_cdr_file
from cj.cdr.document import MAX_DOCUMENT_BYTES, decode_document
from cj.cdr.errors import (
    CdrDocumentError,
    CdrError,
    CdrFieldError,
    CdrFormatError,
    CdrUnexpectedError,
)
from cj.cdr.options import DEFAULT_PRIVACY_VARIABLE, DEFAULT_RECORDING_VARIABLES, CdrOptions
from cj.config import CdrFormat

__all__ = [
    "DEFAULT_PRIVACY_VARIABLE",
    "DEFAULT_RECORDING_VARIABLES",
    "MAX_DOCUMENT_BYTES",
    "CdrDocumentError",
    "CdrError",
    "CdrFieldError",
    "CdrFormat",
    "CdrFormatError",
    "CdrOptions",
    "CdrUnexpectedError",
    "decode_document",
    "detect_format",
    "parse_cdr",
    "parse_cdr_file",
    "parse_document",
    "read_cdr_file",
]
