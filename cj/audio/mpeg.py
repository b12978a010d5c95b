"""MPEG-1/2/2.5 Layer III bitstream facts and the LAME "Info" tag, without I/O.

lameenc hands us bare MP3 frames and no header frame, so a decoder cannot know the
encoder delay and end padding: at 8 kHz the MP3 decodes about 170 ms longer than the
WAV. This module provides what is needed to prepend the tag that LAME's own front end
writes (the Xing/"Info" header plus the LAME extension, see "LAME tag" in the
Hydrogenaudio wiki / gabriel.mp3-tech.org/mp3infotag.html):

- `FrameHeader` parses the 4-byte header of an MP3 frame;
- `FrameCounter` walks an MP3 byte stream chunk by chunk, counting and checking frames;
- `info_frame_size` / `build_info_frame` make the tag frame itself;
- `valid_bitrates` / `MPEG_SAMPLE_RATES` say what the format allows.

Decoders that honour the tag (mpg123, hence libsndfile; ffmpeg) drop
`enc_delay + 529` samples at the start and `enc_padding - 529` at the end, so the decoded
length equals the PCM length that went in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import fastcrc

# Sample rates by (version bits) and index; version bits: 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5.
_SAMPLE_RATES = {
    3: (44100, 48000, 32000),
    2: (22050, 24000, 16000),
    0: (11025, 12000, 8000),
}
MPEG_SAMPLE_RATES: tuple[int, ...] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

# Layer III bitrate tables (kbps) by bitrate index; index 0 is "free format", 15 invalid.
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)

# The delay LAME 3.100 reports through lame_get_encoder_delay() for every setting
# (ENCDELAY in encoder.h); the decoder adds its own 529 samples on top.
LAME_ENCODER_DELAY = 576

# Byte count from the frame start to the tag CRC field is 190 for MPEG-1 stereo; it is
# shorter for the other layouts. The Xing part (flags, frames, bytes, TOC, scale) is 120
# bytes, the LAME extension up to the tag CRC is 34, the CRC itself 2.
_XING_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008  # frames, bytes, TOC, quality
_XING_SIZE = 4 + 4 + 4 + 4 + 100 + 4
_LAME_EXTENSION_SIZE = 36
LAME_VERSION = b"LAME3.100"  # lameenc bundles LAME 3.100; decoders key gapless on "LAME"


class ChannelMode(IntEnum):
    """The two "mode" bits of a frame header."""

    STEREO = 0
    JOINT_STEREO = 1
    DUAL_CHANNEL = 2
    MONO = 3


class MpegFormatError(ValueError):
    """Bytes that are not the MP3 frame they were expected to be."""


def mpeg_version_name(sample_rate: int) -> str:
    """Which standard an output rate belongs to: "MPEG-1", "MPEG-2" or "MPEG-2.5"."""
    if sample_rate >= 32000:
        return "MPEG-1"
    if sample_rate >= 16000:
        return "MPEG-2"
    return "MPEG-2.5"


def valid_bitrates(sample_rate: int) -> tuple[int, ...]:
    """The constant bitrates (kbps) LAME 3.100 really produces at `sample_rate`.

    MPEG-1 (32-48 kHz) starts at 32 kbps; MPEG-2 (16-24 kHz) spans 8-160 kbps; for
    MPEG-2.5 (8-12 kHz) the standard table goes to 160 kbps but LAME caps it at 64
    (measured: asking for more silently yields 64).
    """
    if sample_rate not in MPEG_SAMPLE_RATES:
        raise ValueError(f"{sample_rate} Hz is not an MP3 sample rate")
    if sample_rate >= 32000:
        return _BITRATES_V1[1:]
    if sample_rate >= 16000:
        return _BITRATES_V2[1:]
    return tuple(b for b in _BITRATES_V2[1:] if b <= 64)


@dataclass(frozen=True)
class FrameHeader:
    """The decoded 32-bit header of one Layer III frame."""

    raw: int
    version_bits: int  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    protected: bool  # a 16-bit CRC follows the header
    bitrate_index: int
    bitrate_kbps: int
    sample_rate: int
    padding: bool
    mode: ChannelMode

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> FrameHeader:
        """Parse the first 4 bytes of `data`; MpegFormatError if they are not a Layer III header."""
        if len(data) < 4:
            raise MpegFormatError("fewer than 4 bytes: not a frame header")
        raw = int.from_bytes(data[:4], "big")
        if raw >> 21 != 0x7FF:
            raise MpegFormatError(f"no frame sync in {raw:08x}")
        version_bits = (raw >> 19) & 3
        if version_bits == 1:
            raise MpegFormatError(f"reserved MPEG version in {raw:08x}")
        if (raw >> 17) & 3 != 1:
            raise MpegFormatError(f"not Layer III in {raw:08x}")
        bitrate_index = (raw >> 12) & 0xF
        if bitrate_index in (0, 15):
            raise MpegFormatError(f"free-format or invalid bitrate index in {raw:08x}")
        rate_index = (raw >> 10) & 3
        if rate_index == 3:
            raise MpegFormatError(f"reserved sample rate index in {raw:08x}")
        table = _BITRATES_V1 if version_bits == 3 else _BITRATES_V2
        return cls(
            raw=raw,
            version_bits=version_bits,
            protected=not (raw >> 16) & 1,
            bitrate_index=bitrate_index,
            bitrate_kbps=table[bitrate_index],
            sample_rate=_SAMPLE_RATES[version_bits][rate_index],
            padding=bool((raw >> 9) & 1),
            mode=ChannelMode((raw >> 6) & 3),
        )

    @property
    def is_mpeg1(self) -> bool:
        return self.version_bits == 3

    @property
    def samples_per_frame(self) -> int:
        return 1152 if self.is_mpeg1 else 576

    @property
    def channels(self) -> int:
        return 1 if self.mode is ChannelMode.MONO else 2

    @property
    def side_info_size(self) -> int:
        if self.is_mpeg1:
            return 17 if self.mode is ChannelMode.MONO else 32
        return 9 if self.mode is ChannelMode.MONO else 17

    @property
    def frame_size(self) -> int:
        """Bytes in this frame, header included."""
        return _frame_bytes(self.is_mpeg1, self.bitrate_kbps, self.sample_rate) + self.padding


def _frame_bytes(mpeg1: bool, bitrate_kbps: int, sample_rate: int) -> int:
    # 1152 samples/frame for MPEG-1, 576 for MPEG-2/2.5: 144000 or 72000 × kbps / rate.
    return (144000 if mpeg1 else 72000) * bitrate_kbps // sample_rate


class FrameCounter:
    """Follows an MP3 stream given in arbitrary chunks, counting whole frames.

    Every frame header is checked, so a stream that loses sync (which would mean the
    encoder produced something other than back-to-back frames) raises MpegFormatError
    instead of producing a wrong frame count and thus a wrong duration in the tag.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.first: FrameHeader | None = None
        self._skip = 0  # bytes of the current frame still to come
        self._partial = b""  # a header split across chunks

    def feed(self, chunk: bytes | bytearray) -> None:
        """Account for the next `chunk` of the stream."""
        self.bytes += len(chunk)
        data = memoryview(chunk)
        end = len(data)
        if self._partial:
            need = 4 - len(self._partial)
            self._partial += bytes(data[:need])
            if len(self._partial) < 4:
                return
            header = self._start_frame(self._partial)
            self._partial = b""
            # That frame began len(partial) bytes before this chunk.
            pos = need + header.frame_size - 4
        else:
            pos = self._skip
        while pos + 4 <= end:
            pos += self._start_frame(data[pos : pos + 4]).frame_size
        if pos < end:  # the next header is split across chunks
            self._partial = bytes(data[pos:end])
            self._skip = 0
        else:
            self._skip = pos - end

    def _start_frame(self, header_bytes: bytes | memoryview) -> FrameHeader:
        header = FrameHeader.parse(header_bytes)
        if self.first is None:
            self.first = header
        elif (header.raw ^ self.first.raw) & 0xFFFE0C00:
            # Version, layer and sample rate must not change inside one stream.
            raise MpegFormatError(
                f"frame {self.frames}: header {header.raw:08x} does not match the "
                f"stream's first frame {self.first.raw:08x}"
            )
        self.frames += 1
        return header

    @property
    def complete(self) -> bool:
        """True when the stream so far ends exactly at a frame boundary."""
        return self._skip == 0 and not self._partial


