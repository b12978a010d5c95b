"""RIFF/WAVE chunk layout: what the header says versus what the file holds.

libsndfile trusts the data chunk's size field. A recorder that crashed before closing
the file leaves 0 there (or the 0xFFFFFFFF placeholder) with all the audio after it, and
libsndfile then reads nothing. `scan_wav` walks the chunks itself and reports where the
audio really is; `PatchedFile` shows libsndfile the same bytes with the two size fields
corrected, so every codec libsndfile knows (PCM, float, µ-law, A-law, GSM 6.10, IMA/MS
ADPCM, …) is recovered the same way, without our own decoding.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_MS_ADPCM = 0x0002
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_IMA_ADPCM = 0x0011
WAVE_FORMAT_GSM610 = 0x0031
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# Block codecs whose fmt chunk carries wSamplesPerBlock and whose block layout we know.
BLOCK_CODECS = frozenset({WAVE_FORMAT_MS_ADPCM, WAVE_FORMAT_IMA_ADPCM, WAVE_FORMAT_GSM610})
# What libsndfile 1.2 decodes inside a RIFF/WAVE file (G.721 ADPCM and MPEG Layer III
# besides the above); anything else is reported as an unsupported codec.
LIBSNDFILE_WAV_CODECS = frozenset(
    {
        WAVE_FORMAT_PCM,
        WAVE_FORMAT_MS_ADPCM,
        WAVE_FORMAT_IEEE_FLOAT,
        WAVE_FORMAT_ALAW,
        WAVE_FORMAT_MULAW,
        WAVE_FORMAT_IMA_ADPCM,
        WAVE_FORMAT_GSM610,
        0x0040,  # G.721 ADPCM
        0x0055,  # MPEG Layer III
        WAVE_FORMAT_EXTENSIBLE,
    }
)

# A pathological file must not keep us walking chunks forever.
MAX_CHUNKS = 10_000
_SIZE_PLACEHOLDERS = (0xFFFFFFFF, 0x7FFFFFFF)


@dataclass(frozen=True)
class WavFormat:
    """The fmt chunk, with WAVE_FORMAT_EXTENSIBLE resolved to its sub-format tag."""

    format_tag: int
    channels: int
    sample_rate: int
    block_align: int
    bits_per_sample: int
    samples_per_block: int  # 1 for PCM-like formats; the codec's block for ADPCM and GSM

    @property
    def compressed(self) -> bool:
        """True for the block codecs (IMA/MS ADPCM, GSM 6.10) whose blocks we understand."""
        return (
            self.format_tag in BLOCK_CODECS
            and self.samples_per_block > 1
            and (self.block_align > 0)
        )

    def partial_block_samples(self, nbytes: int) -> int:
        """Samples a decoder can take from the first `nbytes` bytes of one block.

        The last block of a truncated or unfinalised file is usually cut short; its
        first samples are intact (the layouts are those of the codecs' WAV mappings).
        """
        ch = max(1, self.channels)
        if self.format_tag == WAVE_FORMAT_IMA_ADPCM:
            # Per channel: a 4-byte header holding one sample, then 4-byte words of 8.
            return 0 if nbytes < 4 * ch else 1 + (nbytes - 4 * ch) // (4 * ch) * 8
        if self.format_tag == WAVE_FORMAT_MS_ADPCM:
            # Per channel: a 7-byte header holding two samples, then a nibble per sample.
            return 0 if nbytes < 7 * ch else 2 + (nbytes - 7 * ch) * 2 // ch
        if self.format_tag == WAVE_FORMAT_GSM610:
            # Two 160-sample frames in 65 bytes; the first fits in the first 33.
            return 160 if nbytes >= 33 else 0
        return 0


@dataclass(frozen=True)
class WavLayout:
    """Where a RIFF/WAVE file's audio is, and what is wrong with its header."""

    file_size: int
    fmt: WavFormat | None
    fact_samples: int | None  # the fact chunk's sample count, when present
    data_offset: int | None  # first byte of audio; None if there is no data chunk
    data_declared: int | None  # what the data chunk header says
    data_present: int  # audio bytes really in the file
    problems: tuple[str, ...]  # each one a sentence naming what is wrong

    @property
    def needs_patch(self) -> bool:
        """True when libsndfile would read less audio than is there (unsized data chunk)."""
        return (
            self.data_offset is not None
            and self.data_declared is not None
            and self.data_declared < self.data_present
        )

    @property
    def data_ends_at_eof(self) -> bool:
        return self.data_offset is not None and self.data_offset + self.data_present == (
            self.file_size
        )

    @property
    def truncated(self) -> bool:
        """True when the header promises more audio than the file holds."""
        return (
            self.data_declared is not None
            and self.data_declared not in _SIZE_PLACEHOLDERS
            and self.data_declared > self.data_present
        )


def _u32(data: bytes, offset: int = 0) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _parse_fmt(body: bytes) -> WavFormat | None:
    if len(body) < 16:
        return None
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    samples_per_block = 1
    if len(body) >= 20 and tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT):
        cb_size, value = struct.unpack_from("<HH", body, 16)
        if tag == WAVE_FORMAT_EXTENSIBLE and cb_size >= 22 and len(body) >= 26:
            tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the GUID
        elif tag in BLOCK_CODECS and cb_size >= 2 and value > 1:
            samples_per_block = value  # wSamplesPerBlock
    return WavFormat(tag, channels, rate, block_align, bits, samples_per_block)


def _is_chunk_id(cid: bytes) -> bool:
    return len(cid) == 4 and all(0x20 <= c <= 0x7E for c in cid)


