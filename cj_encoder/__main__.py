"""`cj-encoder`: the encoder service and its operator commands."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from cj.audio.cli import encode
from cj.clitools import config_option, load_command_settings, remember_config
from cj.config import EncoderSettings


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Call Journal encoder: WAV recordings to stereo MP3 in permanent storage.

    Without a command, runs the service (as `serve`).
    """
    remember_config(ctx, config_path)
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, config_path=config_path)


def _settings(config_path: Path | None) -> EncoderSettings:
    return load_command_settings(EncoderSettings, config_path)


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Consume encode jobs until SIGTERM/SIGINT (then finish in-flight work and exit 0)."""
    from cj.daemon import run_daemon
    from cj_encoder.service import serve as serve_encoder

    settings = _settings(config_path)
    raise SystemExit(run_daemon("cj-encoder", serve_encoder, settings, settings.logging))


@cli.command("retry-failed")
@config_option
@click.option("--call", "call_uuid", type=click.UUID, default=None, help="Only this call.")
def retry_failed(config_path: Path | None, call_uuid: uuid.UUID | None) -> None:
    """Queue failed recordings for another round of attempts."""
    import trio

    from cj.db import DatabaseError
    from cj.queue import QueueError

    settings = _settings(config_path)
    try:
        count = trio.run(_retry_failed, settings, call_uuid)
    except (DatabaseError, QueueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"re-queued {count} failed recording(s)")
    if call_uuid is not None and count == 0:
        raise click.ClickException(f"call {call_uuid} has no failed recording")


async def _retry_failed(settings: EncoderSettings, call_uuid: uuid.UUID | None) -> int:
    import functools

    from cj.db import open_database
    from cj.db.recordings import requeue_failed
    from cj.queue import EncodeJob, open_publisher

    async with (
        open_database(settings.database) as db,
        open_publisher(settings.queue, db) as publisher,
    ):
        uuids = await db.run(functools.partial(requeue_failed, call_uuid=call_uuid))
        for each in uuids:
            await publisher.publish(EncodeJob(each))
    return len(uuids)


cli.add_command(encode)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
