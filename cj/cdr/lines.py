"""Line formats: CDRs appended one line at a time to a file the agent tails.

A line format turns one line (bytes, without or with its newline) into a record with a
`key`, and the records sharing a key into one call. The tailer (`cj_agent.tail`) groups
lines by key and knows nothing else about the format, so any line format can use it:

    LINE_FORMATS[CdrFormat.ASTERISK_CSV].parse_line(b'"","1001",…\\n', options)

A format whose every line is a whole call (mod_cdr_csv) registers with `single_line`.
Both functions raise `CdrError` (and nothing else) on bad input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cj.cdr import asterisk
from cj.cdr.asterisk_call import call_from_legs, check_leg
from cj.cdr.errors import CdrError, CdrFormatError
from cj.cdr.freeswitch_csv import CsvTemplate, parse_freeswitch_csv_line
from cj.cdr.options import CdrOptions
from cj.config import CdrFormat
from cj.model import Call


class LineRecord(Protocol):
    """One parsed line; the lines of one call share `key`."""

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class LineFormat:
    name: CdrFormat
    parse_line: Callable[[bytes, CdrOptions], LineRecord]
    build_call: Callable[[Sequence[LineRecord], CdrOptions], Call]


@dataclass(frozen=True)
class WholeCall:
    """The record of a format whose line is a whole call."""

    call: Call

    @property
    def key(self) -> str:
        return str(self.call.uuid)


def single_line(name: CdrFormat, parse: Callable[[bytes, CdrOptions], Call]) -> LineFormat:
    """The line format of `parse`, a reader of lines that are whole calls (the last line
    read for a uuid wins)."""

    def parse_line(line: bytes, options: CdrOptions) -> LineRecord:
        return WholeCall(parse(line, options))

    def build_call(records: Sequence[LineRecord], options: CdrOptions) -> Call:
        record = records[-1]
        assert isinstance(record, WholeCall)
        return record.call

    return LineFormat(name, parse_line, build_call)


def _asterisk(
    name: CdrFormat, parse: Callable[[bytes, CdrOptions], asterisk.AsteriskLeg]
) -> LineFormat:
    def parse_line(line: bytes, options: CdrOptions) -> LineRecord:
        return check_leg(parse(line, options), options)

    def build_call(records: Sequence[LineRecord], options: CdrOptions) -> Call:
        legs = [record for record in records if isinstance(record, asterisk.AsteriskLeg)]
        return call_from_legs(legs, options, format_name=name.value)

    return LineFormat(name, parse_line, build_call)


@functools.lru_cache(maxsize=16)
def _csv_template(template: str) -> CsvTemplate:
    return CsvTemplate(template)


def _freeswitch_csv_line(line: bytes, options: CdrOptions) -> Call:
    return parse_freeswitch_csv_line(line, _csv_template(options.csv_template), options)


LINE_FORMATS: dict[CdrFormat, LineFormat] = {
    CdrFormat.ASTERISK_CSV: _asterisk(
        CdrFormat.ASTERISK_CSV, lambda line, options: asterisk.parse_cdr_csv_line(line)
    ),
    CdrFormat.ASTERISK_CUSTOM: _asterisk(
        CdrFormat.ASTERISK_CUSTOM,
        lambda line, options: asterisk.parse_custom_line(line, options.asterisk.csv_columns),
    ),
    CdrFormat.ASTERISK_JSON: _asterisk(
        CdrFormat.ASTERISK_JSON, lambda line, options: asterisk.parse_json_line(line)
    ),
    # mod_cdr_csv: every line is a whole call (its a-leg or b-leg uuid).
    CdrFormat.FREESWITCH_CSV: single_line(CdrFormat.FREESWITCH_CSV, _freeswitch_csv_line),
}


def register_line_format(line_format: LineFormat) -> None:
    """Make `line_format` tailable (`agent.sources[].format = "<name>"`)."""
    LINE_FORMATS[line_format.name] = line_format


def line_format(name: CdrFormat) -> LineFormat:
    """The line format called `name`, or CdrFormatError naming the tailable ones."""
    try:
        return LINE_FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(f.value for f in LINE_FORMATS))
        raise CdrFormatError("format", f"{name.value} is not a line format ({known})") from None


def is_line_format(name: CdrFormat) -> bool:
    return name in LINE_FORMATS


def parse_lines(
    lines: Sequence[bytes], options: CdrOptions, name: CdrFormat
) -> tuple[list[Call], list[tuple[int, CdrError]]]:
    """Every call in `lines` (grouped by key, in order of first line) and the lines
    refused (index, error); header lines are skipped. For `cj cdr show` and tests."""
    fmt = line_format(name)
    groups: dict[str, list[LineRecord]] = {}
    refused: list[tuple[int, CdrError]] = []
    for index, line in enumerate(lines):
        try:
            record = fmt.parse_line(line, options)
        except asterisk.CdrHeaderLine:
            continue
        except CdrError as exc:
            refused.append((index, exc))
            continue
        groups.setdefault(record.key, []).append(record)
    calls: list[Call] = []
    for records in groups.values():
        try:
            calls.append(fmt.build_call(records, options))
        except CdrError as exc:
            refused.append((-1, exc))
    return calls, refused
