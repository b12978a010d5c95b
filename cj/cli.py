"""`cj`: the operator's tool (migrations, CDR debugging, the all-in-one dev mode)."""

from __future__ import annotations

from pathlib import Path

import click

from cj.clitools import config_option, load_command_settings
from cj.config import ToolSettings
from cj.db.errors import DatabaseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Call Journal operator commands."""


def load_tool_settings(config_path: Path | None) -> ToolSettings:
    return load_command_settings(ToolSettings, config_path)


@cli.command()
@config_option
@click.option("--check", is_flag=True, help="Apply nothing; exit 1 when migrations are pending.")
def migrate(config_path: Path | None, check: bool) -> None:
    """Bring the database schema up to date (safe to run concurrently and repeatedly)."""
    from cj.db.migrate import migrate as apply_migrations
    from cj.db.migrate import pending

    settings = load_tool_settings(config_path)
    url = settings.database.url.get_secret_value()
    try:
        if check:
            waiting = pending(url)
            for migration in waiting:
                click.echo(f"pending: {migration.version:04d}_{migration.name}")
            if waiting:
                raise SystemExit(1)
            click.echo("schema is up to date")
            return
        applied = apply_migrations(url)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    for migration in applied:
        click.echo(f"applied: {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo("schema is up to date")


@cli.command()
@config_option
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    required=True,
    help="Purge the audio of calls that started more than this many days ago.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
def purge(config_path: Path | None, older_than_days: int, dry_run: bool) -> None:
    """Delete recordings past retention (the calls' metadata stays; downloads answer 410).

    Run it daily (cron or a systemd timer). Safe to interrupt and to run again.
    """
    from datetime import UTC, datetime, timedelta

    import trio

    from cj.db import open_database
    from cj.retention import purge_recordings
    from cj.storage import StorageError, open_storages

    settings = load_tool_settings(config_path)
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)

    async def run() -> None:
        async with (
            open_database(settings.database) as db,
            open_storages(settings.storage) as storages,
        ):
            report = await purge_recordings(db, storages, started_before=cutoff, dry_run=dry_run)
        verb = "would purge at least" if dry_run else "purged"
        click.echo(
            f"{verb} {report.recordings} recording(s) of calls before {cutoff:%Y-%m-%d %H:%M} UTC"
            f" ({report.objects_deleted} stored object(s))"
        )

    try:
        trio.run(run)
    except (DatabaseError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None


def main() -> None:
    _register_commands()
    cli()


def _register_commands() -> None:
    # Subcommand groups live next to the code they drive.
    from cj.cdr.cli import cdr
    from cj.dev import dev
    from cj.export_cli import export

    cli.add_command(cdr)
    cli.add_command(dev)
    cli.add_command(export)
