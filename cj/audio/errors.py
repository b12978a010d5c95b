"""The audio package's errors: one family, translated from libsndfile/lameenc where they occur."""

from __future__ import annotations


class AudioError(Exception):
    """Base of every failure of the audio pipeline (other than OSError on the files)."""


class UndecodableAudio(AudioError):
    """The input is not audio we can decode (random bytes, unsupported codec, no frames).

    Permanent: retrying the same bytes gives the same answer, so the recording is marked
    failed with `str(exc)` as the reason and its WAV is kept.
    """
