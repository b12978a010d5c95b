"""Lines of a tailed file to calls, and how far the file's offset may be committed (pure).

A call is the lines sharing a key (a linkedid). Lines arrive over time, so a call is
*due* (sent) once no new line came for it for `settle_s`; it then stays *open* for
`linger_s`: a late leg is merged in and the call sent again with every leg it has (an
idempotent upsert, last write wins, so each send must carry all legs).

The committed offset is where a restart resumes reading. It never passes the first
line of an open call, and never falls inside a call with lines on both sides of it
(`commit_offset` pulls it back to that call's first line), so after a restart every call
with a line past the offset is read again whole, and sent again identical (its uuid is
derived from the key: harmless). Lines already past a call's settle and linger are
forgotten.

Time is also counted in lines, so a backlog (a first start on a year of Master.csv)
streams through in bounded memory: a call is due once `settle_lines` lines came after
its last one, and forgotten once `linger_lines` did, whichever comes first.

A leg that comes after its call was forgotten makes a call of its own lines only, which
overwrites the earlier send: `linger_s` is the bound to choose generously.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SETTLE_LINES = 1000
LINGER_LINES = 20000


@dataclass
class OpenCall:
    """The lines of one call seen so far (each distinct line once)."""

    key: str
    first: int  # offset of the call's first line in the file
    last_end: int  # offset just past its last line
    lines: dict[bytes, tuple[int, Any]] = field(default_factory=dict)  # line → (offset, record)
    version: int = 0  # bumped by every new distinct line
    touched: float = 0.0  # when the last new line came
    acked: int = 0  # the version the server acknowledged (or that was quarantined)
    sending: int | None = None  # the version in flight
    last_line: int = 0  # the assembler's line count at its last line

    def records(self) -> list[Any]:
        """The records in file order."""
        return [record for _, record in sorted(self.lines.values(), key=lambda item: item[0])]

    def offsets(self) -> list[int]:
        return sorted(offset for offset, _ in self.lines.values())


class CallAssembler:
    """Open calls of one file, by key; see the module documentation."""

    def __init__(
        self,
        settle_s: float,
        linger_s: float,
        *,
        settle_lines: int = SETTLE_LINES,
        linger_lines: int = LINGER_LINES,
    ) -> None:
        self.settle_s = settle_s
        self.linger_s = max(linger_s, settle_s)
        self.settle_lines = settle_lines
        self.linger_lines = max(linger_lines, settle_lines)
        self.lines_seen = 0
        self.calls: dict[str, OpenCall] = {}

    def add(self, key: str, line: bytes, record: Any, start: int, end: int, now: float) -> bool:
        """Take one line at [start, end); False when the call already had it."""
        self.lines_seen += 1
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = OpenCall(key, start, end)
        if line in call.lines:
            return False
        call.lines[line] = (start, record)
        call.first = min(call.first, start)
        call.last_end = max(call.last_end, end)
        call.version += 1
        call.touched = now
        call.last_line = self.lines_seen
        return True

    def due(self, now: float, *, flush: bool = False) -> list[OpenCall]:
        """Calls to send now (all unsent ones with `flush`), marked as being sent."""
        ready = []
        for call in self.calls.values():
            if call.sending is not None or call.acked == call.version:
                continue
            if flush or self._quiet(call, now, self.settle_s, self.settle_lines):
                call.sending = call.version
                ready.append(call)
        return ready

    def sent(self, call: OpenCall, *, ok: bool = True) -> None:
        """The send of `call` finished: acknowledged (or quarantined: also done)."""
        version = call.sending
        call.sending = None
        if ok and version is not None:
            call.acked = max(call.acked, version)

    def close_quiet(self, now: float, read_position: int) -> int:
        """Forget acknowledged calls quiet for `linger_s` that lie before the committable
        offset; returns how many were forgotten."""
        commit = self.commit_offset(read_position, now)
        done = [
            key
            for key, call in self.calls.items()
            if call.acked == call.version
            and call.sending is None
            and self._quiet(call, now, self.linger_s, self.linger_lines)
            and call.last_end <= commit
        ]
        for key in done:
            del self.calls[key]
        return len(done)

    def commit_offset(self, read_position: int, now: float) -> int:
        """How far a restart may skip: see the module documentation."""
        offset = read_position
        for call in self._holding(now):
            offset = min(offset, call.first)
        changed = True
        while changed:  # a call straddling the offset pulls it back to its first line
            changed = False
            for call in self.calls.values():
                if call.first < offset < call.last_end:
                    offset = call.first
                    changed = True
        return offset

    def _holding(self, now: float) -> Iterator[OpenCall]:
        for call in self.calls.values():
            if call.acked != call.version or not self._quiet(
                call, now, self.linger_s, self.linger_lines
            ):
                yield call

    def _quiet(self, call: OpenCall, now: float, seconds: float, lines: int) -> bool:
        return now - call.touched >= seconds or self.lines_seen - call.last_line >= lines

    def next_event(self, now: float) -> float | None:
        """When the next call becomes due or closable (None: nothing open)."""
        times = []
        for call in self.calls.values():
            if call.sending is not None:
                continue
            if call.acked != call.version:
                times.append(call.touched + self.settle_s)
            else:
                times.append(call.touched + self.linger_s)
        return min(times) if times else None

    def clear(self) -> None:
        """The file was rotated or truncated (and every call sent): start afresh."""
        self.calls.clear()
