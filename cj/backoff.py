"""Backoff schedules (pure functions; the callers sleep).

`GrpcBackoff` is gRPC's connection backoff (doc/connection-backoff.md in grpc/grpc):
the first retry after 1 s, each next one 1.6 times longer, capped at 120 s, each
jittered by ±20 %. `exponential_delay` is the encoder's retry schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class GrpcBackoff:
    """Delays for retrying while a server is away; `reset()` after a success."""

    base_s: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    max_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    _current: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._current = (
            self.base_s if self._current == 0 else min(self._current * self.multiplier, self.max_s)
        )
        return self._current * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._current = 0.0


def exponential_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number `attempt` (1-based): base · 2^(attempt-1), capped, jittered."""
    raw = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    return raw * (rng or random).uniform(1 - jitter, 1 + jitter)
