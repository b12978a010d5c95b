"""Encoding speed against Debian's `lame` command, and memory for a 2-hour recording.

    .venv/bin/python bench/encode.py [--repeat N] [--keep-lame-missing]

Measures, for a 10-minute 8 kHz mono and a 10-minute 16 kHz stereo recording, how many
times faster than real time `cj.audio.encode_wav_to_mp3` runs (in process, WAV file to
MP3 file, tag and sha256 included) and how fast `lame` runs at the same settings
(CBR 32 kbps, -q 5, joint stereo, the input's sample rate). `lame` given a mono WAV
writes a mono MP3, half the work of ours, so it is given the same recording with the
channel duplicated: both then encode the same stereo PCM. Best of N runs each.

Then encodes a 2-hour 8 kHz mono recording in a fresh process and reports its peak RSS
(the process's whole footprint: interpreter, numpy, libsndfile, LAME, buffers).

`lame` is installed with apt-get when missing (we run as root). The last line printed is
one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import numpy as np
import soundfile as sf

from cj.audio import EncodeSettings, encode_wav_to_mp3

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = EncodeSettings(bitrate_kbps=32, quality=5)
TEN_MINUTES = 600
TWO_HOURS = 7200


def speech_like(rate: int, seconds: int, channels: int, path: Path, *, seed: int = 1) -> Path:
    """Write syllable-rate modulated voiced tones plus noise, block by block."""
    rng = np.random.default_rng(seed)
    block = rate * 10
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16", format="WAV") as out:
        for start in range(0, rate * seconds, block):
            t = (np.arange(block) + start) / rate
            columns = []
            for c in range(channels):
                pitch = 110 + 40 * c + 20 * np.sin(2 * np.pi * 0.3 * t)
                voiced = sum(
                    np.sin(2 * np.pi * k * pitch * t) / k for k in range(1, 8) if k * 300 < rate
                )
                envelope = np.clip(np.sin(2 * np.pi * (4 + c) * t), 0, None) ** 2
                noise = rng.standard_normal(block) * 0.02
                columns.append(0.15 * voiced * envelope + noise)
            out.write(np.stack(columns, axis=1))
    return path


def duplicate_channel(src: Path, dst: Path) -> Path:
    with (
        sf.SoundFile(src) as mono,
        sf.SoundFile(dst, "w", mono.samplerate, 2, subtype="PCM_16", format="WAV") as out,
    ):
        for block in mono.blocks(blocksize=65536, dtype="int16", always_2d=True):
            out.write(np.repeat(block, 2, axis=1))
    return dst


def ensure_lame() -> str:
    found = shutil.which("lame")
    if found:
        return found
    print("lame not found: installing it with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", "lame"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    found = shutil.which("lame")
    if not found:
        raise SystemExit("lame is still missing after apt-get install")
    return found


def best_of(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(src: Path, dst: Path, repeat: int) -> float:
    return best_of(repeat, lambda: encode_wav_to_mp3(src, dst, SETTINGS))


def lame_cli(lame: str, src: Path, dst: Path, rate: int, repeat: int) -> float:
    command = [
        lame,
        "--quiet",
        "--cbr",
        "-b",
        str(SETTINGS.bitrate_kbps),
        "-q",
        str(SETTINGS.quality),
        "-m",
        "j",
        "--resample",
        f"{rate / 1000:g}",
        str(src),
        str(dst),
    ]
    return best_of(repeat, lambda: subprocess.run(command, check=True))


def peak_rss_mb() -> float:
    """This process's peak RSS.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent
    across fork and exec, so a child of this (large) benchmark process would report
    the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB elsewhere too


def rss_child(src: Path, dst: Path) -> None:
    """Run in a fresh interpreter: encode, then print peak RSS in MB."""
    result = encode_wav_to_mp3(src, dst, SETTINGS)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "duration_ms": result.duration_ms}))


def baseline_child() -> None:
    """Peak RSS of the same interpreter after imports alone, for comparison."""
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    parser.add_argument("--rss-child", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(Path(args.rss_child[0]), Path(args.rss_child[1]))
        return
    if args.baseline_child:
        baseline_child()
        return

    lame = ensure_lame()
    version = subprocess.run([lame, "--version"], capture_output=True, text=True, check=True)
    print(f"lame: {version.stdout.splitlines()[0]}")
    print(f"settings: CBR {SETTINGS.bitrate_kbps} kbps, -q {SETTINGS.quality}, joint stereo")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cj-bench-encode-") as tmp_name:
        tmp = Path(tmp_name)
        cases = [
            ("8k_mono", 8000, 1),
            ("16k_stereo", 16000, 2),
        ]
        for name, rate, channels in cases:
            src = speech_like(rate, TEN_MINUTES, channels, tmp / f"{name}.wav")
            lame_src = src if channels == 2 else duplicate_channel(src, tmp / f"{name}_2ch.wav")
            ours_s = ours(src, tmp / f"{name}.mp3", args.repeat)
            lame_s = lame_cli(lame, lame_src, tmp / f"{name}_lame.mp3", rate, args.repeat)
            mine, theirs = TEN_MINUTES / ours_s, TEN_MINUTES / lame_s
            figures[f"x_realtime_{name}"] = round(mine, 1)
            figures[f"lame_cli_x_realtime_{name}"] = round(theirs, 1)
            figures[f"ratio_{name}"] = round(mine / theirs, 3)
            size_ours = (tmp / f"{name}.mp3").stat().st_size
            size_lame = (tmp / f"{name}_lame.mp3").stat().st_size
            print(
                f"10 min {rate} Hz {'mono' if channels == 1 else 'stereo'}: "
                f"ours {ours_s:.3f} s ({mine:.0f}× real time, {size_ours} bytes), "
                f"lame CLI {lame_s:.3f} s ({theirs:.0f}×, {size_lame} bytes), "
                f"ratio {mine / theirs:.2f}"
            )
            for path in tmp.iterdir():
                path.unlink()

        src = speech_like(8000, TWO_HOURS, 1, tmp / "2h.wav")
        baseline = child("--baseline-child")["peak_rss_mb"]
        rss = child("--rss-child", str(src), str(tmp / "2h.mp3"))
        figures["peak_rss_mb_2h"] = round(rss["peak_rss_mb"], 1)
        print(
            f"2 h 8000 Hz mono ({src.stat().st_size / 1e6:.0f} MB WAV): peak RSS "
            f"{rss['peak_rss_mb']:.1f} MB (after imports alone: {baseline:.1f} MB)"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
