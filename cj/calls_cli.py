"""`cj calls search|get|download|privacy`: calls from the terminal.

search, get and download go over REST as a reader; privacy acts on the database
directly as the operator (like `cj purge`), audited as `cli:<user>`.

    export CJ_CLIENT_URL=http://cj-api:8080 CJ_CLIENT_TOKEN=<reader token>
    cj calls search --phone '+7 900 280-04-21' --from 2026-12-01 --to 2026-12-02
    cj calls search --from '2026-12-01 09:00' --to '2026-12-01 10:00' --tz Europe/Moscow --json
    cj calls get 9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444
    cj calls download 9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444 -o call.mp3

Times given without a zone are read in `--tz` (default `client.timezone`, "local": the
machine's zone) and sent as UTC; tables show times in the same zone. The token comes
from `--token`, else `client.token` (CJ_CLIENT_TOKEN or the configuration file).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from tqdm import tqdm

from cj.apiclient import ApiClient, ApiClientError, iterate_pages
from cj.clitools import config_option, load_command_settings
from cj.config import ClientSettings, ToolSettings

_LOCK = "private"
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")

token_option = click.option(
    "--token", envvar=None, default=None, help="Bearer token (default: client.token)."
)
tz_option = click.option(
    "--tz",
    "zone_name",
    default=None,
    help="IANA zone for times in and out (default: client.timezone).",
)


@click.group("calls")
def calls() -> None:
    """Search calls, show one, download its recording (REST API, client.* settings);
    release or protect one (`privacy`, on the database directly, audited)."""


@calls.command("search")
@config_option
@token_option
@tz_option
@click.option("--phone", help="Caller or destination, any notation (suffix of digits).")
@click.option("--exact", is_flag=True, help="Match all digits, not a suffix.")
@click.option("--from", "start", help="From this time (inclusive), e.g. '2026-12-01 09:00'.")
@click.option("--to", "end", help="Until this time (exclusive).")
@click.option("--direction", type=click.Choice(["inbound", "outbound", "internal", "unknown"]))
@click.option(
    "--with-recording/--without-recording",
    "has_recording",
    default=None,
    help="Only calls with (or without) a recording.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--page-token", help="Continue a previous search (printed after a page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one call each.")
def search(
    config_path: Path | None,
    token: str | None,
    zone_name: str | None,
    phone: str | None,
    exact: bool,
    start: str | None,
    end: str | None,
    direction: str | None,
    has_recording: bool | None,
    limit: int,
    page_token: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """Calls newest first, by phone and/or interval (an interval needs --from and --to)."""
    settings = load_command_settings(ClientSettings, config_path)
    zone = _zone(zone_name or settings.client.timezone)
    if phone is None and (start is None or end is None):
        raise click.UsageError("give --phone, or both --from and --to")
    params: dict[str, str] = {"limit": str(limit)}
    if phone is not None:
        params["phone"] = phone
        if exact:
            params["exact"] = "true"
    if start is not None:
        params["from"] = _utc_param(start, zone, "--from")
    if end is not None:
        params["to"] = _utc_param(end, zone, "--to")
    if direction is not None:
        params["direction"] = direction
    if has_recording is not None:
        params["has_recording"] = "true" if has_recording else "false"
    if page_token:
        params["page_token"] = page_token
    shown = 0
    next_token: str | None = None
    with _client(settings, token) as api:
        try:
            for page in iterate_pages(api, params, pages=None if all_pages else 1):
                records = page.get("calls", [])
                if as_json:
                    for record in records:
                        click.echo(json.dumps(record, ensure_ascii=False))
                elif records:
                    click.echo(format_table(records, zone, header=shown == 0))
                shown += len(records)
                next_token = page.get("next_page_token")
        except ApiClientError as exc:
            raise click.ClickException(str(exc)) from None
    if not as_json:
        if shown == 0:
            click.echo("no calls found")
        elif next_token:
            click.echo(f"more: add --page-token {next_token}  (or --all)", err=True)


@calls.command("get")
@config_option
@token_option
@tz_option
@click.argument("call_uuid")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, raw CDR included.")
def get(
    config_path: Path | None,
    token: str | None,
    zone_name: str | None,
    call_uuid: str,
    as_json: bool,
) -> None:
    """One call with its recording's state."""
    settings = load_command_settings(ClientSettings, config_path)
    zone = _zone(zone_name or settings.client.timezone)
    with _client(settings, token) as api:
        record = _call_api(api.get_call, call_uuid)
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    click.echo(format_details(record, zone))


@calls.command("download")
@config_option
@token_option
@click.argument("call_uuid")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: <uuid>.mp3, or .wav while still encoding).",
)
def download(
    config_path: Path | None, token: str | None, call_uuid: str, output: Path | None
) -> None:
    """Download a call's recording (resumes an interrupted download)."""
    settings = load_command_settings(ClientSettings, config_path)
    with _client(settings, token) as api:
        target = output
        if target is None:
            record = _call_api(api.get_call, call_uuid)
            recording = record.get("recording") or {}
            suffix = "mp3" if recording.get("content_type") == "audio/mpeg" else "wav"
            target = Path(f"{call_uuid}.{suffix}")
        bar = tqdm(unit="B", unit_scale=True, disable=not sys.stderr.isatty(), file=sys.stderr)

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            size, content_type = _call_api(api.download, call_uuid, target, progress=progress)
        finally:
            bar.close()
    click.echo(f"{target}: {size} bytes ({content_type})")


