"""Two mono leg recordings → one stereo WAV: the caller on the left, the callee on the right.

MixMonitor's `r()`/`t()` files and FreeSWITCH's per-leg recordings are two mono files of
one call. `merge_legs` interleaves them block by block (constant memory, whatever the
length): the shorter leg is padded with silence at its end, nothing is stretched or
shifted, so the result lasts exactly as long as the longer leg. Both legs must be mono
and have the same sample rate (no resampler is at hand: different rates are refused
with `LegMergeError`, and the agent quarantines the files with that reason).

The output is 16-bit PCM when both legs are 16-bit or narrower (µ-law, A-law, GSM,
ADPCM, 8-bit), else 24-bit PCM. It is a pure function of the legs' samples: merging the
same legs again gives the same bytes, so a merge redone after a restart has the same
SHA-256 and the server recognises the upload as a duplicate. It is written to a
temporary name, fsynced and renamed into place.

Synchronous: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

BLOCK_FRAMES = 64 * 1024
NARROW = frozenset(
    {
        "PCM_16",
        "PCM_S8",
        "PCM_U8",
        "ULAW",
        "ALAW",
        "GSM610",
        "IMA_ADPCM",
        "MS_ADPCM",
        "G721_32",
        "G723_24",
        "G723_40",
        "VOX_ADPCM",
    }
)


class LegMergeError(ValueError):
    """The legs cannot make one stereo recording; the message names the file and why."""


@dataclass(frozen=True)
class MergedLegs:
    """What `merge_legs` wrote."""

    path: Path
    sample_rate: int
    frames: int  # = the longer leg
    caller_frames: int
    callee_frames: int
    subtype: str


def merge_legs(
    caller: Path, callee: Path, target: Path, *, block_frames: int = BLOCK_FRAMES
) -> MergedLegs:
    """Write `target`: `caller` as the left channel, `callee` as the right."""
    with _open(caller, "caller") as left, _open(callee, "callee") as right:
        if left.samplerate != right.samplerate:
            raise LegMergeError(
                f"the legs have different sample rates ({caller.name}: {left.samplerate} Hz, "
                f"{callee.name}: {right.samplerate} Hz); resampling is not supported"
            )
        wide = left.subtype not in NARROW or right.subtype not in NARROW
        subtype, dtype = ("PCM_24", "int32") if wide else ("PCM_16", "int16")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        counts = [0, 0]
        try:
            with soundfile.SoundFile(
                temporary, "w", left.samplerate, 2, subtype=subtype, format="WAV"
            ) as out:
                while True:
                    block = np.zeros((block_frames, 2), dtype=dtype)
                    longest = 0
                    for channel, (leg, path) in enumerate(((left, caller), (right, callee))):
                        samples = _read(leg, path, block_frames, dtype)
                        block[: len(samples), channel] = samples
                        counts[channel] += len(samples)
                        longest = max(longest, len(samples))
                    if longest == 0:
                        break
                    out.write(block[:longest])
            _fsync(temporary)
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)
    _fsync_directory(target.parent)
    return MergedLegs(
        path=target,
        sample_rate=left.samplerate,
        frames=max(counts),
        caller_frames=counts[0],
        callee_frames=counts[1],
        subtype=subtype,
    )


def _open(path: Path, leg: str) -> soundfile.SoundFile:
    if not path.is_file():
        raise FileNotFoundError(f"the {leg} leg {path} is gone")
    try:
        sound = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise LegMergeError(f"the {leg} leg {path.name} cannot be decoded: {exc}") from None
    if sound.channels != 1:
        sound.close()
        raise LegMergeError(
            f"the {leg} leg {path.name} has {sound.channels} channels; legs must be mono"
        )
    return sound


def _read(sound: soundfile.SoundFile, path: Path, frames: int, dtype: str) -> np.ndarray:
    try:
        samples: np.ndarray = sound.read(frames, dtype=dtype, always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise LegMergeError(f"{path.name} cannot be decoded: {exc}") from None
    return samples


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(directory)
