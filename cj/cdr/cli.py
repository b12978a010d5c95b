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
def show(
    path: Path,
    cdr_format: str,
    timezone: str,
    recording_variables: tuple[str, ...],
    privacy_variable: str,
) -> None:
    """Parse the CDR at PATH (`-` for standard input) and print the call as JSON."""
    try:
        options = CdrOptions(
            timezone=timezone,
            format=CdrFormat(cdr_format),
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
