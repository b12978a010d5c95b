"""Backfill progress: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import structlog
import trio
from tqdm import tqdm

log = structlog.get_logger(__name__)

LOG_EVERY_S = 10.0


class _Counters:
    def __init__(self) -> None:
        self.total = 0
        self.calls = 0
        self.bytes = 0
        self.started = time.monotonic()

    def rates(self) -> tuple[float, float]:
        """(calls/s, MB/s) since the start."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.calls / elapsed, self.bytes / 1e6 / elapsed


class BarProgress(_Counters):
    """A tqdm bar: calls done of total, rate and ETA; uploaded MB and MB/s beside it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.bar = tqdm(total=0, unit="call", file=stream, dynamic_ncols=True, smoothing=0.05)

    def set_total(self, calls: int) -> None:
        self.total = calls
        self.bar.reset(total=calls)
        self.started = time.monotonic()

    def advance(self, calls: int = 0, bytes_: int = 0) -> None:
        self.calls += calls
        self.bytes += bytes_
        if bytes_:
            _, mb_per_s = self.rates()
            text = f"{self.bytes / 1e6:.1f} MB, {mb_per_s:.1f} MB/s"
            self.bar.set_postfix_str(text, refresh=False)
        if calls:
            self.bar.update(calls)

    def close(self) -> None:
        self.bar.close()


class LogProgress(_Counters):
    """A `backfill_progress` log line every LOG_EVERY_S seconds (and at the end)."""

    def set_total(self, calls: int) -> None:
        self.total = calls
        self.started = time.monotonic()

    def advance(self, calls: int = 0, bytes_: int = 0) -> None:
        self.calls += calls
        self.bytes += bytes_

    def report(self) -> None:
        calls_per_s, mb_per_s = self.rates()
        remaining = self.total - self.calls
        eta = remaining / calls_per_s if calls_per_s > 0 else None
        log.info(
            "backfill_progress",
            done=self.calls,
            total=self.total,
            megabytes=round(self.bytes / 1e6, 1),
            calls_per_s=round(calls_per_s, 1),
            mb_per_s=round(mb_per_s, 2),
            eta_s=None if eta is None else round(eta),
        )

    async def run(self, every_s: float = LOG_EVERY_S) -> None:
        while True:
            await trio.sleep(every_s)
            self.report()


@asynccontextmanager
async def open_progress(stream: TextIO) -> AsyncIterator[BarProgress | LogProgress]:
    """A bar when `stream` is a terminal, else periodic log lines."""
    if stream.isatty():
        bar = BarProgress(stream)
        try:
            yield bar
        finally:
            bar.close()
        return
    progress = LogProgress()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.run)
        try:
            yield progress
        finally:
            nursery.cancel_scope.cancel()
            progress.report()
