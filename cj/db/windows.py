"""Searches without a narrow interval, run over widening windows of time, newest first.

`calls` is partitioned by month (sql/0006). A search the planner cannot prune (a phone
or extension, no `start`) is planned and run once per month partition, and it costs
the more months there are. Searches are newest first (`ORDER BY started_at DESC, uuid
DESC LIMIT n + 1`), so the same search can be run over disjoint windows of time, the
newest first, stopping as soon as `n + 1` rows are in: the rows concatenated in window
order are exactly the single query's, and so is the next page's token.

    [anchor's month - 1, +inf)  then  [month - 3, month - 1)  then  [month - 12, month - 3)
    then  (-inf, month - 12)

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

# Months back from the anchor's month where the windows are cut.
STEPS: tuple[int, ...] = (1, 3, 12)

T = TypeVar("T")


def _months_back(at: datetime, months: int) -> datetime:
    at = at.astimezone(UTC)
    index = at.year * 12 + (at.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def search_windows(query: SearchQuery, now: datetime | None = None) -> list[Window]:
    """The windows `query` runs over, newest first; `[ALL_TIME]` when one is enough."""
    bounds = [datetime.now(UTC) if now is None else now]
    if query.end is not None:
        bounds.append(query.end)
    cursor = query.cursor()
    if cursor is not None:
        bounds.append(cursor.started_at)
    anchor = min(bounds)
    cuts = [_months_back(anchor, months) for months in STEPS]
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
