"""`cj-encoder`: the encoder service's command (subcommands: `encode`; `serve` to come)."""

from __future__ import annotations

import click

from cj.audio.cli import encode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Call Journal encoder: WAV recordings to stereo MP3."""


cli.add_command(encode)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
