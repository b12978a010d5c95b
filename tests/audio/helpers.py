"""Test signals and independent MP3 decoders for the audio tests."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt
import soundfile as sf

FloatArray = npt.NDArray[np.float64]


def chirp(
    sample_rate: int, seconds: float, channels: int = 1, amplitude: float = 0.5
) -> FloatArray:
    """A distinct sweep per channel, in the speech band, shape (frames, channels).

    A sweep (unlike a steady tone) has one clear cross-correlation peak, so a decoded
    copy shifted by the encoder delay is detected, not just one of the wrong length.
    """
    frames = round(sample_rate * seconds)
    t = np.arange(frames) / sample_rate
    columns = []
    for c in range(channels):
        f0, f1 = 200.0 + 150 * c, 1500.0 + 200 * c
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
        columns.append(amplitude * np.sin(phase))
    return np.stack(columns, axis=1)


def write_wav(path: Path, signal: FloatArray, sample_rate: int, subtype: str) -> Path:
    sf.write(path, signal, sample_rate, subtype=subtype, format="WAV")
    return path


@dataclass(frozen=True)
class Decoded:
    samples: FloatArray  # (frames, channels), float in [-1, 1]
    sample_rate: int

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    def duration_ms(self) -> float:
        return self.frames * 1000 / self.sample_rate


def decode_libsndfile(path: Path) -> Decoded:
    """libsndfile's MP3 decoding (mpg123 inside), which honours the LAME tag."""
    samples, rate = sf.read(path, dtype="float64", always_2d=True)
    return Decoded(samples, int(rate))


def decode_ffmpeg(path: Path) -> Decoded:
    """ffmpeg's own MP3 decoder (no mpg123): a second, independent opinion."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), str(wav)],
            check=True,
            timeout=60,
        )
        return decode_libsndfile(wav)


def rms(x: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def best_lag(reference: FloatArray, decoded: FloatArray, max_lag: int) -> tuple[int, float]:
    """(lag, normalised correlation) that best aligns `decoded` to `reference` (1-D)."""
    n = min(len(reference), len(decoded)) - 2 * max_lag
    ref = reference[max_lag : max_lag + n]
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        seg = decoded[max_lag + lag : max_lag + lag + n]
        denom = float(np.linalg.norm(ref) * np.linalg.norm(seg)) or 1.0
        value = float(np.dot(ref, seg)) / denom
        if value > best[1]:
            best = (lag, value)
    return best


def crc16_arc_reference(data: bytes) -> int:
    """A bit-by-bit CRC-16/ARC, independent of the table-driven library under test."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc
