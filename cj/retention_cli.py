"""`cj purge` (retention per source) and `cj hold add|remove|list` (legal holds).

Both act on the database and storages directly, like `cj migrate`, as the operator
running them: the audit log names them `cli:<user>`.
"""

from __future__ import annotations

import functools
import getpass
import json
import uuid as uuid_module
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import trio

from cj.cdr_retention import CdrAge, CdrPurgeReport, format_cdr_report, purge_cdrs
from cj.clitools import config_option, load_command_settings
from cj.config import ToolSettings
from cj.db import Connection, open_database
from cj.db.errors import DatabaseError
from cj.db.holds import Hold, HoldError, add_hold, list_holds, remove_hold
from cj.retention import PurgeReport, RetentionError, RetentionPolicy, purge_recordings
from cj.storage import StorageError, open_storages


def operator() -> str:
    """The audit log's actor for commands run by hand."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


@click.command()
@config_option
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days kept for sources without their own retention (default: retention.recordings_days).",
)
@click.option(
    "--cdr-older-than",
    "cdr_age",
    default=None,
    metavar="AGE",
    help="Also delete the CDRs (call metadata) older than AGE (400d, 18m, 2y) by whole "
    "months, their audio first; held calls stay.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
def purge(
    config_path: Path | None, older_than_days: int | None, cdr_age: str | None, dry_run: bool
) -> None:
    """Delete recordings past retention (metadata stays; downloads answer 410).

    Each source keeps its recordings retention.by_source days, the others
    retention.recordings_days (or --older-than-days). Calls under a legal hold are never
    purged. With --cdr-older-than, the calls themselves go too once that old (a month at a
    time: see docs/operations.md). Run it daily (cron or a systemd timer); safe to
    interrupt and to run again.
    """
    settings = load_command_settings(ToolSettings, config_path)
    now = datetime.now(UTC)
    try:
        cdr_older_than = CdrAge.parse(cdr_age) if cdr_age is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cdr-older-than") from None
    try:
        policy: RetentionPolicy | None = RetentionPolicy.from_config(
            settings.retention, now=now, override_days=older_than_days
        )
    except RetentionError as exc:
        if cdr_older_than is None:
            raise click.UsageError(str(exc)) from None
        policy = None  # only CDRs to purge

    async def run() -> tuple[PurgeReport | None, CdrPurgeReport | None]:
        async with (
            open_database(settings.database) as db,
            open_storages(settings.storage) as storages,
        ):
            recordings = cdrs = None
            if policy is not None:
                recordings = await purge_recordings(
                    db, storages, policy, actor=operator(), dry_run=dry_run
                )
            if cdr_older_than is not None:
                cdrs = await purge_cdrs(
                    db,
                    storages,
                    older_than=cdr_older_than,
                    now=now,
                    actor=operator(),
                    dry_run=dry_run,
                )
            return recordings, cdrs

    try:
        recordings, cdrs = trio.run(run)
    except (DatabaseError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    if recordings is not None:
        click.echo(format_report(recordings, dry_run=dry_run))
    if cdrs is not None:
        if cdrs.audio is not None and (cdrs.audio.recordings or cdrs.audio.held):
            click.echo(format_report(cdrs.audio, dry_run=dry_run))
        click.echo("\n".join(format_cdr_report(cdrs, dry_run=dry_run)))


def format_report(report: PurgeReport, *, dry_run: bool) -> str:
    verb = "would purge at least" if dry_run else "purged"
    lines = []
    if report.resumed:
        lines.append(f"finished {report.resumed} purge(s) an earlier run left half done")
    for rule in report.rules:
        lines.append(
            f"{rule.label}: {verb} {rule.recordings} recording(s) of calls before "
            f"{rule.started_before:%Y-%m-%d %H:%M} UTC ({rule.objects_deleted} stored object(s))"
        )
        skipped = rule.skipped
        if skipped is None:
            continue
        if skipped.held:
            lines.append(f"  skipped {skipped.held} under legal hold:")
            for call_uuid, reason in skipped.held_examples:
                lines.append(f"    {call_uuid}  {reason}")
            if skipped.held > len(skipped.held_examples):
                lines.append(f"    … and {skipped.held - len(skipped.held_examples)} more")
        if skipped.not_encoded:
            lines.append(
                f"  skipped {skipped.not_encoded} still being encoded (purged once stored)"
            )
    return "\n".join(lines)


@click.group()
def hold() -> None:
    """Legal holds: calls whose recordings retention never purges."""


@hold.command("add")
@config_option
@click.argument("call_uuids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why (a case number, who asked).")
def hold_add(config_path: Path | None, call_uuids: tuple[str, ...], reason: str) -> None:
    """Hold calls (by uuid; a call still to arrive may be held too)."""
    uuids = _uuids(call_uuids)

    def add(conn: Connection, call_uuid: uuid_module.UUID) -> bool:
        return add_hold(conn, call_uuid, reason=reason, actor=operator())

    results = _run_each(config_path, uuids, add)
    for call_uuid, added in zip(uuids, results, strict=True):
        click.echo(f"{call_uuid}: {'held' if added else 'already held'}")


@hold.command("remove")
@config_option
@click.argument("call_uuids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the hold ends.")
def hold_remove(config_path: Path | None, call_uuids: tuple[str, ...], reason: str) -> None:
    """Lift holds; retention applies to these calls again."""
    uuids = _uuids(call_uuids)

    def remove(conn: Connection, call_uuid: uuid_module.UUID) -> bool:
        return remove_hold(conn, call_uuid, reason=reason, actor=operator()) is not None

    results = _run_each(config_path, uuids, remove)
    for call_uuid, removed in zip(uuids, results, strict=True):
        click.echo(f"{call_uuid}: {'released' if removed else 'was not held'}")


@hold.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def hold_list(config_path: Path | None, as_json: bool) -> None:
    """Every call under a legal hold, oldest hold first."""
    settings = load_command_settings(ToolSettings, config_path)

    async def run() -> list[Hold]:
        async with open_database(settings.database) as db:
            return await db.run(list_holds)

    try:
        holds = trio.run(run)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    for item in holds:
        row = {
            "call_uuid": str(item.call_uuid),
            "reason": item.reason,
            "held_by": item.held_by,
            "held_at": item.held_at.isoformat(),
        }
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{row['call_uuid']}  {row['held_at'][:19]}  {row['held_by']}  {row['reason']}"
            )
    if not holds and not as_json:
        click.echo("no calls are held")


def _uuids(values: tuple[str, ...]) -> list[uuid_module.UUID]:
    try:
        return [uuid_module.UUID(value) for value in values]
    except ValueError:
        bad = next(v for v in values if not _is_uuid(v))
        raise click.BadParameter(f"{bad!r} is not a call uuid", param_hint="CALL_UUIDS") from None


def _is_uuid(value: str) -> bool:
    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True


def _run_each(
    config_path: Path | None,
    uuids: list[uuid_module.UUID],
    fn: Callable[[Connection, uuid_module.UUID], bool],
) -> list[bool]:
    settings = load_command_settings(ToolSettings, config_path)

    async def run() -> list[bool]:
        async with open_database(settings.database) as db:
            return [await db.run(functools.partial(_apply, fn, u)) for u in uuids]

    try:
        return trio.run(run)
    except HoldError as exc:
        raise click.BadParameter(exc.reason, param_hint=f"--{exc.field}") from None
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None


def _apply(
    fn: Callable[[Connection, uuid_module.UUID], bool],
    call_uuid: uuid_module.UUID,
    conn: Connection,
) -> bool:
    return fn(conn, call_uuid)