def _chunks_to_eof(f: BinaryIO, pos: int, file_size: int) -> bool:
    """True if the bytes from `pos` to the end are well-formed chunks (or a pad byte).

    Decides whether bytes after a data chunk are more chunks (LIST, id3 …: normal) or
    audio the header did not count (a recorder that never fixed its header).
    """
    for _ in range(MAX_CHUNKS):
        if file_size - pos <= 1:
            return True
        if file_size - pos < 8:
            return False
        f.seek(pos)
        head = f.read(8)
        if not _is_chunk_id(head[:4]):
            return False
        size = _u32(head, 4)
        end = pos + 8 + size
        if end > file_size + 1:
            return False
        pos = end + (size & 1)
    return False


def _zeros_to_eof(f: BinaryIO, pos: int, file_size: int) -> bool:
    f.seek(pos)
    while pos < file_size:
        chunk = f.read(min(file_size - pos, 1 << 16))
        if not chunk or chunk.count(0) != len(chunk):
            return False
        pos += len(chunk)
    return True


def _explained_tail(f: BinaryIO, pos: int, file_size: int) -> bool:
    """True if what follows the declared data is not audio the header forgot.

    More chunks (LIST, id3 …), an ID3v1 tag, or zero bytes (a file system's
    preallocation after a crash) are left alone, as other decoders do. Anything else
    is taken for audio written after the header was last updated.
    """
    if _chunks_to_eof(f, pos, file_size):
        return True
    f.seek(pos)
    if file_size - pos == 128 and f.read(3) == b"TAG":
        return True
    return _zeros_to_eof(f, pos, file_size)


def scan_wav(f: BinaryIO) -> WavLayout | None:
    """Walk the chunks of the RIFF/WAVE file `f`; None if it is not one.

    Only little-endian RIFF WAVE is examined; RF64, W64, RIFX and other containers are
    left to libsndfile as they are.
    """
    f.seek(0, io.SEEK_END)
    file_size = f.tell()
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    problems: list[str] = []
    fmt: WavFormat | None = None
    fact: int | None = None
    pos = 12
    for _ in range(MAX_CHUNKS):
        if file_size - pos < 8:
            break
        f.seek(pos)
        chunk = f.read(8)
        cid, size = chunk[:4], _u32(chunk, 4)
        body_at = pos + 8
        if cid == b"data":
            present = file_size - body_at
            if size in _SIZE_PLACEHOLDERS:
                problems.append(
                    f"the data chunk size is the placeholder 0x{size:08X} (header never "
                    f"finalised); read {present} bytes of audio to the end of the file"
                )
            elif size > present:
                problems.append(
                    f"file is truncated: the data chunk declares {size} bytes, "
                    f"{present} are present"
                )
            elif size < present and not _explained_tail(f, body_at + size + (size & 1), file_size):
                problems.append(
                    f"the data chunk declares {size} bytes but {present} bytes of audio "
                    "follow (header never finalised); read them to the end of the file"
                )
            else:
                present = size
            if fmt is None:
                problems.append("no fmt chunk before the data chunk")
            return WavLayout(file_size, fmt, fact, body_at, size, present, tuple(problems))
        if not _is_chunk_id(cid):
            problems.append(f"unreadable chunk header at byte {pos}")
            break
        if cid == b"fmt ":
            fmt = _parse_fmt(f.read(min(size, 64)))
            if fmt is None:
                problems.append(f"fmt chunk of {size} bytes is too short")
        elif cid == b"fact" and size >= 4:
            fact = _u32(f.read(4))
        pos = body_at + size + (size & 1)
    problems.append("no data chunk")
    return WavLayout(file_size, fmt, fact, None, None, 0, tuple(problems))


class PatchedFile(io.RawIOBase):
    """A read-only view of `raw` with some byte ranges replaced, and zeros past its end.

    Hands libsndfile a WAV whose RIFF and data sizes are corrected (and whose cut-short
    last codec block is completed with zeros, so that it is decoded at all) without
    copying or modifying the original, which must stay untouched if encoding fails.
    """

    def __init__(self, raw: BinaryIO, patches: dict[int, bytes], size: int | None = None) -> None:
        super().__init__()
        self._raw = raw
        self._patches = sorted(patches.items())
        raw.seek(0, io.SEEK_END)
        self._raw_size = raw.tell()
        self._size = max(self._raw_size, size or 0)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        start = self._pos
        want = max(0, min(len(view), self._size - start))
        n = 0
        if start < self._raw_size:
            self._raw.seek(start)
            n = self._raw.readinto(view[: min(want, self._raw_size - start)]) or 0  # type: ignore[attr-defined]
        if n < want and start + n >= self._raw_size:
            view[n:want] = bytes(want - n)  # the zeros past the end of the file
            n = want
        end = start + n
        for offset, data in self._patches:
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start : hi - start] = data[lo - offset : hi - offset]
        self._pos = end
        return int(n)


def size_patches(layout: WavLayout, data_size: int | None = None) -> dict[int, bytes]:
    """The RIFF and data size fields for `layout` with `data_size` bytes of audio.

    `data_size` defaults to the audio present, cut to whole blocks.
    """
    if layout.data_offset is None or layout.fmt is None:
        raise ValueError("no data chunk to patch")
    if data_size is None:
        align = max(1, layout.fmt.block_align)
        data_size = layout.data_present // align * align
    data_size = min(data_size, 0xFFFFFFFE)
    riff_size = min(layout.data_offset + data_size - 8, 0xFFFFFFFE)
    return {4: struct.pack("<I", riff_size), layout.data_offset - 4: struct.pack("<I", data_size)}
