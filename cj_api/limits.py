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

Sans-IO apart from the clock, which is injectable (tests use a fake one), and the
state's storage: this process's memory, or with several workers a table every worker
maps (cj_api.limits_table), so that a token's limits are the whole service's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from cj.config import ApiConfig
from cj.errors import ErrorCode, ServiceError
from cj_api.limits_table import LimitTable, MemoryState

__all__ = [
    "Limit",
    "LimitExceeded",
    "SharedCapacity",
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

_T = TypeVar("_T")


class LimitState(Protocol):
    """One (kind, token)'s state: the bucket, and the requests holding a slot."""

    tokens: float  # NaN until first used
    refilled_at: float

    def active(self) -> int: ...

    def add_active(self, delta: int) -> None: ...


class TokenLimits:
    """The limits of one operation kind (`what`: "search", "download") for every token.

    The state lives in this process's memory, or in `table` (cj_api.limits_table),
    shared by every worker of one supervisor so that a token's limits hold across them.
    """

    def __init__(
        self,
        what: str,
        default: Limit,
        overrides: dict[str, Limit] | None = None,
        clock: Callable[[], float] = time.monotonic,
        table: LimitTable | None = None,
    ) -> None:
        self._what = what
        self._default = default
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._table = table
        self._states: dict[str, MemoryState] = {}

    def limit_for(self, token_name: str) -> Limit:
        return self._overrides.get(token_name, self._default)

    @contextmanager
    def admit(self, token_name: str, cost: float = 1.0) -> Iterator[None]:
        """Spend `cost` from the bucket and hold a slot for the block, or raise
        LimitExceeded."""
        limit = self.limit_for(token_name)

        def enter(state: LimitState) -> None:
            self._check_slot(token_name, limit, state)
            self._take(token_name, limit, cost, state)
            state.add_active(1)

        self._with_state(token_name, enter)
        try:
            yield
        finally:
            self._with_state(token_name, _release)

    @contextmanager
    def hold(self, token_name: str) -> Iterator[None]:
        """Hold one of `token_name`'s concurrent slots for the block (no bucket)."""
        limit = self.limit_for(token_name)

        def enter(state: LimitState) -> None:
            self._check_slot(token_name, limit, state)
            state.add_active(1)

        self._with_state(token_name, enter)
        try:
            yield
        finally:
            self._with_state(token_name, _release)

    def take(self, token_name: str, cost: float = 1.0) -> None:
        """Spend `cost` requests from `token_name`'s bucket, or raise LimitExceeded.

        A cost above the burst is charged as the burst (it must stay possible)."""
        limit = self.limit_for(token_name)
        if limit.rate_per_s:
            self._with_state(token_name, lambda s: self._take(token_name, limit, cost, s))

    def active(self, token_name: str) -> int:
        """How many of `token_name`'s requests hold a slot (in every worker)."""
        return self._with_state(token_name, _active)

    def _with_state(self, token_name: str, action: Callable[[LimitState], _T]) -> _T:
        """`action` on the token's state, under the table's lock if shared (a plain
        call, not a context manager: this runs twice a request, see bench/limits.py)."""
        table = self._table
        if table is None:
            state = self._states.get(token_name)
            if state is None:
                # Token names come from configuration, so this dict is bounded by it.
                state = self._states[token_name] = MemoryState()
            return action(state)
        table.lock()
        try:
            return action(table.state((self._what, token_name)))
        finally:
            table.unlock()

    def _check_slot(self, token_name: str, limit: Limit, state: LimitState) -> None:
        if limit.concurrency and state.active() >= limit.concurrency:
            raise LimitExceeded(
                f"too many {self._what} requests at once for token {token_name!r} "
                f"(limit {limit.concurrency}); retry when one has finished",
                _CONCURRENCY_RETRY_S,
            )

    def _take(self, token_name: str, limit: Limit, cost: float, state: LimitState) -> None:
        if not limit.rate_per_s:
            return
        cost = min(max(cost, 1.0), float(limit.burst))
        now = self._clock()  # read under the lock: refills never go back in time
        if math.isnan(state.tokens):  # first use: the bucket starts full
            state.tokens, state.refilled_at = float(limit.burst), now
        tokens = min(
            float(limit.burst),
            state.tokens + max(0.0, now - state.refilled_at) * limit.rate_per_s,
        )
        state.refilled_at = now
        if tokens < cost:
            state.tokens = tokens
            wait = (cost - tokens) / limit.rate_per_s
            raise LimitExceeded(
                f"too many {self._what} requests for token {token_name!r} (limit "
                f"{limit.rate_per_s:g} per second, bursts of {limit.burst}); "
                f"retry in {wait:.1f} s",
                wait,
            )
        state.tokens = tokens - cost


class SharedCapacity:
    """The non-blocking half of a trio.CapacityLimiter (what `cj_api.export` uses),
    counted in a LimitTable so that `total` holds across every worker."""

    def __init__(self, what: str, total: int, table: LimitTable) -> None:
        self.total_tokens = total
        self._key = (what, "")
        self._table = table

    @property
    def available_tokens(self) -> int:
        with self._table.locked():
            return max(0, self.total_tokens - self._table.state(self._key).active())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        """Take a place, or raise trio.WouldBlock when all are taken (in any worker)."""
        with self._table.locked():
            state = self._table.state(self._key)
            if state.active() >= self.total_tokens:
                raise trio.WouldBlock
            state.add_active(1)

    def release_on_behalf_of(self, borrower: object) -> None:
        with self._table.locked():
            self._table.state(self._key).add_active(-1)


def _release(state: LimitState) -> None:
    state.add_active(-1)


def _active(state: LimitState) -> int:
    return state.active()


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
