"""MPEG frame parsing, frame counting and the Info tag, checked against real LAME output."""

from __future__ import annotations

import io
import random

import lameenc
import numpy as np
import pytest
from mutagen.mp3 import MP3, BitrateMode

from cj.audio.mpeg import (
    ChannelMode,
    FrameCounter,
    FrameHeader,
    InfoTag,
    MpegFormatError,
    build_info_frame,
    crc16,
    info_frame_size,
    valid_bitrates,
)
from tests.audio.helpers import crc16_arc_reference


def lame_stream(sample_rate: int, bitrate: int, frames: int) -> bytes:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal((frames, 2)) * 3000).astype(np.int16)
    encoder = lameenc.Encoder()
    encoder.set_channels(2)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(sample_rate)
    encoder.set_bit_rate(bitrate)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm)) + bytes(encoder.flush())


def test_header_of_a_known_frame() -> None:
    # MPEG-1 Layer III, no CRC, 128 kbps, 44.1 kHz, padded, joint stereo.
    header = FrameHeader.parse(bytes([0xFF, 0xFB, 0x92, 0x64]))
    assert header.is_mpeg1
    assert not header.protected
    assert (header.bitrate_kbps, header.sample_rate) == (128, 44100)
    assert header.padding
    assert header.mode is ChannelMode.JOINT_STEREO
    assert header.frame_size == 144000 * 128 // 44100 + 1 == 418
    assert header.samples_per_frame == 1152
    assert header.side_info_size == 32


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"\xff\xfb\x92", "fewer than 4 bytes"),
        (b"RIFF", "no frame sync"),
        (bytes([0xFF, 0xEB, 0x92, 0x64]), "reserved MPEG version"),
        (bytes([0xFF, 0xFD, 0x92, 0x64]), "not Layer III"),
        (bytes([0xFF, 0xFB, 0x02, 0x64]), "free-format"),
        (bytes([0xFF, 0xFB, 0x9E, 0x64]), "reserved sample rate"),
    ],
)
def test_bad_headers_are_named(data: bytes, fault: str) -> None:
    with pytest.raises(MpegFormatError, match=fault):
        FrameHeader.parse(data)


@pytest.mark.parametrize(("rate", "bitrate"), [(8000, 32), (22050, 24), (44100, 32)])
def test_frame_counter_is_independent_of_chunking(rate: int, bitrate: int) -> None:
    stream = lame_stream(rate, bitrate, rate * 2)
    whole = FrameCounter()
    whole.feed(stream)
    assert whole.complete
    assert whole.bytes == len(stream)
    assert whole.first is not None and whole.first.sample_rate == rate
    # LAME's flush emits (576 + n + padding) / frame samples frames in all.
    assert whole.frames * whole.first.samples_per_frame >= rate * 2 + 576

    chance = random.Random(rate)
    for _ in range(20):
        counter = FrameCounter()
        pos = 0
        while pos < len(stream):
            step = chance.choice([1, 2, 3, 5, 100, 417, 5000])
            counter.feed(stream[pos : pos + step])
            pos += step
        assert (counter.frames, counter.bytes, counter.complete) == (
            whole.frames,
            whole.bytes,
            True,
        )


def test_frame_counter_notices_lost_sync_and_incomplete_end() -> None:
    stream = lame_stream(8000, 32, 8000)
    counter = FrameCounter()
    counter.feed(stream[:-10])
    assert not counter.complete
    broken = FrameCounter()
    with pytest.raises(MpegFormatError, match="no frame sync"):
        broken.feed(stream[:288] + b"\x00" * 4 + stream[292:])


def test_frame_counter_rejects_a_rate_change_inside_the_stream() -> None:
    counter = FrameCounter()
    with pytest.raises(MpegFormatError, match="does not match"):
        counter.feed(lame_stream(8000, 32, 4000) + lame_stream(16000, 32, 4000))


def test_valid_bitrates_follow_the_mpeg_version() -> None:
    assert valid_bitrates(48000)[0] == 32 and valid_bitrates(48000)[-1] == 320
    assert valid_bitrates(16000) == (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    assert valid_bitrates(8000)[-1] == 64
    with pytest.raises(ValueError, match="not an MP3 sample rate"):
        valid_bitrates(20000)


def test_tag_frame_grows_when_the_stream_bitrate_is_too_small_for_it() -> None:
    assert info_frame_size(8000, 32) == (32, 288)  # the stream's own bitrate fits
    assert info_frame_size(48000, 32) == (64, 192)  # a 96-byte frame would not
    assert info_frame_size(16000, 8) == (40, 180)  # 177 bytes needed


def test_crc16_is_crc16_arc() -> None:
    assert crc16(b"123456789") == 0xBB3D
    data = bytes(range(256)) * 3
    assert crc16(data[100:], crc16(data[:100])) == crc16_arc_reference(data)


@pytest.mark.parametrize(("rate", "bitrate"), [(8000, 32), (16000, 32), (48000, 32), (44100, 64)])
def test_info_frame_reads_back_with_mutagen(rate: int, bitrate: int) -> None:
    stream = lame_stream(rate, bitrate, rate)
    counter = FrameCounter()
    counter.feed(stream)
    assert counter.first is not None
    _, size = info_frame_size(rate, bitrate)
    tag = InfoTag(
        frames=counter.frames,
        stream_bytes=size + len(stream),
        enc_delay=576,
        enc_padding=counter.frames * counter.first.samples_per_frame - 576 - rate,
        music_crc=crc16(stream),
        bitrate_kbps=bitrate,
        quality=7,
        source_sample_rate=rate,
    )
    frame = build_info_frame(counter.first, tag)
    assert len(frame) == size
    mp3 = frame + stream

    info = MP3(fileobj=io.BytesIO(mp3)).info
    assert info.bitrate_mode is BitrateMode.CBR
    assert info.encoder_info.startswith("LAME 3.100")
    assert info.channels == 2 and info.sample_rate == rate
    assert info.length == pytest.approx(1.0, abs=1e-9)  # frames − delay − padding = 1 s

    # The tag CRC covers the frame up to itself, the music CRC the audio frames.
    crc_at = 4 + counter.first.side_info_size + 120 + 34
    assert int.from_bytes(frame[crc_at : crc_at + 2], "big") == crc16_arc_reference(frame[:crc_at])
    assert int.from_bytes(frame[crc_at - 2 : crc_at], "big") == crc16_arc_reference(stream)


def test_info_tag_refuses_values_its_fields_cannot_hold() -> None:
    with pytest.raises(ValueError, match="12-bit"):
        InfoTag(
            frames=1,
            stream_bytes=1,
            enc_delay=576,
            enc_padding=5000,
            music_crc=0,
            bitrate_kbps=32,
            quality=5,
            source_sample_rate=8000,
        )
