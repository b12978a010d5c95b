"""`cj cdr show PATH`: how the agent reads one CDR file, as one JSON object.

For operators checking a PBX's output and the agent's configuration (time zone,
recording and privacy variables) before pointing an agent at it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cj.cdr.detect import parse_cdr, read_cdr_file
from cj.cdr.document import MAX_DOCUMENT_BYTES
from cj.cdr.errors import CdrError
from cj.cdr.lines import is_line_format, parse_lines
from cj.cdr.options import DEFAULT_PRIVACY_VARIABLE, DEFAULT_RECORDING_VARIABLES, CdrOptions
from cj.config import CdrFormat
from cj.model import Call


def call_summary(call: Call) -> dict[str, Any]:
    """The fields `cj cdr show` prints, JSON-ready; times are RFC 3339 UTC or None."""
    return {
        "uuid": str(call.uuid),
        "caller_number": call.caller.raw,
        "caller_name": call.caller_name,
        "destination_number": call.destination.raw,
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
    help="Read line N of an append-only CDR file (Master.csv …; format default asterisk_csv).",
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
def show(
    path: Path,
    cdr_format: str,
    timezone: str,
    recording_variables: tuple[str, ...],
    privacy_variable: str,
    line_number: int | None,
    line_range: str | None,
    source_name: str,
) -> None:
    """Parse the CDR at PATH (`-` for standard input) and print the call as JSON."""
    if line_number is not None or line_range is not None or is_line_format(CdrFormat(cdr_format)):
        show_lines(path, CdrFormat(cdr_format), timezone, line_number, line_range, source_name)
        return
    try:
        options = CdrOptions(
            timezone=timezone,
            format=CdrFormat(cdr_format),
            source=source_name,
            recording_variables=recording_variables or DEFAULT_RECORDING_VARIABLES,
            privacy_variable=privacy_variable,
        )
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        else:
            data = read_cdr_file(path)
        call = parse_cdr(data, options)
    except CdrError as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(call_summary(call), ensure_ascii=False, indent=2)
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
