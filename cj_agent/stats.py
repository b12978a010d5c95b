"""What the agent has done so far: counters for logs, `STATUS=` and tests.

Tests (and anything else that must react to progress) wait for a condition instead
of sleeping: `await stats.wait_until(lambda s: s.calls_uploaded >= 3)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import trio


@dataclass
class AgentStats:
    """Counters since start; every change wakes `wait_until`."""

    polls: int = 0  # directory passes, all sources together
    calls_uploaded: int = 0  # AddCall acknowledged
    recordings_uploaded: int = 0  # UploadRecording acknowledged (new or duplicate)
    recordings_duplicate: int = 0  # ... of which the server already had
    recordings_late: int = 0  # calls uploaded without their recording (still awaited)
    recordings_already_on_server: int = 0  # CDR redone after a restart; nothing to send
    files_done: int = 0  # files deleted or archived after acknowledgement
    quarantined: int = 0  # files moved to a failed/ directory
    errors: int = 0  # unexpected failures (logged; the file stays for a retry)
    in_progress: int = 0  # CDRs and late recordings being handled now
    late_waiting: int = 0  # recordings awaited in pending/
    lines_read: int = 0  # lines of tailed files (Master.csv …) read, refused ones included
    lines_refused: int = 0  # ... of which could not be read (copied to failed/)
    tail_commits: int = 0  # durable offsets of tailed files written
    recording_lookups: int = 0  # `uniqueid:` lookups resolved
    recording_lookup_entries: int = 0  # ... directory entries they looked at
    recording_tree_walks: int = 0  # ... of which walked the recordings tree
    _changed: trio.Event = field(default_factory=trio.Event, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add to counters by name (`stats.add(quarantined=1)`) and wake waiters."""
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)
        self._changed.set()
        self._changed = trio.Event()

    def set(self, **values: int) -> None:
        """Set counters (gauges such as `in_progress`) and wake waiters."""
        for name, value in values.items():
            setattr(self, name, value)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[AgentStats], bool]) -> None:
        """Return once `condition(self)` holds (checked after every change)."""
        while not condition(self):
            await self._changed.wait()

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def summary(self) -> str:
        """One line for `systemctl status`."""
        return (
            f"{self.calls_uploaded} calls and {self.recordings_uploaded} recordings uploaded, "
            f"{self.quarantined} quarantined, {self.in_progress} in progress, "
            f"{self.late_waiting} late recordings awaited"
        )
