"""FreeSWITCH mod_xml_cdr documents (`<cdr><variables>…<callflow>…</cdr>`), read like JSON.

The XML is turned into the structure mod_json_cdr writes, then read by the same rules
(`cj.cdr.freeswitch`):

- `<cdr core-uuid=… switchname=…>`: the attributes become top-level keys;
- `<channel_data>`, `<variables>`, `<times>`: one text child per key (values URL-encoded
  unless the PBX sets `encode-values` false);
- `<app_log>` and a callflow's `<extension>`: `<application app_name=… app_data=…/>`
  elements become `applications`;
- each `<callflow dialplan=… profile_index=…>` is one entry of `callflow`; its
  `<caller_profile>`'s `<originatee>` / `<originator>` hold `originatee_caller_profile` /
  `originator_caller_profile` elements, which become `originatee_caller_profiles` /
  `originator_caller_profiles` lists.

Parsed with defusedxml: a DTD (and so any entity) is refused, never expanded.

Recovery: a PBX that writes values without URL-encoding them produces XML that is not
well-formed as soon as a value holds `<`, `>` or `&` (`<sip_full_from><sip:1001@…>;tag=…
</sip_full_from>`). Such a document is parsed a second time after escaping those
characters inside every one-line `<name>value</name>` element and every `app_data="…"`
attribute; the lines changed are reported (`RECOVERED` key of the explanation). What is
still not well-formed is refused with `CdrDocumentError` naming the line and column, and
the agent quarantines the file with that reason.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # types only: parsing is defusedxml's
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from cj.cdr.document import DOCUMENT, MAX_DEPTH, MAX_DOCUMENT_BYTES, check_tree
from cj.cdr.errors import CdrDocumentError, CdrFormatError

RECOVERED = "document"

_LEAF_LINE = re.compile(r"^(\s*<([A-Za-z_][\w.\-]*)>)(.*)(</\2>\s*)$")
_APP_DATA = re.compile(
    r'(\bapp_data=")(.*?)("(?:\s+app_stamp="[0-9]*")?\s*(?:/>|>\s*</application>)\s*)$'
)
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_PROFILE_LISTS = {
    "originatee": "originatee_caller_profile",
    "originator": "originator_caller_profile",
}


def looks_like_xml(data: bytes | bytearray | memoryview) -> bool:
    """Whether CDR bytes are XML (their first non-blank character, after a BOM, is `<`)."""
    head = bytes(data[:256]).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"<")


def decode_xml_document(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], str]:
    """A mod_xml_cdr document as the mod_json_cdr structure, and a note on any recovery
    ("" when the document was well-formed). Raises CdrDocumentError or CdrFormatError."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CdrDocumentError(
            DOCUMENT, f"larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB): {len(data)} bytes"
        )
    raw = bytes(data)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CdrDocumentError(DOCUMENT, f"not valid UTF-8 (at byte {exc.start})") from None
    if not text.strip():
        raise CdrDocumentError(DOCUMENT, "is empty")
    note = ""
    try:
        root = _parse(text)
    except ParseError as first:
        repaired, lines = _escape_unencoded_values(text)
        if not lines:
            raise CdrDocumentError(DOCUMENT, f"not well-formed XML: {_position(first)}") from None
        try:
            root = _parse(repaired)
        except ParseError as second:
            raise CdrDocumentError(
                DOCUMENT,
                f"not well-formed XML: {_position(first)}; still not after escaping "
                f"unencoded values: {_position(second)}",
            ) from None
        shown = ", ".join(str(n) for n in lines[:10]) + (" …" if len(lines) > 10 else "")
        note = f"recovered: values not URL-encoded, escaped on line(s) {shown}"
    if root.tag != "cdr":
        raise CdrFormatError(
            DOCUMENT, f"an XML document whose root is <{root.tag[:40]}>, not mod_xml_cdr's <cdr>"
        )
    document = _cdr(root)
    check_tree(document)
    return document, note