def info_frame_size(sample_rate: int, bitrate_kbps: int, channels: int = 2) -> tuple[int, int]:
    """(bitrate, size) of the tag frame for a stream at `sample_rate` and `bitrate_kbps`.

    The tag frame uses the stream's own bitrate when the tag fits in such a frame (as
    LAME does for CBR); at low bitrates, where it would not (32 kbps at 48 kHz gives
    96-byte frames), the smallest bitrate whose frame holds it. LAME itself just drops
    the tag in that case, losing gapless playback; decoders read the tag frame's size
    from its own header, so a different bitrate there is harmless.
    """
    mpeg1 = sample_rate >= 32000
    side_info = (32 if channels == 2 else 17) if mpeg1 else (17 if channels == 2 else 9)
    needed = 4 + side_info + _XING_SIZE + _LAME_EXTENSION_SIZE
    table = _BITRATES_V1 if mpeg1 else _BITRATES_V2
    candidates = [bitrate_kbps] + [b for b in table[1:] if b > bitrate_kbps]
    for kbps in candidates:
        size = _frame_bytes(mpeg1, kbps, sample_rate)
        if size >= needed:
            return kbps, size
    raise ValueError(f"no Layer III frame at {sample_rate} Hz holds a {needed}-byte tag")


@dataclass(frozen=True)
class InfoTag:
    """What goes into the Xing/Info header and its LAME extension."""

    frames: int  # audio frames, the tag frame not included
    stream_bytes: int  # the whole MP3: tag frame plus audio frames
    enc_delay: int  # samples of encoder delay at the start (LAME: 576)
    enc_padding: int  # samples of padding at the end
    music_crc: int  # CRC-16 (ARC) of the audio frames
    bitrate_kbps: int  # the stream's constant bitrate
    quality: int  # LAME -q, 0-9
    source_sample_rate: int  # the PCM rate before any resampling

    def __post_init__(self) -> None:
        if not 0 <= self.enc_delay <= 4095 or not 0 <= self.enc_padding <= 4095:
            raise ValueError(
                f"encoder delay {self.enc_delay} / padding {self.enc_padding} do not fit "
                "the tag's 12-bit fields"
            )
        if self.frames < 0 or self.stream_bytes < 0:
            raise ValueError("frames and stream_bytes must not be negative")


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/ARC (polynomial 0x8005, reflected), as LAME uses for both tag checksums."""
    return fastcrc.crc16.arc(data, crc)


def build_info_frame(first_audio_header: FrameHeader, tag: InfoTag) -> bytes:
    """The complete tag frame to put in front of the audio frames.

    Its header copies version, sample rate, protection, channel mode and flags from the
    stream's first frame (as LAME does), with the bitrate of `info_frame_size` and no
    padding; the side information stays zero, so a decoder that knows nothing of the
    tag plays it as one frame of silence.
    """
    first = first_audio_header
    if first.protected:
        # lameenc never enables CRC protection; a tag behind a CRC would sit 2 bytes off.
        raise MpegFormatError("CRC-protected streams are not supported")
    kbps, size = info_frame_size(first.sample_rate, tag.bitrate_kbps, first.channels)
    table = _BITRATES_V1 if first.is_mpeg1 else _BITRATES_V2
    raw = (first.raw & ~0x0000F200) | (table.index(kbps) << 12)  # new bitrate, no padding
    frame = bytearray(size)
    frame[0:4] = raw.to_bytes(4, "big")
    pos = 4 + first.side_info_size

    toc = bytes(min(255, 256 * i // 100) for i in range(100))  # CBR: time ∝ bytes
    # LAME's "VBR scale" for CBR: 100 - 10 × VBR_q (default 4) - quality.
    vbr_scale = max(0, 100 - 10 * 4 - tag.quality)
    xing = (
        b"Info"  # "Info", not "Xing": a constant-bitrate stream
        + struct.pack(">III", _XING_FLAGS, tag.frames, tag.stream_bytes)
        + toc
        + struct.pack(">I", vbr_scale)
    )
    stereo_mode = {
        ChannelMode.MONO: 0,
        ChannelMode.STEREO: 1,
        ChannelMode.DUAL_CHANNEL: 2,
        ChannelMode.JOINT_STEREO: 3,
    }[first.mode]
    rate = tag.source_sample_rate
    source_freq = 0 if rate <= 32000 else 1 if rate < 48000 else 2 if rate == 48000 else 3
    # Fields we cannot know through lameenc (lowpass, ATH type, noise shaping, peak,
    # ReplayGain, preset) stay 0, which the format defines as "unknown / not set".
    lame = (
        LAME_VERSION
        + bytes([0x01])  # tag revision 0, VBR method 1 = constant bitrate
        + bytes([0])  # lowpass / 100 Hz: unknown
        + struct.pack(">I", 0)  # peak signal amplitude: not computed
        + struct.pack(">HH", 0, 0)  # radio / audiophile ReplayGain: not set
        + bytes([0])  # ATH type and encoding flags: unknown
        + bytes([min(255, tag.bitrate_kbps)])  # CBR: the bitrate
        + bytes(
            [
                tag.enc_delay >> 4,
                ((tag.enc_delay & 0xF) << 4) | (tag.enc_padding >> 8),
                tag.enc_padding & 0xFF,
            ]
        )
        + bytes([(stereo_mode << 2) | (source_freq << 6)])  # misc
        + bytes([0])  # MP3 gain
        + struct.pack(">H", 0)  # preset and surround info
        + struct.pack(">I", tag.stream_bytes)  # music length: whole stream incl. this frame
        + struct.pack(">H", tag.music_crc)
    )
    body = xing + lame
    frame[pos : pos + len(body)] = body
    end = pos + len(body)
    frame[end : end + 2] = struct.pack(">H", crc16(frame[:end]))
    assert end + 2 <= size  # guaranteed by info_frame_size
    return bytes(frame)
