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
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

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
        """True for block codecs (ADPCM, GSM …) whose last block may be padded."""
        return self.samples_per_block > 1


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
        elif cb_size >= 2 and value > 1:
            samples_per_block = value  # IMA/MS ADPCM, GSM 6.10: wSamplesPerBlock
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
            elif size < present and not _chunks_to_eof(f, body_at + size + (size & 1), file_size):
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
    """A read-only view of `raw` with some byte ranges replaced.

    Used to hand libsndfile a WAV whose RIFF and data sizes are corrected without
    copying or modifying the original (which must be kept untouched if encoding fails).
    """

    def __init__(self, raw: BinaryIO, patches: dict[int, bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._patches = sorted(patches.items())
        raw.seek(0, io.SEEK_END)
        self._size = raw.tell()
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
        self._raw.seek(self._pos)
        n = self._raw.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return 0
        start, end = self._pos, self._pos + n
        for offset, data in self._patches:
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start : hi - start] = data[lo - offset : hi - offset]
        self._pos = end
        return int(n)


def size_patches(layout: WavLayout) -> dict[int, bytes]:
    """The RIFF and data size fields that make `layout`'s header match its contents."""
    if layout.data_offset is None or layout.fmt is None:
        raise ValueError("no data chunk to patch")
    align = max(1, layout.fmt.block_align)
    data_size = min(layout.data_present // align * align, 0xFFFFFFFE)
    riff_size = min(layout.data_offset + data_size - 8, 0xFFFFFFFE)
    return {4: struct.pack("<I", riff_size), layout.data_offset - 4: struct.pack("<I", data_size)}
