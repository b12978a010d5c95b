"""Reading calls by uuid through `call_keys`, so that one month's partition is read.

`calls` is partitioned by month of started_at (sql/0006) and its primary key is
(uuid, started_at): by uuid alone, PostgreSQL probes every month's primary key. The
call's start is in `call_keys` (uuid PRIMARY KEY), so a lookup reads it first, in the
same statement, and the executor prunes the other months (tests/db/test_uuid_lookups.py).
"""

from __future__ import annotations

__all__ = ["BY_KEY", "MANY_BY_KEY"]

# One call, `c`, by the `%(uuid)s` parameter: appended to a query over `calls c` (the
# scalar subquery is an InitPlan, whose value prunes the Append at executor start).
BY_KEY = """
 WHERE c.uuid = %(uuid)s
   AND c.started_at = (SELECT started_at FROM call_keys WHERE uuid = %(uuid)s)"""

# Many calls: a FROM item naming the keys `k` and the calls `c` (with `columns` of them);
# the caller filters `k.uuid`. Each key probes its own month: OFFSET 0 keeps the LATERAL
# subquery apart from the join, so every key is a parameterised scan the executor prunes
# to one partition (a plain join may rather hash every month together).
MANY_BY_KEY = """call_keys k CROSS JOIN LATERAL (
    SELECT {columns} FROM calls c
     WHERE c.uuid = k.uuid AND c.started_at = k.started_at OFFSET 0) AS c"""
