"""What every Call Journal command line shares: `--config` and loading settings.

`--config FILE` is accepted on the group and on each subcommand
(`cj-agent --config F backfill …` and `cj-agent backfill --config F …` both work); a
bad configuration ends the command with the loader's message (exit 1), no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import click

from cj.config import ConfigError, load_settings

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration file (default: $CJ_CONFIG, else defaults + CJ_* variables).",
)


def remember_config(ctx: click.Context, config_path: Path | None) -> None:
    """Keep the group's `--config` for subcommands that are not given their own."""
    ctx.obj = config_path


def load_command_settings(settings_type: type[T], config_path: Path | None = None) -> T:
    """The settings for a command: its own `--config`, else the group's, else defaults."""
    if config_path is None:
        context = click.get_current_context(silent=True)
        root = context.find_root().obj if context is not None else None
        config_path = root if isinstance(root, Path) else None
    try:
        return load_settings(settings_type, config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
