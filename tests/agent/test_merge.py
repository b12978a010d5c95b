"""Two mono legs → one stereo WAV (cj_agent/merge.py), on real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cj_agent.merge import LegMergeError, merge_legs


def tone(path: Path, hz: float, seconds: float, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * hz * t), rate, subtype=subtype)
    return path


def test_caller_left_callee_right_padded_with_silence(tmp_path: Path) -> None:
    caller = tone(tmp_path / "in.wav", 440, 3.0)
    callee = tone(tmp_path / "out.wav", 1000, 1.25, subtype="ULAW")
    merged = merge_legs(caller, callee, tmp_path / "m" / "x.wav", block_frames=1000)
    assert (merged.frames, merged.caller_frames, merged.callee_frames) == (24000, 24000, 10000)
    data, rate = soundfile.read(merged.path, dtype="int16")
    assert rate == 8000 and data.shape == (24000, 2) and merged.subtype == "PCM_16"
    left, right = soundfile.read(caller, dtype="int16")[0], soundfile.read(callee, dtype="int16")[0]
    assert np.array_equal(data[:, 0], left)  # untouched, not stretched, not shifted
    assert np.array_equal(data[:10000, 1], right)
    assert not data[10000:, 1].any()  # silence after the shorter leg
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["x.wav"]  # no temporary left


def test_the_same_legs_give_the_same_bytes(tmp_path: Path) -> None:
    caller = tone(tmp_path / "a.wav", 300, 0.7, subtype="PCM_24")
    callee = tone(tmp_path / "b.wav", 900, 0.9)
    first = merge_legs(caller, callee, tmp_path / "1.wav", block_frames=333)
    second = merge_legs(caller, callee, tmp_path / "2.wav")
    assert first.subtype == "PCM_24"
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first.path, second.path)]
    assert digest[0] == digest[1]


def test_legs_that_cannot_be_merged_are_refused_with_the_reason(tmp_path: Path) -> None:
    caller = tone(tmp_path / "a.wav", 300, 0.2)
    with pytest.raises(LegMergeError, match="different sample rates"):
        merge_legs(caller, tone(tmp_path / "b.wav", 300, 0.2, rate=16000), tmp_path / "m.wav")
    stereo = tmp_path / "s.wav"
    soundfile.write(stereo, np.zeros((100, 2)), 8000)
    with pytest.raises(LegMergeError, match=r"callee leg s\.wav has 2 channels"):
        merge_legs(caller, stereo, tmp_path / "m.wav")
    garbage = tmp_path / "g.wav"
    garbage.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(LegMergeError, match=r"caller leg g\.wav cannot be decoded"):
        merge_legs(garbage, caller, tmp_path / "m.wav")
    with pytest.raises(FileNotFoundError):
        merge_legs(tmp_path / "absent.wav", caller, tmp_path / "m.wav")
    assert not (tmp_path / "m.wav").exists()


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "asterisk" / "recordings"
SAMPLE_STEM = "exten-1002-79161234567-20260302-091504-1772432104.7"


def test_the_sample_split_legs_merge_caller_left_callee_right(tmp_path: Path) -> None:
    """samples/asterisk/recordings: the caller speaks (440 Hz) first, the callee answers
    (1000 Hz) while the caller is silent, then the caller again."""
    day = SAMPLE / "2026" / "03" / "02"
    merged = merge_legs(
        day / f"{SAMPLE_STEM}-in.wav", day / f"{SAMPLE_STEM}-out.wav", tmp_path / "m.wav"
    )
    assert (merged.frames, merged.callee_frames, merged.sample_rate) == (24000, 17600, 8000)
    data, _ = soundfile.read(merged.path)
    assert abs(_dominant(data[800:9600, 0]) - 440) < 10  # 0.1–1.2 s: the caller
    assert abs(_dominant(data[9600:16000, 1]) - 1000) < 10  # 1.2–2.0 s: the callee
    assert np.abs(data[9700:15900, 0]).max() == 0  # the caller is silent meanwhile


def _dominant(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])
