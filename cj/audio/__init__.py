"""Audio pipeline: any WAV libsndfile reads → stereo MP3 with exact-length LAME tag.

Public API (synchronous; call from Trio through `trio.to_thread.run_sync`):

- `encode_wav_to_mp3(src, dst, settings, *, progress=None) -> EncodeResult`
- `probe_wav(src) -> AudioInfo`
- `EncodeSettings`, `EncodeResult`, `AudioInfo`, `plan_output`
- `AudioError`, `UndecodableAudio` (permanent: mark the recording failed, keep the WAV)
"""

from __future__ import annotations

from cj.audio.encode import (
    EncodeResult,
    EncodeSettings,
    OutputPlan,
    encode_wav_to_mp3,
    plan_output,
)
from cj.audio.errors import AudioError, UndecodableAudio
from cj.audio.source import AudioInfo, probe_wav

__all__ = [
    "AudioError",
    "AudioInfo",
    "EncodeResult",
    "EncodeSettings",
    "OutputPlan",
    "UndecodableAudio",
    "encode_wav_to_mp3",
    "plan_output",
    "probe_wav",
]
