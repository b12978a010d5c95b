"""Directory watching by polling: when to look again, and which files are ready.

Two small pieces of logic without I/O, tested synchronously:

- `IdlePoll`: the poll interval starts at the floor, doubles with every idle poll up to
  the ceiling, and snaps back to the floor as soon as something happens.
- `SettleTracker`: a file is ready once its size and mtime stayed unchanged for
  `settle_s` (FreeSWITCH writes CDRs in place, so a file that is still growing must
  not be read). It keeps three numbers per file for at most `capacity` files, so a
  backlog of 100,000 files costs no more memory than one of `capacity`.

`scan_directory` is the I/O around them: one `os.scandir` pass (a generator, nothing
listed is kept) that feeds the tracker and returns at most `limit` ready names. It is
synchronous and meant to run in a worker thread.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class IdlePoll:
    """The interval before the next poll: `floor_s` while busy, growing ×`factor`
    per idle poll up to `ceiling_s`."""

    floor_s: float
    ceiling_s: float
    factor: float = 2.0
    _current: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.ceiling_s:
            raise ValueError(
                f"poll interval floor {self.floor_s} and ceiling {self.ceiling_s}: "
                "need 0 < floor <= ceiling"
            )
        if self.factor < 1:
            raise ValueError(f"poll backoff factor must be >= 1, not {self.factor}")

    def next_interval(self, *, busy: bool) -> float:
        """The wait after a poll that found work (`busy`) or found nothing."""
        if busy or self._current == 0.0:
            self._current = self.floor_s
        else:
            self._current = min(self._current * self.factor, self.ceiling_s)
        return self._current


@dataclass(slots=True)
class _Seen:
    size: int
    mtime_ns: int
    since: float  # when this size and mtime were first observed
    scan: int  # the last scan that saw the file


class SettleTracker:
    """Which files kept their size and mtime for `settle_s` (times from one clock).

    Call `begin_scan()`, then `observe()` for each file present, then `end_scan()`,
    which forgets files that were not seen (they were removed or renamed).
    """

    def __init__(self, settle_s: float, capacity: int) -> None:
        if settle_s < 0:
            raise ValueError(f"settle time must be >= 0, not {settle_s}")
        if capacity < 1:
            raise ValueError(f"tracker capacity must be >= 1, not {capacity}")
        self.settle_s = settle_s
        self.capacity = capacity
        self._files: dict[str, _Seen] = {}
        self._scan = 0

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    @property
    def full(self) -> bool:
        return len(self._files) >= self.capacity

    def begin_scan(self) -> None:
        self._scan += 1

    def observe(self, name: str, size: int, mtime_ns: int, now: float) -> bool | None:
        """Record a sighting; True when the file is ready, False when it is settling
        (new or changed: activity), None when it is settling unchanged or could not be
        tracked because the tracker is full."""
        seen = self._files.get(name)
        if seen is None:
            if self.full:
                return None
            self._files[name] = seen = _Seen(size, mtime_ns, now, self._scan)
            return self.settle_s == 0
        seen.scan = self._scan
        if seen.size != size or seen.mtime_ns != mtime_ns:
            seen.size, seen.mtime_ns, seen.since = size, mtime_ns, now
            return self.settle_s == 0
        return True if now - seen.since >= self.settle_s else None

    def forget(self, name: str) -> None:
        """Stop tracking `name` (it was handed over for processing)."""
        self._files.pop(name, None)

    def end_scan(self) -> None:
        gone = [name for name, seen in self._files.items() if seen.scan != self._scan]
        for name in gone:
            del self._files[name]


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regex for a list of shell patterns (`*.json`), matched case-sensitively."""
    if not patterns:
        raise ValueError("at least one file pattern is needed")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class ScanResult:
    """What one pass over a directory found.

    ready: names ready for processing, at most the `limit` asked for.
    settling: matching files that are not ready yet (new, growing, or waiting out
        the settle time), including those the tracker had no room for.
    changed: whether any file was new or changed since the last pass (activity).
    more: ready files were left out because of the limit.
    """

    ready: list[str]
    settling: int
    changed: bool
    more: bool

    @property
    def busy(self) -> bool:
        return bool(self.ready) or self.settling > 0 or self.changed


def scan_directory(
    directory: Path,
    pattern: re.Pattern[str],
    tracker: SettleTracker,
    now: float,
    *,
    skip: Container[str] = frozenset(),
    limit: int,
) -> ScanResult:
    """One polling pass over `directory` (not recursive; regular files matching
    `pattern` whose names are not in `skip`). A missing directory is empty."""
    ready: list[str] = []
    settling = 0
    changed = False
    more = False
    tracker.begin_scan()
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        entries = None
    if entries is not None:
        with entries:
            for entry in entries:
                name = entry.name
                if not pattern.match(name) or name in skip:
                    continue
                try:
                    if not entry.is_file():
                        continue
                    stat = entry.stat()
                except FileNotFoundError:  # removed between listing and stat
                    continue
                verdict = tracker.observe(name, stat.st_size, stat.st_mtime_ns, now)
                if verdict is True:
                    if len(ready) < limit:
                        ready.append(name)
                    else:
                        more = True
                        continue
                    tracker.forget(name)
                    continue
                settling += 1
                if verdict is False:
                    changed = True
    tracker.end_scan()
    return ScanResult(ready=ready, settling=settling, changed=changed, more=more)
