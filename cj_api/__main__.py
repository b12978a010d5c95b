"""`cj-api`: the API service (gRPC and REST in one process)."""

from __future__ import annotations

from pathlib import Path

import click

from cj.clitools import config_option, load_command_settings, remember_config
from cj.config import ApiSettings


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Call Journal API: gRPC and REST. Without a command, runs the service."""
    remember_config(ctx, config_path)
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, config_path=config_path)


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and exit 0."""
    from cj.daemon import run_daemon
    from cj_api.app import serve as serve_api

    settings = load_command_settings(ApiSettings, config_path)
    raise SystemExit(run_daemon("cj-api", serve_api, settings, settings.logging))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
