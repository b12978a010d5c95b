"""`cj`: the operator's tool (migrations, CDR debugging, the all-in-one dev mode)."""

from __future__ import annotations

from pathlib import Path

import click

from cj.calls_cli import calls
from cj.clitools import config_option, load_command_settings
from cj.config import ToolSettings
from cj.db.errors import DatabaseError
from cj.retention_cli import hold, purge


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


cli.add_command(calls)
cli.add_command(hold)
cli.add_command(purge)


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
