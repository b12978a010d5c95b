"""WAV → stereo MP3: every input kind, decoded back by two independent decoders.

libsndfile (mpg123 inside) and ffmpeg (its own MP3 decoder) both honour the LAME tag,
so the decoded length is compared with the input's: within 30 ms is the requirement,
and in practice they agree to the sample.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.mp3 import MP3

from cj.audio import (
    AudioError,
    EncodeSettings,
    UndecodableAudio,
    encode_wav_to_mp3,
    plan_output,
    probe_wav,
)
from cj.audio.encode import _check_block
from cj.audio.mpeg import FrameHeader
from tests.audio.helpers import (
    FloatArray,
    best_lag,
    chirp,
    decode_ffmpeg,
    decode_libsndfile,
    rms,
    write_wav,
)

TOLERANCE_MS = 30
SUBTYPES = [
    "PCM_U8",
    "PCM_16",
    "PCM_24",
    "PCM_32",
    "FLOAT",
    "DOUBLE",
    "ULAW",
    "ALAW",
    "GSM610",
    "IMA_ADPCM",
    "MS_ADPCM",
]
RATES = [8000, 16000, 48000]
# How closely a codec reproduces the sweep (GSM is a 13 kbps speech codec).
MIN_CORRELATION = {"GSM610": 0.6, "PCM_U8": 0.85}


def input_samples(path: Path, frames: int) -> FloatArray:
    """The input as libsndfile decodes it, cut to the frames the encoder used."""
    samples, _ = sf.read(path, dtype="float64", always_2d=True, frames=frames)
    return samples


def assert_same_audio(reference: FloatArray, decoded: FloatArray, subtype: str) -> None:
    """`decoded` is `reference` (1-D), not shifted by the encoder delay, not silence."""
    lag, correlation = best_lag(reference, decoded, max_lag=40)
    assert lag == 0, f"decoded audio is shifted by {lag} samples"
    assert correlation > MIN_CORRELATION.get(subtype, 0.9), correlation


def cases() -> list[tuple[str, int, int]]:
    out = []
    for subtype in SUBTYPES:
        for rate in RATES:
            out.append((subtype, rate, 1))
            if subtype != "GSM610":  # libsndfile writes GSM 6.10 mono only
                out.append((subtype, rate, 2))
    return out


@pytest.mark.parametrize(("subtype", "rate", "channels"), cases())
def test_every_input_kind_becomes_exact_length_stereo(
    tmp_path: Path, subtype: str, rate: int, channels: int
) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(rate, 1.3, channels), rate, subtype)
    dst = tmp_path / "out.mp3"
    info = probe_wav(src)

    result = encode_wav_to_mp3(src, dst)

    assert (result.channels_in, result.channels_out) == (channels, 2)
    assert result.sample_rate == result.source_sample_rate == rate
    assert result.source_subtype == subtype
    assert result.frames == info.frames
    assert not result.recovered and result.warnings == ()
    reference = input_samples(src, result.frames)
    for decode in (decode_libsndfile, decode_ffmpeg):
        decoded = decode(dst)
        assert decoded.channels == 2, decode.__name__
        assert decoded.sample_rate == rate
        error_ms = abs(decoded.frames - info.frames) * 1000 / rate
        assert error_ms <= TOLERANCE_MS, f"{decode.__name__}: off by {error_ms:.1f} ms"
    left, right = decoded.samples[:, 0], decoded.samples[:, 1]
    if channels == 1:
        # Both channels carry the one input channel.
        assert rms(left) > 0.2 and rms(right) > 0.2
        assert np.corrcoef(left, right)[0, 1] > 0.99
        assert_same_audio(reference[:, 0], left, subtype)
        assert_same_audio(reference[:, 0], right, subtype)
    else:
        # Stereo stays stereo: each side is its own input channel.
        assert_same_audio(reference[:, 0], left, subtype)
        assert_same_audio(reference[:, 1], right, subtype)


@pytest.mark.parametrize("rate", [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000])
@pytest.mark.parametrize("extra", [0, 1, 575, 1151])
def test_decoded_length_is_sample_exact(tmp_path: Path, rate: int, extra: int) -> None:
    frames = rate // 2 + extra
    src = write_wav(tmp_path / "in.wav", chirp(rate, frames / rate), rate, "PCM_16")
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert result.frames == frames
    assert decode_libsndfile(tmp_path / "out.mp3").frames == frames
    assert MP3(tmp_path / "out.mp3").info.length == pytest.approx(frames / rate, abs=1e-9)


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_input_is_scaled_not_truncated(tmp_path: Path, subtype: str) -> None:
    # libsndfile reads float WAVs as int16 without scaling: |x| < 1 becomes 0.
    t = np.arange(16000) / 16000
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    levels = []
    for kind in (subtype, "PCM_16"):
        src = write_wav(tmp_path / f"{kind}.wav", sine, 16000, kind)
        encode_wav_to_mp3(src, tmp_path / f"{kind}.mp3")
        levels.append(rms(decode_libsndfile(tmp_path / f"{kind}.mp3").samples[:, 0]))
    float_level, pcm_level = levels
    # A 0.5 sine has an RMS of 0.354; LAME at 32 kbps returns it about 5 % lower
    # whatever the input format, so compare with the same sine given as PCM_16.
    assert float_level == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert float_level == pytest.approx(pcm_level, rel=0.01)


def test_float_beyond_full_scale_clips(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    loud = 1.5 * np.sin(2 * np.pi * 440 * t)
    loud[100] = np.nan  # a broken sample becomes silence, not garbage
    src = write_wav(tmp_path / "in.wav", loud, 16000, "FLOAT")
    encode_wav_to_mp3(src, tmp_path / "out.mp3")
    left = decode_libsndfile(tmp_path / "out.mp3").samples[:, 0]
    assert 0.7 < rms(left) < 1.0  # a clipped sine, louder than the 0.707 of full scale
    assert np.max(np.abs(left)) < 1.2


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("channels", [3, 4, 6])
def test_more_channels_mix_down_even_left_odd_right(
    tmp_path: Path, subtype: str, channels: int
) -> None:
    signal = chirp(16000, 1.0, channels, amplitude=0.4)
    src = write_wav(tmp_path / "in.wav", signal, 16000, subtype)
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert (result.channels_in, result.channels_out) == (channels, 2)
    decoded = decode_libsndfile(tmp_path / "out.mp3")
    assert decoded.channels == 2
    expected_left = signal[:, 0::2].mean(axis=1)
    expected_right = signal[:, 1::2].mean(axis=1)
    for side, expected in ((0, expected_left), (1, expected_right)):
        lag, correlation = best_lag(expected, decoded.samples[:, side], max_lag=20)
        assert lag == 0
        assert correlation > 0.9
        assert rms(decoded.samples[:, side]) == pytest.approx(rms(expected), rel=0.15)


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("subtype", ["PCM_16", "ULAW", "FLOAT", "GSM610", "IMA_ADPCM", "MS_ADPCM"])
@pytest.mark.parametrize("keep", [0.6, 0.37])
def test_truncated_file_encodes_the_frames_present(
    tmp_path: Path, subtype: str, keep: float
) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 2.0), 8000, subtype)
    truncate(src, keep)
    # ffmpeg decodes what a truncated WAV holds, a cut-short last codec block included.
    present = decode_ffmpeg(src).frames
    assert keep * 0.8 * 16000 < present < keep * 16500

    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")

    assert result.recovered
    assert any("truncated" in w for w in result.warnings)
    assert abs(result.frames - present) * 1000 / 8000 <= TOLERANCE_MS
    decoded = decode_libsndfile(tmp_path / "out.mp3")
    assert decoded.channels == 2
    assert abs(decoded.frames - present) * 1000 / 8000 <= TOLERANCE_MS
    assert_same_audio(input_samples(src, result.frames)[:, 0], decoded.samples[:, 0], subtype)


@pytest.mark.parametrize(
    ("subtype", "cut", "expected"),
    [
        # 256-byte blocks at 8 kHz mono. Header: 7 bytes holding 2 samples, then 2 a byte.
        ("MS_ADPCM", 200, 2 + (200 - 7) * 2),
        # Header: 4 bytes holding 1 sample, then 4-byte words of 8 samples.
        ("IMA_ADPCM", 101, 1 + (101 - 4) // 4 * 8),
        ("GSM610", 40, 160),  # 65-byte blocks: the first of their two 160-sample frames
    ],
)
def test_file_cut_inside_its_first_codec_block(
    tmp_path: Path, subtype: str, cut: int, expected: int
) -> None:
    # libsndfile alone decodes nothing of a partial MS ADPCM block.
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, subtype)
    data = src.read_bytes()
    src.write_bytes(data[: data.index(b"data") + 8 + cut])
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert result.recovered
    assert result.frames == expected
    assert decode_libsndfile(tmp_path / "out.mp3").frames == expected
    if subtype != "GSM610":  # ffmpeg decodes a partial GSM block whole
        assert decode_ffmpeg(src).frames == expected


@pytest.mark.parametrize(
    ("subtype", "rate", "channels", "frames", "expected"),
    [
        ("MS_ADPCM", 8000, 1, 800, 800),  # padded to 1000 in the last block; fact = 800
        ("MS_ADPCM", 48000, 2, 4800, 4800),
        ("GSM610", 8000, 1, 800, 800),  # libsndfile decodes a phantom 4th block: 1280
        # libsndfile writes a halved fact for stereo IMA ADPCM (3061): not believed.
        ("IMA_ADPCM", 48000, 2, 4800, 6123),
    ],
)
def test_fact_chunk_cuts_the_padding_of_the_last_block(
    tmp_path: Path, subtype: str, rate: int, channels: int, frames: int, expected: int
) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(rate, frames / rate, channels), rate, subtype)
    with sf.SoundFile(src) as plain:
        assert plain.frames > frames  # what libsndfile alone would encode
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert result.frames == expected
    assert not result.recovered
    assert decode_libsndfile(tmp_path / "out.mp3").frames == expected


def unfinalise(path: Path, size_field: bytes = b"\x00\x00\x00\x00") -> None:
    """What a recorder that crashed leaves: data size 0, RIFF size of the header only."""
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 8
    data[at - 4 : at] = size_field
    data[4:8] = struct.pack("<I", at - 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("subtype", [s for s in SUBTYPES if s != "DOUBLE"])
def test_unfinalised_header_is_recovered_from_the_data_chunk(tmp_path: Path, subtype: str) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.5), 8000, subtype)
    original = probe_wav(src).frames
    reference = input_samples(src, original)
    unfinalise(src)
    with sf.SoundFile(src) as plain:
        assert plain.frames == 0  # what libsndfile alone makes of it

    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")

    assert result.recovered
    assert any("header never finalised" in w for w in result.warnings)
    # Block codecs lose at most the fact chunk's trim of the last block.
    assert abs(result.frames - original) * 1000 / 8000 <= TOLERANCE_MS
    decoded = decode_ffmpeg(tmp_path / "out.mp3")
    assert decoded.channels == 2
    assert abs(decoded.frames - original) * 1000 / 8000 <= TOLERANCE_MS
    assert_same_audio(reference[:, 0], decoded.samples[:, 0], subtype)


def test_placeholder_data_size_is_read_to_the_end(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, "PCM_16")
    unfinalise(src, b"\xff\xff\xff\xff")
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert result.recovered and result.frames == 8000
    assert decode_libsndfile(tmp_path / "out.mp3").frames == 8000


def test_garbage_codec_data_decodes_at_full_length(tmp_path: Path) -> None:
    # libsndfile decodes corrupt ADPCM blocks as noise rather than failing: the
    # recording keeps its length and the rest of it stays intact.
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, "MS_ADPCM")
    data = bytearray(src.read_bytes())
    at = data.index(b"data") + 8
    data[at + 600 : at + 1600] = os.urandom(1000)
    src.write_bytes(bytes(data))
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert not result.recovered
    assert result.frames == probe_wav(src).frames == 8000
    assert decode_libsndfile(tmp_path / "out.mp3").frames == 8000


def riff(fmt_body: bytes, data: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


UNDECODABLE = {
    "random bytes": (os.urandom(5000), "Format not recognised"),
    "empty file": (b"", "cannot decode"),
    "text": (b"hello, this is not audio\n" * 40, "cannot decode"),
    "unsupported codec": (
        # G.722 (0x028F), which libsndfile does not decode.
        riff(struct.pack("<HHIIHHH", 0x028F, 1, 16000, 8000, 1, 4, 0), os.urandom(4000)),
        "WAV format tag 0x028F: a codec libsndfile does not decode",
    ),
    "no audio frames": (riff(struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)), "no audio frames"),
    "header cut before the data chunk": (
        riff(struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16))[:30],
        "cannot decode",
    ),
}


@pytest.mark.parametrize("kind", list(UNDECODABLE))
def test_undecodable_input_is_a_permanent_error_and_leaves_no_output(
    tmp_path: Path, kind: str
) -> None:
    content, reason = UNDECODABLE[kind]
    src = tmp_path / "bad.wav"
    src.write_bytes(content)
    dst = tmp_path / "out.mp3"
    with pytest.raises(UndecodableAudio, match=reason) as caught:
        encode_wav_to_mp3(src, dst)
    assert "bad.wav" in str(caught.value)
    assert isinstance(caught.value, AudioError)
    assert list(tmp_path.iterdir()) == [src]  # no MP3, no temp file
    assert src.read_bytes() == content  # the input is kept as it was
    with pytest.raises(UndecodableAudio):
        probe_wav(src)


def test_failure_does_not_clobber_an_existing_output(tmp_path: Path) -> None:
    src = tmp_path / "bad.wav"
    src.write_bytes(os.urandom(100))
    dst = tmp_path / "out.mp3"
    dst.write_bytes(b"previous")
    with pytest.raises(UndecodableAudio):
        encode_wav_to_mp3(src, dst)
    assert dst.read_bytes() == b"previous"


def test_missing_input_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        encode_wav_to_mp3(tmp_path / "nope.wav", tmp_path / "out.mp3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bitrate_kbps": 7}, "bitrate_kbps must be between 8 and 320, got 7"),
        ({"bitrate_kbps": 321}, "bitrate_kbps must be between 8 and 320"),
        ({"quality": 10}, "quality must be between 0 and 9, got 10"),
        ({"quality": True}, "quality must be an integer"),
        ({"bitrate_kbps": "32"}, "bitrate_kbps must be an integer"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncodeSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "asked", "out_rate", "used", "warning"),
    [
        (8000, 32, 8000, 32, None),
        (8000, 128, 8000, 64, "MPEG-2.5: 8–64 kbps"),
        (16000, 192, 16000, 160, "MPEG-2: 8–160 kbps"),
        (48000, 8, 48000, 32, "MPEG-1: 32–320 kbps"),
        (44100, 33, 44100, 32, "used 32 kbps"),
        (20000, 32, 22050, 32, "20000 Hz is not an MP3 sample rate; resampled to 22050 Hz"),
        (96000, 128, 48000, 128, "resampled to 48000 Hz"),
        (6000, 32, 8000, 32, "resampled to 8000 Hz"),
    ],
)
def test_output_plan(rate: int, asked: int, out_rate: int, used: int, warning: str | None) -> None:
    plan = plan_output(rate, asked)
    assert (plan.sample_rate, plan.bitrate_kbps) == (out_rate, used)
    if warning is None:
        assert plan.warnings == ()
    else:
        assert any(warning in w for w in plan.warnings), plan.warnings


def test_bitrate_is_adjusted_and_reported(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, "PCM_16")
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3", EncodeSettings(bitrate_kbps=128))
    assert result.bitrate_kbps == 64
    assert MP3(tmp_path / "out.mp3").info.bitrate == 64000
    assert not result.recovered
    assert result.warnings == (
        "128 kbps is not available at 8000 Hz (MPEG-2.5: 8–64 kbps); used 64 kbps",
    )


def test_settings_reach_the_encoder(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(16000, 1.0), 16000, "PCM_16")
    low = encode_wav_to_mp3(src, tmp_path / "low.mp3", EncodeSettings(24, quality=9))
    high = encode_wav_to_mp3(src, tmp_path / "high.mp3", EncodeSettings(96, quality=2))
    assert MP3(tmp_path / "low.mp3").info.bitrate == 24000
    assert MP3(tmp_path / "high.mp3").info.bitrate == 96000
    assert high.size > 3 * low.size


def test_sample_rate_that_mp3_lacks_is_resampled_keeping_duration(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(20000, 1.0), 20000, "PCM_16")
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3")
    assert (result.source_sample_rate, result.sample_rate) == (20000, 22050)
    assert result.duration_ms == 1000
    decoded = decode_ffmpeg(tmp_path / "out.mp3")
    assert decoded.sample_rate == 22050
    assert abs(decoded.duration_ms() - 1000) <= TOLERANCE_MS


def test_progress_is_reported_per_block(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 2.5), 8000, "PCM_16")
    seen: list[int] = []
    result = encode_wav_to_mp3(src, tmp_path / "out.mp3", progress=seen.append, block_frames=4096)
    assert seen == [*range(4096, 20000, 4096), 20000]
    assert result.frames == 20000


def test_progress_can_abort_the_encoding(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 2.0), 8000, "PCM_16")

    class Stop(Exception):
        pass

    def stop_at_second_block(frames: int) -> None:
        if frames > 4096:
            raise Stop

    with pytest.raises(Stop):
        encode_wav_to_mp3(
            src, tmp_path / "out.mp3", progress=stop_at_second_block, block_frames=4096
        )
    assert list(tmp_path.iterdir()) == [src]


def test_result_describes_the_written_file(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, "ULAW")
    dst = tmp_path / "out.mp3"
    result = encode_wav_to_mp3(src, dst)
    data = dst.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.duration_ms == 1000
    # The first frame is the tag frame: MPEG-2.5 stereo, "Info" right after side info.
    first = FrameHeader.parse(data)
    assert (first.sample_rate, first.channels, first.side_info_size) == (8000, 2, 17)
    assert data[4 + 17 : 4 + 17 + 4] == b"Info"
    assert data[4 + 17 + 120 : 4 + 17 + 129] == b"LAME3.100"


def test_open_binary_file_as_destination(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 1.0), 8000, "PCM_16")
    with tempfile.TemporaryFile() as out:
        out.write(b"PREFIX")
        result = encode_wav_to_mp3(src, out)
        assert out.tell() == 6 + result.size
        out.seek(6)
        mp3 = out.read()
    assert len(mp3) == result.size
    assert hashlib.sha256(mp3).hexdigest() == result.sha256
    decoded, rate = sf.read(io.BytesIO(mp3))
    assert (len(decoded), rate) == (8000, 8000)


def test_write_only_destination_is_refused(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", chirp(8000, 0.1), 8000, "PCM_16")
    with (tmp_path / "out.mp3").open("wb") as out, pytest.raises(ValueError, match="seekable"):
        encode_wav_to_mp3(src, out)


def shared_samples() -> list[Path]:
    here = Path(__file__).resolve()
    for root in (here.parents[3] / "shared", Path("/work/shared")):
        found = sorted((root / "samples" / "audio").glob("*.wav"))
        if found:
            return found
    return []


@pytest.mark.parametrize("sample", shared_samples(), ids=lambda p: p.name)
def test_shared_sample_recordings(tmp_path: Path, sample: Path) -> None:
    info = probe_wav(sample)
    result = encode_wav_to_mp3(sample, tmp_path / "out.mp3")
    assert result.frames == info.frames
    assert result.channels_in == info.channels
    decoded = decode_ffmpeg(tmp_path / "out.mp3")
    assert decoded.channels == 2
    assert decoded.sample_rate == info.sample_rate
    assert abs(decoded.frames - info.frames) * 1000 / info.sample_rate <= TOLERANCE_MS
    assert rms(decoded.samples[:, 0]) > 0.001 and rms(decoded.samples[:, 1]) > 0.001


def test_shared_samples_are_found() -> None:
    # The parametrised test above must not silently run zero cases.
    assert len(shared_samples()) >= 4


def test_memory_stays_constant_for_long_recordings(tmp_path: Path) -> None:
    frames = 8000 * 240  # 4 minutes; decoded whole as int16 stereo it would be 7.7 MB
    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(frames) * 2000).astype(np.int16)
    src = tmp_path / "long.wav"
    sf.write(src, pcm, 8000, subtype="PCM_16")
    del pcm
    blocks: list[int] = []
    tracemalloc.start()
    try:
        result = encode_wav_to_mp3(src, tmp_path / "long.mp3", progress=blocks.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.frames == frames
    assert len(blocks) == -(-frames // 65536)  # decoded block by block
    assert peak < 2 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_lameenc_is_only_given_int16_contiguous_stereo() -> None:
    good = np.zeros((10, 2), dtype=np.int16)
    assert _check_block(good) is good
    for bad in (
        np.zeros((10, 2), dtype=np.float32),  # lameenc would take the bytes as int16
        np.zeros((10, 1), dtype=np.int16),  # mono into a stereo encoder: double speed
        np.zeros((2, 10), dtype=np.int16).T,  # not interleaved
        np.zeros(20, dtype=np.int16),
    ):
        with pytest.raises(AudioError, match="C-contiguous int16"):
            _check_block(bad)
