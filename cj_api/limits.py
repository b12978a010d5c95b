"""Per-token limits on searches and downloads: how many at once, and how fast.

One token flooding the API must not slow down another token's ordinary search. Each
token holds, per operation kind, a concurrency cap and a token bucket (`rate_per_s`
refilled continuously, at most `burst` saved up). A request over either limit is refused
at once (never queued: a queue is itself a resource the flood would hold) with
RESOURCE_EXHAUSTED and a retry-after hint: REST answers 429 with `Retry-After`, gRPC
RESOURCE_EXHAUSTED with the trailer `retry-after`.

A search is charged by the rows it asks for (`search_cost`: one per 100, at least one),
because a page of 1,000 calls costs the server ten times the work of a page of 100
(decoding the rows, encoding the answer: Python work that holds the interpreter lock
and delays every other client's request).

Sans-IO apart from the clock, which is injectable (tests use a fake one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from cj.config import ApiConfig
from cj.errors import ErrorCode, ServiceError

__all__ = [
    "Limit",
    "LimitExceeded",
    "TokenLimits",
    "download_limit",
    "search_cost",
    "search_limit",
    "slow_refusal",
]


@dataclass(frozen=True)
class Limit:
    """One operation kind's limits for one token; 0 disables that part."""

    concurrency: int
    rate_per_s: float
    burst: int


class LimitExceeded(ServiceError):
    """RESOURCE_EXHAUSTED with the seconds after which the request may succeed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(ErrorCode.RESOURCE_EXHAUSTED, message, retry_after_s=retry_after_s)


# A token at its concurrency limit is told to come back after this long.
_CONCURRENCY_RETRY_S = 1.0


@dataclass
class _State:
    tokens: float
    refilled_at: float
    active: int = 0


class TokenLimits:
    """The limits of one operation kind (`what`: "search", "download") for every token."""

    def __init__(
        self,
        what: str,
        default: Limit,
        overrides: dict[str, Limit] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._default = default
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._states: dict[str, _State] = {}

    def limit_for(self, token_name: str) -> Limit:
        return self._overrides.get(token_name, self._default)

    @contextmanager
    def admit(self, token_name: str, cost: float = 1.0) -> Iterator[None]:
        """Spend `cost` from the bucket and hold a slot for the block, or raise
        LimitExceeded."""
        limit = self.limit_for(token_name)
        self._check_slot(token_name, limit)
        self.take(token_name, cost)
        with self.hold(token_name):
            yield

    @contextmanager
    def hold(self, token_name: str) -> Iterator[None]:
        """Hold one of `token_name`'s concurrent slots for the block (no bucket)."""
        limit = self.limit_for(token_name)
        self._check_slot(token_name, limit)
        state = self._state(token_name, limit)
        state.active += 1
        try:
            yield
        finally:
            state.active -= 1
            self._forget_if_idle(token_name, state, limit)

    def _check_slot(self, token_name: str, limit: Limit) -> None:
        if limit.concurrency and self.active(token_name) >= limit.concurrency:
            raise LimitExceeded(
                f"too many {self._what} requests at once for token {token_name!r} "
                f"(limit {limit.concurrency}); retry when one has finished",
                _CONCURRENCY_RETRY_S,
            )

    def take(self, token_name: str, cost: float = 1.0) -> None:
        """Spend `cost` requests from `token_name`'s bucket, or raise LimitExceeded.

        A cost above the burst is charged as the burst (it must stay possible)."""
        limit = self.limit_for(token_name)
        if not limit.rate_per_s:
            return
        cost = min(max(cost, 1.0), float(limit.burst))
        state = self._state(token_name, limit)
        now = self._clock()
        state.tokens = min(
            float(limit.burst), state.tokens + (now - state.refilled_at) * limit.rate_per_s
        )
        state.refilled_at = now
        if state.tokens < cost:
            wait = (cost - state.tokens) / limit.rate_per_s
            raise LimitExceeded(
                f"too many {self._what} requests for token {token_name!r} (limit "
                f"{limit.rate_per_s:g} per second, bursts of {limit.burst}); "
                f"retry in {wait:.1f} s",
                wait,
            )
        state.tokens -= cost

    def active(self, token_name: str) -> int:
        state = self._states.get(token_name)
        return state.active if state is not None else 0

    def _state(self, token_name: str, limit: Limit) -> _State:
        state = self._states.get(token_name)
        if state is None:
            # Token names come from configuration, so this dict is bounded by it.
            state = self._states[token_name] = _State(float(limit.burst), self._clock())
        return state

    def _forget_if_idle(self, token_name: str, state: _State, limit: Limit) -> None:
        if not limit.rate_per_s and state.active == 0:
            self._states.pop(token_name, None)


def search_limit(config: ApiConfig) -> Limit:
    """The per-token search limit configured in `api.search_*_per_token`."""
    return Limit(
        config.search_concurrency_per_token,
        config.search_rate_per_token,
        config.search_burst_per_token,
    )


def download_limit(config: ApiConfig) -> Limit:
    """The per-token download limit configured in `api.download_*_per_token`."""
    return Limit(
        config.download_concurrency_per_token,
        config.download_rate_per_token,
        config.download_burst_per_token,
    )


ROWS_PER_SEARCH_REQUEST = 100


def search_cost(limit: int) -> float:
    """What a search asking for `limit` rows costs from the bucket (1 per 100 rows)."""
    return max(1.0, limit / ROWS_PER_SEARCH_REQUEST)


async def slow_refusal(error: LimitExceeded, delay_s: float) -> None:
    """Wait before answering `error`: `delay_s` at most, never past its retry-after.

    A client that ignores Retry-After and asks again at once would otherwise keep the
    server busy answering 429s, which slows every other client down as much as the
    work the limit refused (measured: bench/flood.py). Waiting holds no slot.
    """
    wait = min(delay_s, error.retry_after_s or 0.0)
    if wait > 0:
        await trio.sleep(wait)
