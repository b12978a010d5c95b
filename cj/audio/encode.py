"""WAV → stereo MP3 in process: libsndfile decodes, LAME (lameenc) encodes.

Synchronous and thread-friendly (lameenc and libsndfile release the GIL while they
work): the encoder service calls `encode_wav_to_mp3` through `trio.to_thread.run_sync`.

The output is constant-bitrate, joint-stereo MP3 at the input's sample rate, preceded by
a LAME "Info" tag frame carrying the frame count, encoder delay and end padding, so that
decoders which honour it (mpg123 and thus libsndfile, ffmpeg) decode exactly as many
samples as the WAV had. lameenc writes no such tag, and misbehaves silently on wrong
use, so this module guards it: one fresh encoder per file, every setting applied before
the first `encode`, only int16 C-contiguous interleaved stereo handed over, and the
first frame it produces checked against the settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import lameenc
import numpy as np

from cj.audio.errors import AudioError
from cj.audio.mpeg import (
    LAME_ENCODER_DELAY,
    MPEG_SAMPLE_RATES,
    FrameCounter,
    InfoTag,
    MpegFormatError,
    build_info_frame,
    crc16,
    info_frame_size,
    mpeg_version_name,
    valid_bitrates,
)
from cj.audio.source import DEFAULT_BLOCK_FRAMES, StereoBlock, WavReader, open_audio

CHANNELS_OUT = 2


@dataclass(frozen=True)
class EncodeSettings:
    """MP3 settings. The defaults suit telephone speech: 32 kbps CBR, LAME -q 5.

    `bitrate_kbps` is adjusted to the nearest bitrate the output sample rate allows
    (reported in the result's warnings); `quality` is LAME's -q: 0 best and slowest,
    9 worst and fastest.
    """

    bitrate_kbps: int = 32
    quality: int = 5

    def __post_init__(self) -> None:
        for name, low, high in (("bitrate_kbps", 8, 320), ("quality", 0, 9)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class OutputPlan:
    """The MP3 parameters chosen for one input."""

    sample_rate: int  # of the MP3
    bitrate_kbps: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class EncodeResult:
    """What was produced. `frames` and `duration_ms` describe the audio encoded."""

    duration_ms: int
    sample_rate: int  # of the MP3 (the input's, unless that is not an MP3 rate)
    source_sample_rate: int
    channels_in: int
    channels_out: int  # always 2
    frames: int  # PCM frames encoded, at the source rate
    bitrate_kbps: int
    size: int  # bytes of MP3
    sha256: str  # of the MP3
    source_subtype: str  # libsndfile's codec name of the input, e.g. "ULAW"
    recovered: bool  # the input was damaged (truncated, unfinalised header, decode error)
    warnings: tuple[str, ...]  # damage found, settings adjusted


def plan_output(sample_rate: int, bitrate_kbps: int) -> OutputPlan:
    """Choose the MP3 sample rate and bitrate for input at `sample_rate`.

    The recorded rate is kept when MP3 has it (8, 11.025, 12, 16, 22.05, 24, 32, 44.1,
    48 kHz); otherwise LAME resamples to the next higher MP3 rate (48 kHz at most).
    The bitrate snaps to the nearest one allowed at that rate (MPEG-1 needs ≥ 32 kbps;
    LAME caps MPEG-2.5, 8–12 kHz, at 64 kbps). Each adjustment is a warning.
    """
    warnings: list[str] = []
    if sample_rate in MPEG_SAMPLE_RATES:
        out_rate = sample_rate
    else:
        out_rate = next((r for r in MPEG_SAMPLE_RATES if r >= sample_rate), 48000)
        warnings.append(f"{sample_rate} Hz is not an MP3 sample rate; resampled to {out_rate} Hz")
    allowed = valid_bitrates(out_rate)
    bitrate = min(allowed, key=lambda b: (abs(b - bitrate_kbps), b))
    if bitrate != bitrate_kbps:
        warnings.append(
            f"{bitrate_kbps} kbps is not available at {out_rate} Hz "
            f"({mpeg_version_name(out_rate)}: {allowed[0]}–{allowed[-1]} kbps); "
            f"used {bitrate} kbps"
        )
    return OutputPlan(out_rate, bitrate, tuple(warnings))


def _new_encoder(source_rate: int, plan: OutputPlan, quality: int) -> lameenc.Encoder:
    # lameenc applies settings at its first encode() and ignores later ones, and
    # defaults to 44.1 kHz input: a fresh encoder, fully configured here, every time.
    encoder = lameenc.Encoder()
    try:
        encoder.set_channels(CHANNELS_OUT)
        encoder.set_in_sample_rate(source_rate)
        encoder.set_out_sample_rate(plan.sample_rate)  # else LAME may resample down
        encoder.set_bit_rate(plan.bitrate_kbps)
        encoder.set_quality(quality)
    except RuntimeError as exc:
        raise AudioError(f"lameenc rejected the settings {plan}: {exc}") from exc
    return encoder


def _check_block(block: StereoBlock) -> StereoBlock:
    # lameenc takes any buffer as raw bytes: float or non-contiguous data would be
    # encoded as noise or at the wrong speed without an error.
    if (
        block.dtype != np.int16
        or block.ndim != 2
        or block.shape[1] != CHANNELS_OUT
        or not block.flags.c_contiguous
    ):
        raise AudioError(
            f"internal: PCM block must be C-contiguous int16 (n, 2), got "
            f"{block.dtype} {block.shape} contiguous={block.flags.c_contiguous}"
        )
    return block


@dataclass
class _Stream:
    """Running totals of the MP3 written after the reserved tag frame."""

    counter: FrameCounter
    crc: int = 0

    def write(self, out: BinaryIO, data: bytes | bytearray) -> None:
        if data:
            out.write(data)
            self.counter.feed(data)
            self.crc = crc16(data, self.crc)


def _encode_to(
    reader: WavReader,
    out: BinaryIO,
    settings: EncodeSettings,
    progress: Callable[[int], None] | None,
    block_frames: int,
) -> EncodeResult:
    info = reader.info
    plan = plan_output(info.sample_rate, settings.bitrate_kbps)
    start = out.tell()
    _, tag_size = info_frame_size(plan.sample_rate, plan.bitrate_kbps, CHANNELS_OUT)
    out.write(bytes(tag_size))  # reserved; the tag needs the totals, known at the end
    encoder = _new_encoder(info.sample_rate, plan, settings.quality)
    stream = _Stream(FrameCounter())
    frames = 0
    try:
        for block in reader.blocks(block_frames):
            stream.write(out, encoder.encode(_check_block(block)))
            frames += len(block)
            if progress is not None:
                progress(frames)
        stream.write(out, encoder.flush())
    except MpegFormatError as exc:
        raise AudioError(f"lameenc produced a malformed MP3 stream: {exc}") from exc
    except RuntimeError as exc:
        raise AudioError(f"lameenc failed: {exc}") from exc
    first = stream.counter.first
    if frames == 0 or first is None:
        raise AudioError("no audio was encoded")  # open_audio refuses empty inputs
    if not stream.counter.complete:
        raise AudioError("lameenc's output ends inside a frame")
    if (first.sample_rate, first.bitrate_kbps, first.channels) != (
        plan.sample_rate,
        plan.bitrate_kbps,
        CHANNELS_OUT,
    ):
        raise AudioError(
            f"lameenc ignored the settings: asked {plan.sample_rate} Hz "
            f"{plan.bitrate_kbps} kbps stereo, got {first.sample_rate} Hz "
            f"{first.bitrate_kbps} kbps {first.channels} channel(s)"
        )

    # Samples LAME saw: resampling (non-MP3 input rates only) changes the count.
    samples_out = round(frames * plan.sample_rate / info.sample_rate)
    padding = stream.counter.frames * first.samples_per_frame - LAME_ENCODER_DELAY - samples_out
    size = tag_size + stream.counter.bytes
    tag = InfoTag(
        frames=stream.counter.frames,
        stream_bytes=size,
        enc_delay=LAME_ENCODER_DELAY,
        enc_padding=min(max(padding, 0), 4095),
        music_crc=stream.crc,
        bitrate_kbps=plan.bitrate_kbps,
        quality=settings.quality,
        source_sample_rate=info.sample_rate,
    )
    tag_frame = build_info_frame(first, tag)
    if len(tag_frame) != tag_size:  # pragma: no cover - info_frame_size decides both
        raise AudioError("internal: tag frame size changed")
    out.seek(start)
    out.write(tag_frame)
    out.flush()

    digest = hashlib.sha256()
    out.seek(start)
    left = size
    while left > 0:
        chunk = out.read(min(left, 1 << 18))
        if not chunk:
            raise AudioError("the MP3 output is shorter than what was written")
        digest.update(chunk)
        left -= len(chunk)
    out.seek(start + size)

    warnings = list(info.problems) + list(plan.warnings)
    if reader.read_error is not None:
        warnings.append(reader.read_error)
    return EncodeResult(
        duration_ms=round(frames * 1000 / info.sample_rate),
        sample_rate=plan.sample_rate,
        source_sample_rate=info.sample_rate,
        channels_in=info.channels,
        channels_out=CHANNELS_OUT,
        frames=frames,
        bitrate_kbps=plan.bitrate_kbps,
        size=size,
        sha256=digest.hexdigest(),
        source_subtype=info.subtype,
        recovered=info.recovered or reader.read_error is not None,
        warnings=tuple(warnings),
    )


@contextlib.contextmanager
def _atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """A temp file beside `dst`, fsynced and renamed over it only on success."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def encode_wav_to_mp3(
    src: Path,
    dst: BinaryIO | Path,
    settings: EncodeSettings | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> EncodeResult:
    """Encode the audio file `src` into a stereo MP3 at `dst`, in constant memory.

    `dst` is either a path, written atomically (temp file in the same directory,
    fsync, rename; nothing is left behind on failure), or a binary file opened for
    reading and writing ("w+b") and seekable, written from its current position (its
    contents past that position are undefined after a failure). `progress` is called
    after every block (64k frames by default) with the number of input frames encoded
    so far, in the thread running this function: under `trio.to_thread.run_sync` it
    can reach Trio through `trio.from_thread`, and an exception it raises (e.g. from
    `trio.from_thread.check_cancelled()`) aborts the encoding and propagates.

    Damaged inputs are encoded as far as they go (`recovered` is set and `warnings` say
    what was wrong). Raises UndecodableAudio when `src` cannot be decoded at all
    (permanent), AudioError for other encoder failures, OSError for I/O errors.
    """
    settings = settings or EncodeSettings()
    if not isinstance(dst, Path) and not (dst.seekable() and dst.readable()):
        raise ValueError(
            "dst must be a Path or a seekable binary file opened for reading and "
            "writing: the tag frame is written last, at the start, and the result's "
            "sha256 is read back"
        )
    with open_audio(Path(src)) as reader:
        if isinstance(dst, Path):
            with _atomic_output(dst) as out:
                return _encode_to(reader, out, settings, progress, block_frames)
        return _encode_to(reader, dst, settings, progress, block_frames)
