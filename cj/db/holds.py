"""Legal holds: calls whose recordings retention never purges (`cj hold`, DESIGN §9).

A hold is placed and lifted by an operator with a reason; both are audited in the same
transaction as the change. `purgeable` (cj/db/recordings.py) leaves held calls out.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from datetime import datetime

from cj.db.audit import audit
from cj.db.pool import Connection
from cj.db.recordings import lock_call

MAX_REASON = 1000


class HoldError(ValueError):
    """A hold request is invalid; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class Hold:
    call_uuid: uuid_module.UUID
    reason: str
    held_by: str
    held_at: datetime


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise HoldError("reason", "is required: say why (a case number, a request)")
    if "\x00" in reason:
        raise HoldError("reason", "contains a NUL character")
    if len(reason) > MAX_REASON:
        raise HoldError("reason", f"longer than {MAX_REASON} characters")
    return reason


def add_hold(conn: Connection, call_uuid: uuid_module.UUID, *, reason: str, actor: str) -> bool:
    """Hold a call; False when it was already held (the first reason stays)."""
    reason = _check_reason(reason)
    lock_call(conn, call_uuid)  # a purge of this call in progress finishes first
    row = conn.execute(
        """INSERT INTO legal_holds (call_uuid, reason, held_by) VALUES (%s, %s, %s)
           ON CONFLICT (call_uuid) DO NOTHING RETURNING call_uuid""",
        (call_uuid, reason, actor),
    ).fetchone()
    audit(
        conn,
        actor=actor,
        action="hold_add",
        call_uuid=call_uuid,
        result="added" if row is not None else "already_held",
        detail={"reason": reason},
    )
    return row is not None


def remove_hold(
    conn: Connection, call_uuid: uuid_module.UUID, *, reason: str, actor: str
) -> Hold | None:
    """Lift a hold; the hold that was lifted, or None when the call was not held."""
    reason = _check_reason(reason)
    row = conn.execute(
        """DELETE FROM legal_holds WHERE call_uuid = %s
           RETURNING call_uuid, reason, held_by, held_at""",
        (call_uuid,),
    ).fetchone()
    audit(
        conn,
        actor=actor,
        action="hold_remove",
        call_uuid=call_uuid,
        result="removed" if row is not None else "not_held",
        detail={"reason": reason, "held_for": row["reason"] if row is not None else None},
    )
    return Hold(**row) if row is not None else None


def list_holds(conn: Connection, *, limit: int = 1000) -> list[Hold]:
    rows = conn.execute(
        "SELECT call_uuid, reason, held_by, held_at FROM legal_holds ORDER BY held_at, call_uuid "
        "LIMIT %s",
        (limit,),
    ).fetchall()
    return [Hold(**row) for row in rows]
