"""`cj`: the operator's tool (migrations, CDR debugging, the all-in-one dev mode)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Call Journal operator commands."""


def main() -> None:
    _register_commands()
    cli()


def _register_commands() -> None:
    # Subcommand groups live next to the code they drive; imported lazily so that
    # `cj --help` stays fast and one broken area does not take the others down.
    from cj.cdr.cli import cdr

    cli.add_command(cdr)