def _parse(text: str) -> ET.Element:
    try:
        root: ET.Element = fromstring(text.encode("utf-8"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CdrDocumentError(DOCUMENT, f"refused XML construct: {type(exc).__name__}") from None
    except RecursionError:
        raise CdrDocumentError(DOCUMENT, "nested too deeply") from None
    return root


def _position(error: ParseError) -> str:
    line, column = getattr(error, "position", (0, 0))
    message = str(error).split(":")[0]
    return f"{message} at line {line} column {column + 1}"


def _escape(value: str, *, quote: bool = False) -> str:
    out = []
    position = 0
    for match in _ENTITY.finditer(value):
        out.append(_escape_plain(value[position : match.start()], quote))
        out.append(match.group())
        position = match.end()
    out.append(_escape_plain(value[position:], quote))
    return "".join(out)


def _escape_plain(value: str, quote: bool) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace('"', "&quot;") if quote else value


def _escape_unencoded_values(text: str) -> tuple[str, list[int]]:
    """The text with `<`, `>`, bare `&` escaped inside one-line values; the lines changed."""
    changed: list[int] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        match = _LEAF_LINE.match(line)
        if match is not None:
            fixed = match.group(1) + _escape(match.group(3)) + match.group(4)
        else:
            attribute = _APP_DATA.search(line)
            if attribute is None:
                continue
            start, value, end = attribute.groups()
            fixed = line[: attribute.start()] + start + _escape(value, quote=True) + end
        if fixed != line:
            lines[number - 1] = fixed
            changed.append(number)
    return "\n".join(lines), changed


def _cdr(root: ET.Element) -> dict[str, Any]:
    document: dict[str, Any] = dict(root.attrib)
    for child in root:
        if child.tag == "callflow":
            document.setdefault("callflow", []).append(_callflow(child))
        elif child.tag == "app_log":
            document["app_log"] = {"applications": _applications(child)}
        elif child.tag in ("variables", "channel_data"):
            document[child.tag] = _texts(child)
        else:
            document.setdefault(child.tag, _generic(child, 2))
    return document


def _callflow(element: ET.Element) -> dict[str, Any]:
    entry: dict[str, Any] = dict(element.attrib)
    for child in element:
        if child.tag == "extension":
            extension: dict[str, Any] = dict(child.attrib)
            extension["applications"] = _applications(child)
            entry["extension"] = extension
        elif child.tag == "caller_profile":
            entry["caller_profile"] = _profile(child)
        elif child.tag == "times":
            entry["times"] = _texts(child)
        else:
            entry.setdefault(child.tag, _generic(child, 3))
    return entry


def _profile(element: ET.Element) -> dict[str, Any]:
    profile: dict[str, Any] = {}
    for child in element:
        member = _PROFILE_LISTS.get(child.tag)
        if member is not None:
            profile[child.tag] = {
                f"{member}s": [_texts(p) for p in child if p.tag == member],
            }
        elif len(child) == 0:
            profile.setdefault(child.tag, child.text or "")
        else:
            profile.setdefault(child.tag, _generic(child, 4))
    return profile


def _applications(element: ET.Element) -> list[dict[str, str]]:
    return [dict(child.attrib) for child in element if child.tag == "application"]


def _texts(element: ET.Element) -> dict[str, str]:
    """`<a>1</a><b>2</b>` → {"a": "1", "b": "2"}; a repeated name keeps its first value."""
    values: dict[str, str] = {}
    for child in element:
        values.setdefault(child.tag, child.text or "")
    return values


def _generic(element: ET.Element, depth: int) -> Any:
    """An element FreeSWITCH did not define for the reader: text, or its parts."""
    if depth > MAX_DEPTH:
        raise CdrDocumentError(DOCUMENT, f"nested deeper than {MAX_DEPTH} levels")
    if len(element) == 0 and not element.attrib:
        return element.text or ""
    value: dict[str, Any] = dict(element.attrib)
    for child in element:
        value.setdefault(child.tag, _generic(child, depth + 1))
    return value
