"""What the tests drop into PBX spools, and the inventory the server is checked against.

`CallFactory` makes calls with unique callers and start times, alternating compact
and FreeSWITCH CDRs; `AUDIO_FORMATS` are the WAV codecs, rates and channel counts a
PBX may write. `Spool.drop(call)` writes the recording first, then the CDR, each
under a temporary name renamed into place, as a PBX finishing a call would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

# (libsndfile subtype, sample rate, channels): what PBXs write, and some they might.
AUDIO_FORMATS: tuple[tuple[str, int, int], ...] = (
    ("PCM_16", 8000, 1),
    ("ULAW", 8000, 1),
    ("ALAW", 8000, 1),
    ("GSM610", 8000, 1),
    ("IMA_ADPCM", 8000, 1),
    ("MS_ADPCM", 8000, 1),
    ("PCM_16", 16000, 2),
    ("FLOAT", 11025, 2),
    ("PCM_24", 16000, 1),
    ("PCM_U8", 8000, 1),
    ("G721_32", 8000, 1),
    ("DOUBLE", 12000, 2),
)

BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)
PBX_NUMBER = "84957001020"


@dataclass(frozen=True)
class Recording:
    """A WAV as dropped: its bytes' identity and the duration libsndfile decodes."""

    name: str
    size: int
    sha256: str
    frames: int
    sample_rate: int
    channels: int
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class CallSpec:
    """One call to drop: its CDR document and, maybe, the recording's source file."""

    uuid: str
    caller: str  # as written in the CDR
    caller_digits: str
    started_at: datetime
    private: bool
    document: dict[str, Any]
    cdr_name: str
    wav: Path | None = None
    recording: Recording | None = None


@dataclass
class Inventory:
    """Everything dropped, by uuid: what the server must end up holding."""

    calls: dict[str, CallSpec] = field(default_factory=dict)

    def add(self, call: CallSpec) -> None:
        if call.uuid in self.calls:
            raise ValueError(f"call {call.uuid} dropped twice")
        self.calls[call.uuid] = call

    @property
    def recordings(self) -> dict[str, Recording]:
        return {u: c.recording for u, c in self.calls.items() if c.recording is not None}

    def __len__(self) -> int:
        return len(self.calls)


def describe_wav(path: Path) -> Recording:
    data = path.read_bytes()
    info = soundfile.info(str(path))
    declared = fact_samples(data)
    return Recording(
        name=path.name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        # A compressed WAV's length is what its fact chunk declares: the data is padded
        # to whole codec blocks (libsndfile's info counts the padding, decoders trim it).
        frames=declared if declared is not None else int(info.frames),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        subtype=str(info.subtype),
    )


