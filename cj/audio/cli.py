"""`cj-encoder encode IN.wav OUT.mp3`: the service's conversion, by hand.

For operators checking one recording: the same decoding, recovery and MP3 (with its
exact-length tag) the encoder service produces, written atomically to OUT, and a
one-line summary. Exit status 1 with the reason on standard error when IN cannot be
decoded or encoding fails; OUT is then not created.
"""

from __future__ import annotations

from pathlib import Path

import click

from cj.audio.encode import EncodeResult, EncodeSettings, encode_wav_to_mp3
from cj.audio.errors import AudioError, UndecodableAudio

_DEFAULTS = EncodeSettings()


def summary_line(dst: Path, result: EncodeResult) -> str:
    """`out.mp3: 8.125 s, 8000 Hz, 1 → 2 channels, 32 kbps, 33984 bytes, from ULAW, …`."""
    parts = [
        f"{result.duration_ms / 1000:.3f} s",
        f"{result.sample_rate} Hz",
        f"{result.channels_in} → {result.channels_out} channels",
        f"{result.bitrate_kbps} kbps",
        f"{result.size} bytes",
        f"from {result.source_subtype}",
        "recovered" if result.recovered else "intact",
    ]
    line = f"{dst}: " + ", ".join(parts)
    if result.warnings:
        line += "; warnings: " + "; ".join(result.warnings)
    return line


@click.command("encode")
@click.argument(
    "src", metavar="IN.wav", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("dst", metavar="OUT.mp3", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--bitrate",
    "bitrate_kbps",
    type=click.IntRange(8, 320),
    default=_DEFAULTS.bitrate_kbps,
    show_default=True,
    help="Constant bitrate in kbps (snapped to what the sample rate allows).",
)
@click.option(
    "--quality",
    type=click.IntRange(0, 9),
    default=_DEFAULTS.quality,
    show_default=True,
    help="LAME quality: 0 best and slowest, 9 worst and fastest.",
)
def encode(src: Path, dst: Path, bitrate_kbps: int, quality: int) -> None:
    """Convert IN.wav to a stereo MP3 at OUT.mp3, as the encoder service does."""
    settings = EncodeSettings(bitrate_kbps=bitrate_kbps, quality=quality)
    try:
        result = encode_wav_to_mp3(src, dst, settings)
    except UndecodableAudio as exc:
        raise click.ClickException(str(exc)) from None
    except AudioError as exc:
        raise click.ClickException(f"encoding {src} failed: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or src}: {exc.strerror or exc}") from None
    click.echo(summary_line(dst, result))
