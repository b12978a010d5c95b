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
