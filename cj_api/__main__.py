"""`cj-api`: the API service (gRPC and REST in one process)."""

from __future__ import annotations

from pathlib import Path

import click

from cj.config import ApiSettings, ConfigError, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration file (default: $CJ_CONFIG, else defaults + CJ_* variables).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Call Journal API: gRPC and REST. Without a command, runs the service."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and exit 0."""
    from cj.daemon import run_daemon
    from cj_api.app import serve as serve_api

    try:
        settings = load_settings(ApiSettings, ctx.obj.get("config_path"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(run_daemon("cj-api", serve_api, settings, settings.logging))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
