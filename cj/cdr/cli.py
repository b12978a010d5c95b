"""`cj cdr show PATH`: how the agent reads one CDR file, as one JSON object.

For operators checking a PBX's output and the agent's configuration (time zone,
recording and privacy variables, local numbers) before pointing an agent at it.
`--explain` adds which field of the document decided each value, and why; a
mod_cdr_csv file (`--format freeswitch_csv`, or a `.csv` file) is read line by line
(`--line N`, else every line as a JSON array).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cj.cdr.detect import explain_cdr, read_cdr_file
from cj.cdr.document import MAX_DOCUMENT_BYTES
from cj.cdr.errors import CdrError
from cj.cdr.freeswitch_csv import (
    DEFAULT_TEMPLATE,
    MAX_LINE_BYTES,
    STOCK_TEMPLATES,
    CsvTemplate,
    explain_freeswitch_csv_line,
)
from cj.cdr.lines import is_line_format, parse_lines
from cj.cdr.locality import DEFAULT_LOCAL_EXTENSIONS, LocalNumbers
from cj.cdr.options import DEFAULT_PRIVACY_VARIABLE, DEFAULT_RECORDING_VARIABLES, CdrOptions
from cj.config import CdrFormat
from cj.model import Call


def call_summary(call: Call) -> dict[str, Any]:
    """The fields `cj cdr show` prints, JSON-ready; times are RFC 3339 UTC or None."""
    return {
        "uuid": str(call.uuid),
        "caller_number": call.caller.raw,
        "caller_name": call.caller_name,
        "caller_extension": call.caller_extension,
        "destination_number": call.destination.raw,
        "destination_extension": call.destination_extension,
        "direction": call.direction.value,
        "started_at": rfc3339(call.started_at),
        "answered_at": rfc3339(call.answered_at),
        "ended_at": rfc3339(call.ended_at),
        "duration_s": call.duration_s,
        "billsec": call.billsec,
        "hangup_cause": call.hangup_cause,
        "hangup_disposition": call.hangup_side,
        "sip_code": call.sip_code,
        "private": call.private,
        "recording_file": call.recording_name,
    }


# Call attribute → the key `call_summary` prints it under, where they differ.
_SUMMARY_KEYS = {
    "caller": "caller_number",
    "destination": "destination_number",
    "hangup_side": "hangup_disposition",
    "recording_name": "recording_file",
}


def explanation_summary(explanation: dict[str, str]) -> dict[str, str]:
    """The explanation keyed like `call_summary` (plus `document` for a recovery note)."""
    return {_SUMMARY_KEYS.get(name, name): text for name, text in explanation.items()}


def rfc3339(moment: datetime | None) -> str | None:
    """`2026-03-02T06:15:04Z` (whole seconds, UTC), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group()
def cdr() -> None:
    """Inspect call detail records the way the agent reads them."""


@cdr.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=True, allow_dash=True))
@click.option(
    "--format",
    "cdr_format",
    type=click.Choice([f.value for f in CdrFormat]),
    default=CdrFormat.AUTO.value,
    show_default=True,
    help="CDR format; auto detects it from the document.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="The PBX's IANA time zone, for local time stamps (e.g. Europe/Moscow).",
)
@click.option(
    "--recording-variable",
    "recording_variables",
    multiple=True,
    metavar="NAME",
    help="FreeSWITCH variable naming the recording, tried in the order given; "
    "`a+b` joins two variables as a path, `record_session` reads the application log. "
    f"Default: {', '.join(DEFAULT_RECORDING_VARIABLES)}.",
)
@click.option(
    "--privacy-variable",
    default=DEFAULT_PRIVACY_VARIABLE,
    show_default=True,
    metavar="NAME",
    help="FreeSWITCH variable whose value `private` marks the recording private.",
)
@click.option(
    "--line",
    "line_number",
    type=click.IntRange(min=1),
    help="Read line N of an append-only CDR file (Master.csv, mod_cdr_csv …; 1 = the first).",
)
@click.option(
    "--lines",
    "line_range",
    metavar="A-B",
    help="Read lines A to B (inclusive) and print the calls they make, as a JSON array.",
)
@click.option(
    "--source",
    "source_name",
    default="",
    metavar="NAME",
    help="The agent's source name: Asterisk call uuids are derived from it and the linkedid.",
)
@click.option(
    "--local-extensions",
    default=DEFAULT_LOCAL_EXTENSIONS,
    show_default=True,
    metavar="REGEX",
    help="What a local extension looks like (agent.sources[].local_extensions).",
)
@click.option(
    "--local-number",
    "local_numbers",
    multiple=True,
    metavar="DIGITS[*]",
    help="One of the PBX's own numbers, or a prefix ending in * (agent.sources[].local_numbers).",
)
@click.option("--explain", is_flag=True, help="Say which field decided each value, and why.")
@click.option(
    "--template",
    default=DEFAULT_TEMPLATE,
    show_default=True,
    help=f"CSV files: the mod_cdr_csv template ({', '.join(STOCK_TEMPLATES)}), or its text.",
)
def show(
    path: Path,
    cdr_format: str,
    timezone: str,
    recording_variables: tuple[str, ...],
    privacy_variable: str,
    line_number: int | None,
    line_range: str | None,
    source_name: str,
    local_extensions: str,
    local_numbers: tuple[str, ...],
    explain: bool,
    template: str,
) -> None:
    """Parse the CDR at PATH (`-` for standard input) and print the call as JSON."""
    fmt = CdrFormat(cdr_format)
    # mod_cdr_csv lines: named by --format, or by --template on a .csv file.
    fs_csv = fmt is CdrFormat.FREESWITCH_CSV or (
        fmt is CdrFormat.AUTO and path.suffix.lower() == ".csv" and template != DEFAULT_TEMPLATE
    )
    if not fs_csv and (line_number is not None or line_range is not None or is_line_format(fmt)):
        show_lines(path, fmt, timezone, line_number, line_range, source_name)
        return
    try:
        options = CdrOptions(
            timezone=timezone,
            format=fmt,
            source=source_name,
            recording_variables=recording_variables or DEFAULT_RECORDING_VARIABLES,
            privacy_variable=privacy_variable,
            local=LocalNumbers(local_extensions, local_numbers),
        )
        if fs_csv:
            result: Any = _show_csv(path, CsvTemplate(template), options, line_number, explain)
        else:
            if str(path) == "-":
                data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
            else:
                data = read_cdr_file(path)
            result = _summary(*explain_cdr(data, options), explain)
    except CdrError as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(result, ensure_ascii=False, indent=2)
    # Bytes, so the output is UTF-8 whatever the terminal's locale claims.
    click.echo(text.encode("utf-8"))