def fact_samples(wav: bytes) -> int | None:
    """The sample count of a WAV's `fact` chunk, if it has one (a plain RIFF walk)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    at = 12
    while at + 8 <= len(wav):
        chunk, size = wav[at : at + 4], int.from_bytes(wav[at + 4 : at + 8], "little")
        if chunk == b"fact" and size >= 4:
            return int.from_bytes(wav[at + 8 : at + 12], "little")
        at += 8 + size + (size & 1)
    return None


def write_wav(
    path: Path, *, seconds: float, subtype: str, rate: int, channels: int, seed: int
) -> Path:
    """A sweep with a per-call pitch (so every file differs) in the given format."""
    frames = round(rate * seconds)
    t = np.arange(frames) / rate
    base = 220.0 + (seed % 97) * 7.0
    columns = [0.4 * np.sin(2 * np.pi * (base + 90 * c) * t * (1 + t / 8)) for c in range(channels)]
    signal = np.stack(columns, axis=1)
    soundfile.write(str(path), signal, rate, subtype=subtype, format="WAV")
    return path


def write_long_gsm(path: Path, *, seconds: float) -> Path:
    """A long, compact recording (GSM 6.10, 8 kHz mono: 1.6 kB/s) whose encode takes
    seconds, so an encoder can be caught in the middle of it."""
    rate = 8000
    rng = np.random.default_rng(7)
    with soundfile.SoundFile(
        str(path), "w", samplerate=rate, channels=1, subtype="GSM610", format="WAV"
    ) as out:
        block = rate * 60
        left = round(rate * seconds)
        while left > 0:
            n = min(block, left)
            out.write(rng.uniform(-0.4, 0.4, n).astype(np.float32))
            left -= n
    return path


class CallFactory:
    """Calls with unique callers (+7 9xx …) and start times minutes apart."""

    def __init__(self, audio_dir: Path, *, first: int = 0, source: str = "") -> None:
        self.audio_dir = audio_dir
        self.index = first
        audio_dir.mkdir(parents=True, exist_ok=True)

    def make(
        self,
        *,
        recording: bool = True,
        seconds: float | None = None,
        fmt: tuple[str, int, int] | None = None,
        wav: Path | None = None,
        private: bool | None = None,
        freeswitch: bool | None = None,
    ) -> CallSpec:
        """The next call; `wav` uses that file as the recording (copied when dropped)."""
        i = self.index
        self.index += 1
        call_uuid = str(uuid.uuid4())
        digits = f"79{i:09d}"
        caller = f"+7 ({digits[1:4]}) {digits[4:7]}-{digits[7:9]}-{digits[9:11]}"
        started = BASE_TIME + timedelta(minutes=7 * i, seconds=i % 53)
        is_private = (i % 9 == 4) if private is None else private
        spec_recording: Recording | None = None
        source_wav: Path | None = None
        if wav is not None:
            source_wav = wav
        elif recording:
            subtype, rate, channels = fmt or AUDIO_FORMATS[i % len(AUDIO_FORMATS)]
            length = seconds if seconds is not None else 1.0 + (i % 5) * 0.45
            source_wav = write_wav(
                self.audio_dir / f"{call_uuid}.wav",
                seconds=length,
                subtype=subtype,
                rate=rate,
                channels=channels,
                seed=i,
            )
        name = f"{call_uuid}.wav"
        if source_wav is not None:
            spec_recording = describe_wav(source_wav)
            spec_recording = Recording(**{**spec_recording.__dict__, "name": name})
        use_freeswitch = (i % 4 == 3) if freeswitch is None else freeswitch
        if use_freeswitch:
            document = freeswitch_cdr(
                call_uuid, caller, started, name if source_wav else None, is_private
            )
            cdr_name = f"{call_uuid}.cdr.json"
        else:
            document = compact_cdr(
                call_uuid, caller, started, name if source_wav else None, is_private
            )
            cdr_name = f"{call_uuid}.json"
        return CallSpec(
            uuid=call_uuid,
            caller=caller,
            caller_digits=digits,
            started_at=started,
            private=is_private,
            document=document,
            cdr_name=cdr_name,
            wav=source_wav,
            recording=spec_recording,
        )


def compact_cdr(
    call_uuid: str, caller: str, started: datetime, recording: str | None, private: bool
) -> dict[str, Any]:
    start = int(started.timestamp())
    return {
        "uuid": call_uuid,
        "clid": caller,
        "clna": "",
        "dest": PBX_NUMBER,
        "dirc": "inc",
        "stti": started.strftime("%Y-%m-%d %H:%M:%S"),
        "durs": 64,
        "bils": 58,
        "recd": recording is not None,
        "recs": 58 if recording is not None else 0,
        "rnam": recording or "",
        "rtag": "private" if private else "public",
        "epos": start,
        "epoa": start + 6,
        "epoe": start + 64,
        "wbye": "recv_bye",
        "hang": "NORMAL_CLEARING",
        "code": "200",
    }


def freeswitch_cdr(
    call_uuid: str, caller: str, started: datetime, recording: str | None, private: bool
) -> dict[str, Any]:
    """A stock mod_json_cdr document, values URL-encoded as FreeSWITCH does by default."""
    start = int(started.timestamp())
    variables: dict[str, Any] = {
        "direction": "inbound",
        "uuid": call_uuid,
        "call_uuid": call_uuid,
        "start_epoch": str(start),
        "start_uepoch": str(start * 1_000_000 + 120455),
        "answer_epoch": str(start + 6),
        "answer_uepoch": str((start + 6) * 1_000_000),
        "end_epoch": str(start + 102),
        "end_uepoch": str((start + 102) * 1_000_000),
        "duration": "102",
        "billsec": "96",
        "hangup_cause": "NORMAL_CLEARING",
        "sip_hangup_disposition": "recv_bye",
        "sip_term_status": "200",
        "cj_record_tag": "private" if private else "public",
    }
    if recording is not None:
        variables["record_name"] = recording
    encoded = caller.replace("+", "%2B").replace(" ", "%20")
    return {
        "core-uuid": "77f0d2c4-6a1e-4c3b-9d85-0e2f4a6b8c10",
        "switchname": "pbx-e2e",
        "variables": variables,
        "callflow": [
            {
                "dialplan": "XML",
                "profile_index": "1",
                "caller_profile": {
                    "caller_id_name": encoded,
                    "caller_id_number": encoded,
                    "destination_number": PBX_NUMBER,
                    "uuid": call_uuid,
                },
                "times": {"created_time": str(start * 1_000_000)},
            }
        ],
    }


@dataclass
class Spool:
    """One PBX's output directories (an agent source)."""

    root: Path
    name: str

    @property
    def cdr_dir(self) -> Path:
        return self.root / "cdr"

    @property
    def recordings_dir(self) -> Path:
        return self.root / "recordings"

    @property
    def quarantine_dir(self) -> Path:
        return self.cdr_dir / "failed"

    @property
    def pending_dir(self) -> Path:
        return self.cdr_dir / "pending"

    def make(self) -> Spool:
        self.cdr_dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        return self

    def source_config(self, **overrides: Any) -> dict[str, Any]:
        """This spool as an `agent.sources` entry (JSON for CJ_AGENT_SOURCES)."""
        return {
            "name": self.name,
            "cdr_dir": str(self.cdr_dir),
            "recordings_dir": str(self.recordings_dir),
            "timezone": "Europe/Moscow",
            **overrides,
        }

    def drop(self, call: CallSpec) -> None:
        """Recording first (as a PBX closes it before writing the CDR), then the CDR."""
        wav = call.wav
        if wav is not None and call.recording is not None:
            _place(self.recordings_dir / call.recording.name, lambda tmp: shutil.copyfile(wav, tmp))
        _place(
            self.cdr_dir / call.cdr_name,
            lambda tmp: tmp.write_text(json.dumps(call.document)),
        )

    def drop_all(self, calls: Iterable[CallSpec]) -> None:
        for call in calls:
            self.drop(call)

    def leftovers(self) -> dict[str, list[str]]:
        """Files still in the spool, by place (quarantine and pending separately)."""
        return {
            "cdr": _files(self.cdr_dir),
            "recordings": _files(self.recordings_dir),
            "pending": _files(self.pending_dir),
            "quarantine": _files(self.quarantine_dir),
        }


def _place(target: Path, write: Callable[[Path], object]) -> None:
    # A dot name the agent's patterns (*.json, *.wav) do not match, renamed when whole.
    temporary = target.with_name(f".{target.name}.part")
    write(temporary)
    temporary.replace(target)


def _files(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory) if entry.is_file())
    except FileNotFoundError:
        return []
