"""Searches without a narrow interval, run over widening windows of time, newest first.

`calls` is partitioned by month (sql/0006). A search the planner cannot prune (a phone
or extension, no `start`) is planned and run once per month partition, and it costs
the more months there are. Searches are newest first (`ORDER BY started_at DESC, uuid
DESC LIMIT n + 1`), so the same search can be run over disjoint windows of time, the
newest first, stopping as soon as `n + 1` rows are in: the rows concatenated in window
order are exactly the single query's, and so is the next page's token.

    [anchor's month - 1, +inf)  then  (-inf, anchor's month - 1)

(`STEPS`: the months back where the windows are cut; (1, 3, 12) would make four.)

`anchor` is the earliest of the query's `end`, its cursor's `started_at` and now; the
windows are cut at UTC month starts, as the partitions are. The first window is open
above (calls may be dated ahead) and the last below (odd dates in the default
partition), so they cover all time whatever `now` is; windows at or below the query's
`start` are dropped. A search whose interval spans no boundary runs as one window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from cj.db.calls import SearchQuery

# (lower bound inclusive, upper bound exclusive); None: unbounded.
Window = tuple[datetime | None, datetime | None]
ALL_TIME: Window = (None, None)

# Months back from the anchor's month where the windows are cut. bench/search.py
# (200,000 calls over the last year): a number with thousands of calls, whose page the
# first window fills, took 0.28-0.35x the single query's time with (1,) and 0.30-0.38x
# with (1, 3, 12); a subscriber with a few calls, which reads every window, 1.30-1.41x
# with (1,) and 1.6-2.1x with (1, 3, 12) (one planned statement more per window).
STEPS: tuple[int, ...] = (1,)

T = TypeVar("T")


def _months_back(at: datetime, months: int) -> datetime:
    at = at.astimezone(UTC)
    index = at.year * 12 + (at.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def search_windows(
    query: SearchQuery, now: datetime | None = None, steps: tuple[int, ...] | None = None
) -> list[Window]:
    """The windows `query` runs over, newest first; `[ALL_TIME]` when one is enough."""
    bounds = [datetime.now(UTC) if now is None else now]
    if query.end is not None:
        bounds.append(query.end)
    cursor = query.cursor()
    if cursor is not None:
        bounds.append(cursor.started_at)
    anchor = min(bounds)
    cuts = [_months_back(anchor, months) for months in (STEPS if steps is None else steps)]
    if query.start is not None:
        cuts = [cut for cut in cuts if cut > query.start]
    if not cuts:
        return [ALL_TIME]
    uppers: list[datetime | None] = [None, *cuts]
    lowers: list[datetime | None] = [*cuts, None]
    return list(zip(lowers, uppers, strict=True))


def collect(
    query: SearchQuery,
    run: Callable[[Window, int], list[T]],
    *,
    windowed: bool = True,
    now: datetime | None = None,
) -> list[T]:
    """Up to `query.limit + 1` rows: `run(window, limit)` per window, newest first,
    until enough are in (`windowed=False`: one run over all time, the baseline)."""
    wanted = query.limit + 1
    rows: list[T] = []
    for window in search_windows(query, now) if windowed else [ALL_TIME]:
        rows += run(window, wanted - len(rows))
        if len(rows) >= wanted:
            break
    return rows
