"""FreeSWITCH mod_cdr_csv lines (`Master.csv`, `<accountcode>.csv`), one call per line.

mod_cdr_csv expands a template of channel variables (`cdr_csv.conf.xml`) once per leg
and appends the result as one line. A line is read by naming its template: one of the
stock templates below, the template text itself (`"${caller_id_name}","${uuid}",…`), or
the variable names in column order. Each column becomes the variable it names and the
line is read by the mod_json_cdr rules (`cj.cdr.freeswitch`): times come from the
`*_stamp` columns in the PBX's zone (`CdrOptions.timezone`), the direction from the
evidence the columns carry (numbers, `context`, `direction`, `sip_gateway_name` …).
Columns whose template entry is an expression (`${regex(…)}`) are skipped.

Text: UTF-8; a line that is not valid UTF-8 is decoded as Latin-1 (every byte becomes
one character, nothing is lost) and says so in the kept original (`raw.encoding`).
Values are not URL-encoded. A `"` inside a value is doubled (`""`), as CSV does. The
kept original (`Call.raw`) is `{"format": "freeswitch_csv", "template": …, "line": …,
"variables": {…}}`.

With `legs=ab` FreeSWITCH writes a line per leg, each with its own uuid: each becomes
a call of its own (the B-leg's `bleg_uuid` column is empty, the A-leg's names the B-leg).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cj.cdr.errors import CdrDocumentError, CdrFieldError
from cj.cdr.freeswitch import explain_freeswitch
from cj.cdr.options import CdrOptions
from cj.model import Call

LINE = "line"
MAX_LINE_BYTES = 64 * 1024

# conf/vanilla/autoload_configs/cdr_csv.conf.xml; `example` is the default template.
STOCK_TEMPLATES: Mapping[str, str] = {
    "sql": 'INSERT INTO cdr VALUES ("${caller_id_name}","${caller_id_number}",'
    '"${destination_number}","${context}","${start_stamp}","${answer_stamp}",'
    '"${end_stamp}","${duration}","${billsec}","${hangup_cause}","${uuid}",'
    '"${bleg_uuid}", "${accountcode}");',
    "example": '"${caller_id_name}","${caller_id_number}","${destination_number}",'
    '"${context}","${start_stamp}","${answer_stamp}","${end_stamp}","${duration}",'
    '"${billsec}","${hangup_cause}","${uuid}","${bleg_uuid}","${accountcode}",'
    '"${read_codec}","${write_codec}"',
    "snom": '"${caller_id_name}","${caller_id_number}","${destination_number}",'
    '"${context}","${start_stamp}","${answer_stamp}","${end_stamp}","${duration}",'
    '"${billsec}","${hangup_cause}","${uuid}","${bleg_uuid}", "${accountcode}",'
    '"${read_codec}","${write_codec}","${sip_user_agent}","${call_clientcode}",'
    '"${sip_rtp_rxstat}","${sip_rtp_txstat}","${sofia_record_file}"',
    "linksys": '"${caller_id_name}","${caller_id_number}","${destination_number}",'
    '"${context}","${start_stamp}","${answer_stamp}","${end_stamp}","${duration}",'
    '"${billsec}","${hangup_cause}","${uuid}","${bleg_uuid}","${accountcode}",'
    '"${read_codec}","${write_codec}","${sip_user_agent}","${sip_p_rtp_stat}"',
    "asterisk": '"${accountcode}","${caller_id_number}","${destination_number}",'
    '"${context}","${caller_id}","${channel_name}","${bridge_channel}","${last_app}",'
    '"${last_arg}","${start_stamp}","${answer_stamp}","${end_stamp}","${duration}",'
    '"${billsec}","${hangup_cause}","${amaflags}","${uuid}","${userfield}"',
    "opencdrrate": '"${uuid}","${signal_bond}","${direction}","${ani}",'
    '"${destination_number}","${answer_stamp}","${end_stamp}","${billsec}",'
    '"${accountcode}","${userfield}","${network_addr}",'
    '"${regex(\'${original_caller_id_name}\'|^.)}","${sip_gateway_name}"',
}
DEFAULT_TEMPLATE = "example"

_COLUMN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_\-]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class CsvTemplate:
    """The columns of a mod_cdr_csv template, and the text around them (the `sql`
    template's `INSERT INTO cdr VALUES (` … `);`)."""

    def __init__(self, template: str | Sequence[str] = DEFAULT_TEMPLATE) -> None:
        if isinstance(template, str) and template in STOCK_TEMPLATES:
            self.name = template
            template = STOCK_TEMPLATES[template]
        else:
            self.name = "custom"
        self.prefix = self.suffix = ""
        if isinstance(template, str):
            if "${" not in template:
                choices = ", ".join(STOCK_TEMPLATES)
                raise CdrFieldError(
                    "template",
                    f"{template[:64]!r} is neither a stock template ({choices}) "
                    "nor a template of ${variables}",
                )
            self.columns = _template_columns(template)
            first, last = template.find('"${'), template.rfind('}"')
            if first > 0:
                self.prefix = template[:first].strip()
            if last >= 0:
                self.suffix = template[last + 2 :].strip()
        else:
            names = tuple(template)
            for name in names:
                if not isinstance(name, str) or not _NAME.fullmatch(name):
                    raise CdrFieldError("template", f"{name!r} is not a variable name")
            self.columns = tuple[str | None, ...](names)
        if "uuid" not in self.columns:
            raise CdrFieldError("template", "has no ${uuid} column: a line could not be a call")

    def split(self, text: str) -> list[str]:
        """The values of one line, in column order."""
        body = text.strip()
        if self.prefix and body.startswith(self.prefix):
            body = body[len(self.prefix) :]
        if self.suffix and body.endswith(self.suffix):
            body = body[: -len(self.suffix)]
        try:
            rows = list(csv.reader([body], skipinitialspace=True, strict=True))
        except csv.Error as exc:
            raise CdrDocumentError(LINE, f"not a CSV line: {exc}") from None
        return rows[0] if rows else []


def _template_columns(template: str) -> tuple[str | None, ...]:
    """One entry per comma-separated field of the template: its variable, or None."""
    columns: list[str | None] = []
    for field in next(csv.reader([template], skipinitialspace=True)):
        match = _COLUMN.fullmatch(field.strip().strip("();").strip())
        if match is None:
            # The `sql` template's first and last fields carry the INSERT text around them.
            match = _COLUMN.search(field) if field.count("${") == 1 else None
        columns.append(match.group(1) if match else None)
    return tuple(columns)


def parse_freeswitch_csv_line(
    line: bytes, template: str | Sequence[str] | CsvTemplate, options: CdrOptions
) -> Call:
    """The call one mod_cdr_csv line describes; CdrError naming the column on bad input."""
    return explain_freeswitch_csv_line(line, template, options)[0]


def explain_freeswitch_csv_line(
    line: bytes, template: str | Sequence[str] | CsvTemplate, options: CdrOptions
) -> tuple[Call, dict[str, str]]:
    """`parse_freeswitch_csv_line` and, per Call field, the column that decided it."""
    columns = template if isinstance(template, CsvTemplate) else CsvTemplate(template)
    if not isinstance(line, bytes | bytearray | memoryview):
        raise CdrDocumentError(LINE, f"must be bytes, got {type(line).__name__}")
    if len(line) > MAX_LINE_BYTES:
        raise CdrDocumentError(LINE, f"longer than {MAX_LINE_BYTES} bytes: {len(line)} bytes")
    data = bytes(line).rstrip(b"\r\n")
    encoding = "utf-8"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        encoding = "latin-1"
        text = data.decode("latin-1")
    if "\x00" in text:
        raise CdrDocumentError(LINE, "contains a NUL character")
    if not text.strip():
        raise CdrDocumentError(LINE, "is empty")
    values = columns.split(text)
    if len(values) != len(columns.columns):
        raise CdrDocumentError(
            LINE,
            f"has {len(values)} columns, the {columns.name} template {len(columns.columns)}",
        )
    variables = {name: value for name, value in zip(columns.columns, values, strict=True) if name}
    document: dict[str, Any] = {
        "format": "freeswitch_csv",
        "template": columns.name,
        "line": text,
        "variables": variables,
    }
    if encoding != "utf-8":
        document["encoding"] = encoding
    # Values are written as they are: no URL-decoding (a `%` in a name stays a `%`).
    call, explanation = explain_freeswitch(document, options, url_encoded=False)
    return call, explanation