def show_lines(
    path: Path,
    cdr_format: CdrFormat,
    timezone: str,
    line_number: int | None,
    line_range: str | None,
    source_name: str = "",
) -> None:
    """`cj cdr show Master.csv --line 12` / `--lines 10-20`: the calls those lines make.

    Lines sharing a linkedid make one call, as the agent reads them (only the lines
    asked for are read). One line prints one object, a range an array; a refused line
    is reported on stderr with its number (exit status 1 when nothing could be read).
    """
    if cdr_format is CdrFormat.AUTO:
        cdr_format = CdrFormat.ASTERISK_CSV
    if not is_line_format(cdr_format):
        raise click.BadParameter(f"{cdr_format.value} is not a line format", param_hint="--format")
    first, last = _line_bounds(line_number, line_range)
    try:
        options = CdrOptions(timezone=timezone, format=cdr_format, source=source_name)
        handle = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    except CdrError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    selected: list[bytes] = []
    with handle:
        for number, line in enumerate(handle, start=1):
            if number > last:
                break
            if number >= first:
                selected.append(line)
    if not selected:
        raise click.ClickException(f"{path}: has no line {first}")
    calls, refused = parse_lines(selected, options, cdr_format)
    for index, error in refused:
        where = f"line {first + index}" if index >= 0 else "call"
        click.echo(f"{where}: {error}", err=True)
    summaries = [_line_call_summary(call) for call in calls]
    if not summaries:
        raise click.ClickException("no line could be read")
    body: object = summaries[0] if line_range is None and len(summaries) == 1 else summaries
    click.echo(json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8"))


def _line_bounds(line_number: int | None, line_range: str | None) -> tuple[int, int]:
    if line_range is None:
        if line_number is None:
            return 1, sys.maxsize
        return line_number, line_number
    start, sep, end = line_range.partition("-")
    try:
        first, last = int(start), int(end) if sep else int(start)
    except ValueError:
        raise click.BadParameter(f"{line_range!r} is not A-B", param_hint="--lines") from None
    if not 1 <= first <= last:
        raise click.BadParameter(f"{line_range!r}: need 1 <= A <= B", param_hint="--lines")
    return first, last


def _line_call_summary(call: Call) -> dict[str, Any]:
    summary = call_summary(call)
    summary["caller_extension"] = call.caller_extension
    summary["destination_extension"] = call.destination_extension
    summary["linkedid"] = call.raw.get("linkedid")
    summary["legs"] = len(call.raw.get("legs", ()))
    return summary


def _summary(call: Call, explanation: dict[str, str], explain: bool) -> dict[str, Any]:
    summary = call_summary(call)
    if explain:
        summary["explain"] = explanation_summary(explanation)
    return summary


def _show_csv(
    path: Path,
    template: CsvTemplate,
    options: CdrOptions,
    line_number: int | None,
    explain: bool,
) -> Any:
    """One line's call (`--line N`), or every line's as a list (`{"line", "error"}` for
    a line that cannot be read)."""
    try:
        if str(path) == "-":
            lines = sys.stdin.buffer.read().splitlines()
        else:
            lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise CdrError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if line_number is not None:
        if line_number > len(lines):
            raise CdrError("line", f"{line_number} is past the end ({len(lines)} lines)")
        chosen = lines[line_number - 1][: MAX_LINE_BYTES + 1]
        return _summary(*explain_freeswitch_csv_line(chosen, template, options), explain)
    results: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            summary = _summary(*explain_freeswitch_csv_line(line, template, options), explain)
        except CdrError as exc:
            results.append({"line": number, "error": str(exc)})
        else:
            results.append({"line": number, **summary})
    return results
