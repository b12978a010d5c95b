"""RIFF/WAVE chunk scanning and the patched view handed to libsndfile."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cj.audio.riff import (
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    PatchedFile,
    scan_wav,
    size_patches,
)


def wav_bytes(subtype: str = "PCM_16", frames: int = 1000, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full(frames, 0.25), rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def data_offset(wav: bytes) -> int:
    return wav.index(b"data") + 8


def test_intact_file() -> None:
    wav = wav_bytes()
    layout = scan_wav(io.BytesIO(wav))
    assert layout is not None
    assert layout.fmt is not None
    assert (layout.fmt.format_tag, layout.fmt.channels, layout.fmt.sample_rate) == (
        WAVE_FORMAT_PCM,
        1,
        8000,
    )
    assert layout.fmt.block_align == 2 and not layout.fmt.compressed
    assert layout.data_offset == data_offset(wav)
    assert layout.data_declared == layout.data_present == 2000
    assert layout.problems == ()
    assert not layout.needs_patch and not layout.truncated


def test_block_codec_format_and_fact() -> None:
    layout = scan_wav(io.BytesIO(wav_bytes("MS_ADPCM", 800)))
    assert layout is not None and layout.fmt is not None
    assert layout.fmt.compressed and layout.fmt.samples_per_block == 500
    assert layout.fact_samples == 800
    ulaw = scan_wav(io.BytesIO(wav_bytes("ULAW")))
    assert ulaw is not None and ulaw.fmt is not None
    assert ulaw.fmt.format_tag == WAVE_FORMAT_MULAW and not ulaw.fmt.compressed


def test_truncated_file() -> None:
    wav = wav_bytes()[:-501]
    layout = scan_wav(io.BytesIO(wav))
    assert layout is not None
    assert layout.truncated and not layout.needs_patch
    assert layout.data_present == 1499
    assert layout.problems == (
        "file is truncated: the data chunk declares 2000 bytes, 1499 are present",
    )


@pytest.mark.parametrize("declared", [0, 100])
def test_unfinalised_data_size(declared: int) -> None:
    wav = bytearray(wav_bytes())
    at = data_offset(bytes(wav))
    wav[at - 4 : at] = struct.pack("<I", declared)
    wav[4:8] = struct.pack("<I", 36)
    layout = scan_wav(io.BytesIO(bytes(wav)))
    assert layout is not None
    assert layout.needs_patch and not layout.truncated
    assert layout.data_present == 2000
    assert "header never finalised" in layout.problems[0]


def test_placeholder_size_is_reported_but_left_to_libsndfile() -> None:
    wav = bytearray(wav_bytes())
    at = data_offset(bytes(wav))
    wav[at - 4 : at] = b"\xff\xff\xff\xff"
    layout = scan_wav(io.BytesIO(bytes(wav)))
    assert layout is not None
    assert not layout.needs_patch and not layout.truncated
    assert "placeholder 0xFFFFFFFF" in layout.problems[0]


def test_chunks_after_the_data_are_not_mistaken_for_audio() -> None:
    wav = bytearray(wav_bytes())
    info = b"INFOISFT" + struct.pack("<I", 5) + b"test\x00\x00"
    wav += b"LIST" + struct.pack("<I", len(info)) + info
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    layout = scan_wav(io.BytesIO(bytes(wav)))
    assert layout is not None
    assert layout.problems == () and not layout.needs_patch
    assert layout.data_present == 2000


@pytest.mark.parametrize(
    "tail",
    [b"\x00" * 5000, b"TAG" + b"x" * 125],
    ids=["zero padding", "ID3v1 tag"],
)
def test_tails_that_are_not_audio(tail: bytes) -> None:
    layout = scan_wav(io.BytesIO(wav_bytes() + tail))
    assert layout is not None
    assert layout.problems == () and not layout.needs_patch
    assert layout.data_present == 2000


def test_stale_size_with_audio_after_it_is_recovered() -> None:
    # A recorder that updates the header now and then, and crashed between updates.
    wav = bytearray(wav_bytes(frames=1000))
    at = data_offset(bytes(wav))
    wav[at - 4 : at] = struct.pack("<I", 600)
    layout = scan_wav(io.BytesIO(bytes(wav)))
    assert layout is not None
    assert layout.needs_patch
    assert layout.data_present == 2000


def test_files_that_are_not_riff_wave() -> None:
    assert scan_wav(io.BytesIO(b"")) is None
    assert scan_wav(io.BytesIO(b"RIFF\x00\x00\x00\x00AVI LIST")) is None
    buf = io.BytesIO()
    sf.write(buf, np.zeros(10), 8000, format="AIFF")
    assert scan_wav(io.BytesIO(buf.getvalue())) is None


def test_header_without_data_chunk() -> None:
    wav = wav_bytes()
    layout = scan_wav(io.BytesIO(wav[: data_offset(wav) - 8]))
    assert layout is not None
    assert layout.data_offset is None
    assert layout.problems == ("no data chunk",)
    with pytest.raises(ValueError, match="no data chunk"):
        size_patches(layout)


def test_patched_view_reads_the_corrected_header(tmp_path: Path) -> None:
    wav = bytearray(wav_bytes(frames=1001))  # odd frame count: data is not block-aligned below
    at = data_offset(bytes(wav))
    wav[at - 4 : at] = b"\x00\x00\x00\x00"
    wav += b"\x01"  # half a frame of trailing garbage, dropped by the patch
    path = tmp_path / "unfinalised.wav"
    path.write_bytes(bytes(wav))
    with path.open("rb") as raw:
        layout = scan_wav(raw)
        assert layout is not None
        patched = PatchedFile(raw, size_patches(layout))
        view = patched.read()
    assert len(view) == len(wav)
    assert struct.unpack_from("<I", view, at - 4)[0] == 2002
    assert struct.unpack_from("<I", view, 4)[0] == at + 2002 - 8
    assert view[at:] == bytes(wav[at:])  # the audio is untouched
    assert path.read_bytes() == bytes(wav)  # so is the original file

    # Reads that start or end inside a patched field see the patch too.
    with path.open("rb") as raw:
        patched = PatchedFile(raw, size_patches(layout))
        patched.seek(at - 3)
        assert patched.read(2) == view[at - 3 : at - 1]
        patched.seek(-1, io.SEEK_END)
        assert patched.read() == b"\x01"
        assert patched.read() == b""
