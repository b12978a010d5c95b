"""The audit log: who tried to do what to which call, and what happened.

Changes of a call's privacy are written by a trigger (sql/0002_ownership_privacy.sql)
in the transaction that makes them; `set_audit_context` tells it who acts and why.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from cj.db.pool import Connection


def audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    call_uuid: uuid_module.UUID | None,
    result: str,
    detail: dict[str, Any] | None = None,
    address: str = "",
) -> None:
    conn.execute(
        """INSERT INTO audit_log (actor, action, call_uuid, result, detail, address)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (actor, action, call_uuid, result, Jsonb(detail or {}), address),
    )


PRIVACY_ACTION = "privacy"
MAX_REASON = 1000


def set_audit_context(conn: Connection, *, actor: str, reason: str) -> None:
    """Name the actor and the reason of the privacy changes this transaction makes.

    Transaction-local (`set_config(..., true)`): a pooled connection carries nothing
    over to the next transaction.
    """
    conn.execute(
        "SELECT set_config('cj.actor', %s, true), set_config('cj.reason', %s, true)",
        (actor, reason),
    )


@dataclass(frozen=True)
class AggregateKey:
    """What one aggregated audit row counts: attempts of `actor` from `address` with
    `result`, in the minute starting at `minute`."""

    action: str
    actor: str
    address: str
    result: str
    minute: datetime


@dataclass
class AggregateCount:
    count: int
    last_at: datetime
    detail: dict[str, Any]


def audit_aggregated(conn: Connection, counts: dict[AggregateKey, AggregateCount]) -> None:
    """Add `counts` to their minute's rows (one row per key, however many attempts)."""
    for key, value in counts.items():
        conn.execute(
            """INSERT INTO audit_log
                   (at, actor, action, result, detail, address, count, minute)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (action, actor, address, result, minute) WHERE minute IS NOT NULL
               DO UPDATE SET count = audit_log.count + EXCLUDED.count,
                             at = greatest(audit_log.at, EXCLUDED.at),
                             detail = EXCLUDED.detail""",
            (
                value.last_at,
                key.actor,
                key.action,
                key.result,
                Jsonb(value.detail),
                key.address,
                value.count,
                key.minute,
            ),
        )


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    call_uuid: uuid_module.UUID | None
    result: str
    detail: dict[str, Any]
    address: str = ""
    count: int = 1


def audit_entries(
    conn: Connection, call_uuid: uuid_module.UUID | None = None, limit: int = 100
) -> list[AuditEntry]:
    if call_uuid is None:
        rows = conn.execute(
            "SELECT at, actor, action, call_uuid, result, detail, address, count FROM audit_log "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT at, actor, action, call_uuid, result, detail, address, count FROM audit_log "
            "WHERE call_uuid = %s ORDER BY id DESC LIMIT %s",
            (call_uuid, limit),
        ).fetchall()
    return [AuditEntry(**row) for row in rows]