@calls.command()
@config_option
@click.argument("call_uuid", type=click.UUID)
@click.option(
    "--public/--private",
    "public",
    default=None,
    help="--public releases a private call; --private protects one. One is required.",
)
@click.option("--reason", required=True, help="Why; kept in the audit log (required).")
def privacy(
    config_path: Path | None, call_uuid: uuid.UUID, public: bool | None, reason: str
) -> None:
    """Make a call public or private, on the database directly (as `cj purge` does).

    Ingest may make a call private, never public again: this (or the admin API) is how a
    private call is released. The audit log records the OS user as `cli:<user>`.
    """
    import trio

    from cj.db import open_database
    from cj.db.audit import MAX_REASON
    from cj.db.errors import DatabaseError
    from cj.db.privacy import set_call_privacy
    from cj.retention_cli import operator

    if public is None:
        raise click.UsageError("say --public or --private")
    if not reason.strip() or len(reason.strip()) > MAX_REASON:
        raise click.BadParameter(f"must be 1 to {MAX_REASON} characters", param_hint="--reason")
    settings = load_command_settings(ToolSettings, config_path)
    actor = operator()

    async def run() -> None:
        async with open_database(settings.database) as db:
            change = await db.run(
                lambda conn: set_call_privacy(
                    conn, call_uuid, private=not public, actor=actor, reason=reason
                )
            )
        if change is None:
            raise click.ClickException(f"no call {call_uuid}")
        state = "private" if change.private else "public"
        verb = "is now" if change.changed else "was already"
        click.echo(f"call {call_uuid} {verb} {state} (audited as {actor})")

    try:
        trio.run(run)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None


# --- formatting ----------------------------------------------------------------------------


_COLUMNS = ("started", "dir", "caller", "destination", "dur", "bill", "recording", "uuid")


def format_table(records: Sequence[dict[str, Any]], zone: tzinfo, *, header: bool = True) -> str:
    """Aligned columns, one call a line."""
    rows = [_row(record, zone) for record in records]
    table = ([list(_COLUMNS)] if header else []) + rows
    if not table:
        return ""
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    if not header:  # later pages keep the first page's widths as far as they fit
        widths = [max(w, len(c)) for w, c in zip(widths, _COLUMNS, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _row(record: dict[str, Any], zone: tzinfo) -> list[str]:
    call = record.get("call", {})
    recording = record.get("recording")
    state = "-" if recording is None else str(recording.get("status", "?"))
    if call.get("private"):
        state = f"{state} ({_LOCK})"
    caller = str(call.get("caller_number", ""))
    if call.get("caller_name"):
        caller = f"{caller} ({call['caller_name']})"
    return [
        _local(call.get("started_at"), zone),
        str(call.get("direction", ""))[:3],
        caller,
        str(call.get("destination_number", "")),
        f"{call.get('duration_s', 0)}s",
        f"{call.get('billsec', 0)}s",
        state,
        str(call.get("uuid", "")),
    ]


def format_details(record: dict[str, Any], zone: tzinfo) -> str:
    call = record.get("call", {})
    recording = record.get("recording")
    lines = [
        ("uuid", call.get("uuid")),
        ("source", call.get("source")),
        ("caller", f"{call.get('caller_number', '')} {call.get('caller_name', '')}".strip()),
        ("destination", call.get("destination_number")),
        ("direction", call.get("direction")),
        ("started", _local(call.get("started_at"), zone)),
        ("answered", _local(call.get("answered_at"), zone)),
        ("ended", _local(call.get("ended_at"), zone)),
        ("duration", f"{call.get('duration_s', 0)} s (billed {call.get('billsec', 0)} s)"),
        ("hangup", f"{call.get('hangup_cause', '')} {call.get('hangup_side', '')}".strip()),
        ("sip code", call.get("sip_code")),
        ("private", "yes: the recording cannot be downloaded" if call.get("private") else "no"),
    ]
    if recording is None:
        lines.append(("recording", "none"))
    else:
        lines.append(
            (
                "recording",
                f"{recording.get('status')}, {recording.get('content_type')}, "
                f"{recording.get('size')} bytes",
            )
        )
    width = max(len(name) for name, _ in lines)
    return "\n".join(
        f"{name.ljust(width)}  {'' if value is None else value}" for name, value in lines
    )


def _local(value: object, zone: tzinfo) -> str:
    if not isinstance(value, str) or not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


# --- helpers -------------------------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--tz") from None


def _utc_param(text: str, zone: tzinfo, option: str) -> str:
    """A time as the API wants it (UTC, ISO 8601): a zone in the text wins over `zone`."""
    text = text.strip()
    moment: datetime | None = None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for layout in _TIME_FORMATS:
            try:
                moment = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if moment is None:
        raise click.BadParameter(
            f"{text!r} is not a time (e.g. '2026-12-01 09:00' or 2026-12-01T09:00:00Z)",
            param_hint=option,
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _client(settings: ClientSettings, token: str | None) -> ApiClient:
    try:
        return ApiClient.from_config(settings.client, token=token)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None


def _call_api(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None
