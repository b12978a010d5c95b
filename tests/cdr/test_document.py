"""Bytes and files to documents: size cap, encodings, JSON oddities, format detection."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from cj.cdr import (
    MAX_DOCUMENT_BYTES,
    CdrDocumentError,
    CdrError,
    CdrFieldError,
    CdrFormat,
    CdrFormatError,
    CdrOptions,
    decode_document,
    detect_format,
    parse_cdr,
    parse_cdr_file,
)
from tests.cdr.helpers import COMPACT_ANSWERED, FS_PLAIN, compact, freeswitch


def sample_bytes() -> bytes:
    return COMPACT_ANSWERED.read_bytes()


def test_utf8_bom_is_accepted() -> None:
    call = parse_cdr(b"\xef\xbb\xbf" + sample_bytes())
    assert call.duration_s == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b" \n\t ", "is empty"),
        (b"\xff\xfe{}", "not valid UTF-8 (at byte 0)"),
        ('{"clna": "Иван"}'.encode("cp1251"), "not valid UTF-8"),
        ('{"uuid": "x"}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"uuid": ', "not valid JSON: Expecting value at line 1 column 10"),
        (b"{'uuid': 1}", "not valid JSON"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "out of range"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "nested deeper than 64 levels"),
        (b'{"a": "x\\u0000y"}', "contains a NUL character"),
        (b'{"a\\u0000": 1}', "contains a NUL character"),
        (b'{"a": "\\ud800"}', "lone UTF-16 surrogate"),
        (b"[1, 2]", "must be a JSON object, got an array"),
        (b'"text"', "must be a JSON object, got a string"),
        (b"null", "must be a JSON object, got null"),
    ],
)
def test_bad_documents(data: bytes, message: str) -> None:
    with pytest.raises(CdrDocumentError) as caught:
        parse_cdr(data)
    assert str(caught.value).startswith("document: ")
    assert message in str(caught.value)


def test_size_cap() -> None:
    body = sample_bytes()
    padded = body + b" " * (MAX_DOCUMENT_BYTES - len(body))
    assert parse_cdr(padded).duration_s == 64  # exactly at the cap: fine
    with pytest.raises(CdrDocumentError, match=r"^document: larger than 1048576 bytes"):
        parse_cdr(padded + b" ")


def test_repeated_keys_keep_every_value() -> None:
    assert decode_document(b'{"a": 1, "b": 2, "a": [3], "a": 4}') == {"a": [1, [3], 4], "b": 2}


def test_bytearray_and_memoryview_are_accepted() -> None:
    body = sample_bytes()
    assert parse_cdr(bytearray(body)).uuid == parse_cdr(memoryview(body)).uuid


def test_text_instead_of_bytes_is_refused() -> None:
    with pytest.raises(CdrDocumentError, match="must be bytes, got str"):
        parse_cdr(sample_bytes().decode())  # type: ignore[arg-type]


# --- files ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    with pytest.raises(CdrDocumentError, match=rf"^{missing}: cannot read: No such file"):
        parse_cdr_file(missing)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CdrDocumentError, match="cannot read"):
        parse_cdr_file(tmp_path)


def test_oversized_file_is_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(sample_bytes() + b" " * (3 * MAX_DOCUMENT_BYTES))
    with pytest.raises(CdrDocumentError, match="larger than 1048576 bytes"):
        parse_cdr_file(big)


# --- detection -----------------------------------------------------------------------


def test_detect_format() -> None:
    assert detect_format(compact()) is CdrFormat.COMPACT
    assert detect_format(freeswitch()) is CdrFormat.FREESWITCH
    assert detect_format({"callflow": []}) is CdrFormat.FREESWITCH
    # The error says what the document is not, and which fields are missing.
    with pytest.raises(
        CdrFormatError,
        match=r"^document: an unknown format \(fields: hello, uuid\): neither FreeSWITCH "
        r"\(variables and callflow are missing\) nor compact \(clid, dest, stti missing\)",
    ):
        detect_format({"uuid": "x", "hello": "world"})
    with pytest.raises(CdrFormatError):
        parse_cdr(b"{}")


def test_forced_format_reads_the_document_as_told() -> None:
    as_compact = CdrOptions(format=CdrFormat.COMPACT)
    with pytest.raises(CdrFieldError, match=r"^uuid: is missing"):
        parse_cdr(FS_PLAIN.read_bytes(), as_compact)
    as_freeswitch = CdrOptions(format=CdrFormat.FREESWITCH)
    with pytest.raises(CdrFieldError, match=r"^variables\.uuid: is missing"):
        parse_cdr(COMPACT_ANSWERED.read_bytes(), as_freeswitch)
    assert parse_cdr(FS_PLAIN.read_bytes(), as_freeswitch).duration_s == 102


def test_errors_survive_pickling() -> None:
    with pytest.raises(CdrError) as caught:
        parse_cdr(json.dumps(compact(durs="x")).encode())
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), copy.field, str(copy)) == (
        CdrFieldError,
        "durs",
        str(caught.value),
    )
