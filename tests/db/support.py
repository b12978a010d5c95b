"""Helpers of the database tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from cj.db import Connection, Database

T = TypeVar("T")


async def run(db: Database, fn: Callable[[Connection], T]) -> T:
    """`fn` on one of the pool's connections, in a transaction, bounded in time."""
    with trio.fail_after(20):
        return await db.run(fn)


SIX_MONTHS_FROM = "2025-01-01 00:00+00"


def create_six_months(conn: Connection) -> None:
    """The month partitions of January to June 2025 (where the plan tests put calls)."""
    conn.execute(
        "SELECT cj_calls_create_partition(m) FROM generate_series("
        "%s::timestamptz, %s::timestamptz + interval '5 months', '1 month') AS m",
        (SIX_MONTHS_FROM, SIX_MONTHS_FROM),
    )
