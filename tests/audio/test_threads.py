"""The service's way in: `trio.to_thread.run_sync`, several encodes at once."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from cj.audio import EncodeResult, encode_wav_to_mp3
from tests.audio.helpers import chirp, decode_libsndfile, write_wav


async def test_concurrent_encodes_in_worker_threads(tmp_path: Path) -> None:
    sources = [
        write_wav(tmp_path / f"in{i}.wav", chirp(rate, 3.0, channels), rate, subtype)
        for i, (rate, channels, subtype) in enumerate(
            [(8000, 1, "ULAW"), (16000, 2, "PCM_16"), (48000, 1, "FLOAT"), (8000, 1, "GSM610")]
        )
    ]
    progress: dict[int, list[int]] = {i: [] for i in range(len(sources))}
    results: dict[int, EncodeResult] = {}

    def report(index: int, frames: int) -> None:
        # Called in the worker thread; hops back into Trio as the service will.
        trio.from_thread.run_sync(progress[index].append, frames)

    async def encode(index: int, src: Path) -> None:
        results[index] = await trio.to_thread.run_sync(
            partial(
                encode_wav_to_mp3,
                src,
                tmp_path / f"out{index}.mp3",
                progress=partial(report, index),
                block_frames=8192,
            )
        )

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index, src in enumerate(sources):
                nursery.start_soon(encode, index, src)

    for index, result in results.items():
        assert progress[index][-1] == result.frames
        assert progress[index] == sorted(progress[index])
        decoded = decode_libsndfile(tmp_path / f"out{index}.mp3")
        assert (decoded.channels, decoded.frames) == (2, result.frames)
    assert len(results) == len(sources)
