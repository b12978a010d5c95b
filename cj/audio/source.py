"""Reading a WAV (or anything libsndfile reads) as blocks of 16-bit stereo PCM.

Decoding is libsndfile's (through soundfile); this module adds what it does not do:
recovering damaged headers (see `riff`), scaling float input to 16 bits (libsndfile
reads float WAVs as int16 *without* scaling, i.e. as near-silence), honouring the fact
chunk for block codecs, and making two channels of everything:

- mono: the channel is duplicated to left and right;
- stereo: kept;
- three or more channels: channels 0, 2, 4 … are averaged into the left channel and
  1, 3, 5 … into the right. Call recorders that write more than two channels put one
  call leg per channel; averaging keeps every leg audible (taking the first two would
  drop parties from the recording) and cannot clip.

Memory is constant: one block of `block_frames` frames is decoded at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile as sf

from cj.audio.errors import UndecodableAudio
from cj.audio.riff import (
    LIBSNDFILE_WAV_CODECS,
    PatchedFile,
    WavLayout,
    scan_wav,
    size_patches,
)

DEFAULT_BLOCK_FRAMES = 65536
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
StereoBlock = npt.NDArray[np.int16]  # shape (n, 2), C-contiguous


@dataclass(frozen=True)
class AudioInfo:
    """What an input file is and what will be decoded from it."""

    format: str  # libsndfile's container name, e.g. "WAV"
    subtype: str  # libsndfile's codec name, e.g. "PCM_16", "ULAW", "GSM610"
    sample_rate: int
    channels: int
    frames: int  # frames that decoding will produce (after recovery, fact trimming)
    problems: tuple[str, ...]  # damage found and how it is handled; empty if none

    @property
    def duration_ms(self) -> int:
        return round(self.frames * 1000 / self.sample_rate)

    @property
    def recovered(self) -> bool:
        """True when the input was damaged and is read by working around the damage."""
        return bool(self.problems)


class WavReader:
    """An open input: `info`, and `blocks()` to decode it. Use through `open_audio`."""

    def __init__(self, sound: sf.SoundFile, info: AudioInfo) -> None:
        self._sound = sound
        self.info = info
        self.read_error: str | None = None  # set when decoding stopped early on an error

    def blocks(self, block_frames: int = DEFAULT_BLOCK_FRAMES) -> Iterator[StereoBlock]:
        """Yield the audio as int16 (n, 2) C-contiguous arrays of at most `block_frames`.

        The arrays are views of buffers reused for the next block: consume each one
        before asking for the next. If libsndfile fails part-way (corrupt data), the
        frames decoded so far have been yielded, `read_error` says why, and iteration
        ends; a failure before any frame raises UndecodableAudio.
        """
        if block_frames < 1:
            raise ValueError(f"block_frames must be positive, got {block_frames}")
        channels = self.info.channels
        as_float = self.info.subtype in _FLOAT_SUBTYPES
        stereo = np.empty((block_frames, 2), dtype=np.int16)
        # Stereo integer input is read straight into the output buffer: no copy at all.
        raw: npt.NDArray[np.int16] | npt.NDArray[np.float32]
        if as_float:
            raw = np.empty((block_frames, channels), dtype=np.float32)
        elif channels == 2:
            raw = stereo
        else:
            raw = np.empty((block_frames, channels), dtype=np.int16)
        remaining = self.info.frames
        done = 0
        while remaining > 0:
            want = min(block_frames, remaining)
            try:
                got = self._sound.read(want, dtype=raw.dtype.name, always_2d=True, out=raw[:want])
            except (sf.LibsndfileError, RuntimeError) as exc:
                if done == 0:
                    raise UndecodableAudio(f"decoding failed at the first frame: {exc}") from exc
                self.read_error = f"decoding stopped after {done} frames: {exc}"
                return
            n = len(got)
            if n == 0:
                return
            if as_float:
                yield _float_to_stereo(got, stereo[:n])
            else:
                yield _int_to_stereo(got, stereo[:n])
            done += n
            remaining -= n


def _int_to_stereo(block: npt.NDArray[np.int16], out: StereoBlock) -> StereoBlock:
    channels = block.shape[1]
    if channels == 2:
        if block is not out and not np.shares_memory(block, out):
            out[...] = block
        return out
    if channels == 1:
        out[:, 0] = block[:, 0]
        out[:, 1] = block[:, 0]
        return out
    # Integer mean of int16 values stays within int16.
    for side in (0, 1):
        legs = block[:, side::2]
        out[:, side] = legs.sum(axis=1, dtype=np.int32) // legs.shape[1]
    return out


def _float_to_stereo(block: npt.NDArray[np.float32], out: StereoBlock) -> StereoBlock:
    channels = block.shape[1]
    if channels > 2:
        mixed = np.empty((len(block), 2), dtype=np.float32)
        for side in (0, 1):
            block[:, side::2].mean(axis=1, out=mixed[:, side])
        block = mixed
    # Full scale is ±1.0; beyond it clips (acceptable), NaN becomes silence.
    np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(block, -1.0, 1.0, out=block)
    block *= 32767.0
    np.rint(block, out=block)
    if block.shape[1] == 1:
        out[:, 0] = block[:, 0]
        out[:, 1] = block[:, 0]
    else:
        out[...] = block
    return out


def _undecodable(path: Path, message: str, details: tuple[str, ...] = ()) -> UndecodableAudio:
    # soundfile prefixes "Error opening <repr of the path>: ", which says nothing new.
    if message.startswith("Error opening"):
        message = message.partition(": ")[2] or message
    reason = f"cannot decode {path.name}: {message.strip()}"
    if details:
        reason += " (" + "; ".join(details) + ")"
    return UndecodableAudio(reason)


@contextlib.contextmanager
def open_audio(path: Path) -> Iterator[WavReader]:
    """Open `path` for decoding, recovering a damaged WAV header when needed.

    Raises UndecodableAudio when libsndfile cannot read the file even after recovery or
    it holds no audio frames; OSError when the file cannot be read at all.
    """
    with path.open("rb") as raw:
        layout = scan_wav(raw)
        problems = layout.problems if layout else ()
        source: str | BinaryIO = str(path)
        view = _patched_view(layout) if layout is not None else None
        if view is not None:
            source = PatchedFile(raw, *view)  # type: ignore[assignment]
        try:
            sound = sf.SoundFile(source)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            details = problems
            if layout is not None and layout.fmt is not None:
                # libsndfile calls an unknown codec a "malformed fmt chunk": name it.
                tag = layout.fmt.format_tag
                codec = f"WAV format tag 0x{tag:04X}"
                if tag not in LIBSNDFILE_WAV_CODECS:
                    codec += ": a codec libsndfile does not decode"
                details = (codec, *problems)
            raise _undecodable(path, str(exc), details) from exc
        with sound:
            frames = _expected_frames(layout, int(sound.frames))
            if frames <= 0:
                raise _undecodable(path, "the file contains no audio frames", problems)
            info = AudioInfo(
                format=str(sound.format),
                subtype=str(sound.subtype),
                sample_rate=int(sound.samplerate),
                channels=int(sound.channels),
                frames=int(frames),
                problems=problems,
            )
            if info.sample_rate <= 0 or info.channels <= 0:
                raise _undecodable(path, "invalid sample rate or channel count", problems)
            yield WavReader(sound, info)


def _patched_view(layout: WavLayout) -> tuple[dict[int, bytes], int] | None:
    """Patches and size of the view libsndfile must read instead of the file, if any.

    Needed when the data chunk's size field undercounts the audio (an unfinalised
    header), and when the file ends inside a codec block: libsndfile skips a partial
    MS ADPCM block entirely, so the block is completed with zeros (the samples decoded
    from those are cut again by `_expected_frames`).
    """
    fmt = layout.fmt
    if fmt is None or layout.data_offset is None:
        return None
    align = max(1, fmt.block_align)
    full, rest = divmod(layout.data_present, align)
    data_size = full * align
    extra = 0
    if fmt.compressed and rest and layout.data_ends_at_eof and fmt.partial_block_samples(rest):
        data_size += align
        extra = align - rest
    if not layout.needs_patch and not extra:
        return None
    return size_patches(layout, data_size), layout.file_size + extra


def _expected_frames(layout: WavLayout | None, frames: int) -> int:
    """How many of libsndfile's `frames` are real audio, for block codecs.

    Block codecs (IMA/MS ADPCM, GSM 6.10) decode whole blocks: the last one is padded
    by the encoder, and libsndfile even decodes a phantom extra GSM block when the data
    chunk has an odd size. The fact chunk says how many samples are real; it is believed
    when it falls inside the last block of the data present, so a fact left at 0 by a
    crashed recorder, one that counts a longer (truncated) file, or the halved count
    libsndfile itself writes for stereo IMA ADPCM, is ignored. Without a usable fact the
    count is what the data's blocks hold, a cut-short last block included.
    """
    if layout is None or layout.fmt is None or not layout.fmt.compressed:
        return frames
    fmt = layout.fmt
    full, rest = divmod(layout.data_present, fmt.block_align)
    limit = full * fmt.samples_per_block + fmt.partial_block_samples(rest)
    if limit <= 0:
        return frames
    last_block_start = (limit - 1) // fmt.samples_per_block * fmt.samples_per_block
    fact = layout.fact_samples
    if fact is not None and last_block_start < fact <= limit:
        return min(fact, frames)
    return min(limit, frames)


def probe_wav(path: Path) -> AudioInfo:
    """Describe `path` as `encode_wav_to_mp3` would decode it, without decoding.

    Raises UndecodableAudio (with the reason) when it cannot be decoded.
    """
    with open_audio(path) as reader:
        return reader.info
