"""`cj-api`: the API service (gRPC and REST; several worker processes with `api.workers`)."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any

import click
import structlog
import trio

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


def _effective_config(config_path: Path | None) -> Path | None:
    if config_path is not None:
        return config_path
    root = click.get_current_context().find_root().obj
    return root if isinstance(root, Path) else None


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and exit 0.

    With `api.workers` above 1 this process supervises that many workers sharing the
    ports (see docs/operations.md).
    """
    from cj.daemon import run_daemon

    settings = load_command_settings(ApiSettings, config_path)
    if settings.api.worker_count > 1:
        from cj_api.workers import supervise

        run = functools.partial(supervise, config_path=_effective_config(config_path))
        raise SystemExit(run_daemon("cj-api", run, settings, settings.logging))
    from cj_api.app import serve as serve_api

    raise SystemExit(run_daemon("cj-api", serve_api, settings, settings.logging))


@cli.command(hidden=True)
@config_option
@click.option("--slot", type=int, required=True)
@click.option("--control-fd", type=int, required=True)
@click.option("--status-file", type=click.Path(path_type=Path), required=True)
@click.option("--limits-file", type=click.Path(path_type=Path), default=None)
def worker(
    config_path: Path | None,
    slot: int,
    control_fd: int,
    status_file: Path,
    limits_file: Path | None,
) -> None:
    """One worker process, started by `cj-api serve` (cj_api/workers.py)."""
    from cj.daemon import run_daemon
    from cj_api.app import serve as serve_api
    from cj_api.workers import WorkerRole, serve_worker

    os.set_inheritable(control_fd, False)
    control = socket.socket(fileno=control_fd)
    settings = load_command_settings(ApiSettings, config_path)
    structlog.contextvars.bind_contextvars(worker=slot)
    role = WorkerRole(slot, status_file, limits_file)

    async def run(
        settings: ApiSettings,
        *,
        shutdown: trio.Event | None = None,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await serve_worker(
            settings, role, control, serve_api, shutdown=shutdown, task_status=task_status
        )

    raise SystemExit(run_daemon("cj-api-worker", run, settings, settings.logging))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
