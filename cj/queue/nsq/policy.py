"""Client policies without I/O: reconnect backoff, RDY distribution, poll jitter, and
which refusals are worth retrying."""

from __future__ import annotations

import random
from typing import Final

from cj.queue.nsq.errors import NsqAuthError, NsqConfigError, NsqError

# nsqd's answers to SUB/IDENTIFY that the same request would get again.
_FATAL_CODES: Final = frozenset({"E_BAD_TOPIC", "E_BAD_CHANNEL", "E_BAD_BODY"})


def is_fatal(error: Exception, *, ever_subscribed: bool) -> bool:
    """A refusal that reconnecting with the same settings cannot cure.

    E_AUTH_FAILED is also nsqd's answer when its auth server is unreachable, so it is
    fatal only at start: once subscribed, it is retried like a lost connection.
    """
    if isinstance(error, NsqConfigError):
        return True
    if isinstance(error, NsqAuthError):
        return error.code != "E_AUTH_FAILED" or not ever_subscribed
    return isinstance(error, NsqError) and error.code in _FATAL_CODES


class Backoff:
    """Exponential backoff with jitter, capped at `max_s`.

    The n-th consecutive failure waits `min(max_s, initial_s * multiplier**n)`, shortened
    by up to `jitter` (a fraction) at random, so many clients that lost the same nsqd do
    not reconnect in lockstep and no delay ever exceeds the cap. With `immediate_first`
    the first failure after a success is retried at once (a dropped connection to a
    healthy nsqd should come back without delay), and the schedule starts after it.
    """

    def __init__(
        self,
        *,
        max_s: float,
        initial_s: float = 1.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        immediate_first: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if max_s <= 0 or initial_s <= 0 or multiplier < 1 or not 0 <= jitter < 1:
            raise ValueError(
                "backoff needs max_s > 0, initial_s > 0, multiplier >= 1 and 0 <= jitter < 1"
            )
        self.max_s = max_s
        self.initial_s = min(initial_s, max_s)
        self.multiplier = multiplier
        self.jitter = jitter
        self.immediate_first = immediate_first
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; counts one more failure."""
        exponent = self.failures - 1 if self.immediate_first else self.failures
        self.failures += 1
        if exponent < 0:
            return 0.0
        exponent = min(exponent, 64)  # beyond that the cap has long been reached
        raw = min(self.max_s, self.initial_s * self.multiplier**exponent)
        return raw * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """After a success: the next failure starts from `initial_s` again."""
        self.failures = 0


def distribute_rdy(max_in_flight: int, connections: int, *, limit: int | None = None) -> list[int]:
    """RDY counts for `connections` connections sharing `max_in_flight`.

    As even as possible, the remainder going to the first ones; every connection gets at
    least 1 so none starves (so with more connections than `max_in_flight` the total
    exceeds it), and none more than `limit` (nsqd's negotiated max_rdy_count).
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    if connections <= 0:
        return []
    base, extra = divmod(max_in_flight, connections)
    counts = [max(1, base + (1 if i < extra else 0)) for i in range(connections)]
    if limit is not None:
        counts = [min(count, max(limit, 1)) for count in counts]
    return counts


def jittered(interval_s: float, fraction: float, rng: random.Random | None = None) -> float:
    """`interval_s` moved by up to ±`fraction` of itself (lookupd polling, per NSQ's guide)."""
    r = (rng or random).random()
    return interval_s * (1.0 + fraction * (2.0 * r - 1.0))
