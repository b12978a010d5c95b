"""Deadlines for request bodies (REST uploads and JSON bodies, gRPC client streams).

A body must keep moving. Three rules, whichever comes first ends it:

- idle: nothing received for `idle_timeout_s`;
- rate: after the first `rate_grace_s`, fewer than `min_rate_bytes_per_s` bytes per
  second on average since the body began (so a client sending a byte every 20 s is cut
  after the grace window, while a brief stall of a fast upload is not);
- total: the body took longer than `timeout_s`.

`BodyClock` is sans-IO: told when bytes arrive, it answers when the body will be too
late if nothing more comes, and which rule that is. Callers wait for the next chunk
with `trio.fail_at(clock.deadline)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BodyClock", "BodyLimits", "BodyTooSlow"]


@dataclass(frozen=True)
class BodyLimits:
    idle_timeout_s: float = 60.0
    min_rate_bytes_per_s: float = 1024.0  # 0: no rate rule
    rate_grace_s: float = 30.0
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "timeout_s"):
            value = getattr(self, name)
            if not value > 0 or math.isnan(value):
                raise ValueError(f"{name} must be > 0, not {value}")
        for name in ("min_rate_bytes_per_s", "rate_grace_s"):
            value = getattr(self, name)
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{name} must be finite and >= 0, not {value}")


class BodyTooSlow(Exception):
    """A body broke one of the rules; the message says which, for the client."""


class BodyClock:
    """One body's progress against `limits`; times are the caller's clock (trio's)."""

    def __init__(self, limits: BodyLimits, started: float) -> None:
        self.limits = limits
        self.started = started
        self.last = started
        self.received = 0

    def receive(self, size: int, now: float) -> None:
        """`size` more bytes arrived at `now`."""
        self.received += size
        self.last = now

    @property
    def deadline(self) -> float:
        """When the body breaks a rule unless more bytes arrive before."""
        limits = self.limits
        candidates = [self.started + limits.timeout_s, self.last + limits.idle_timeout_s]
        if limits.min_rate_bytes_per_s > 0:
            # received >= rate * elapsed holds until elapsed = received / rate.
            rate_due = self.started + max(
                limits.rate_grace_s, self.received / limits.min_rate_bytes_per_s
            )
            candidates.append(rate_due)
        return min(candidates)

    def reason(self, now: float) -> str:
        """Which rule the body broke at `now` (call once `now` reached the deadline)."""
        limits = self.limits
        if now >= self.started + limits.timeout_s:
            return f"the request body took longer than {limits.timeout_s:g} s"
        if now >= self.last + limits.idle_timeout_s:
            return f"the request body stalled: nothing received for {limits.idle_timeout_s:g} s"
        return (
            f"the request body is too slow: {self.received} bytes in "
            f"{now - self.started:.1f} s, under the minimum of "
            f"{limits.min_rate_bytes_per_s:g} bytes/s"
        )
