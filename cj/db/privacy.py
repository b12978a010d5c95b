"""The deliberate change of a call's privacy (role admin, `cj calls privacy`).

Ingest may only make a call private (cj.db.calls); making it public again, or
protecting it on purpose, is this operation, always with an actor and a reason, and
always audited in its own transaction: the trigger of sql/0002 writes the row of a
change, and a request that changed nothing is recorded here as `unchanged`.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass

from cj.db.audit import MAX_REASON, PRIVACY_ACTION, audit, set_audit_context
from cj.db.keys import BY_KEY
from cj.db.pool import Connection

__all__ = ["PrivacyChange", "set_call_privacy"]


@dataclass(frozen=True)
class PrivacyChange:
    """What a privacy request did: the call's privacy now, and whether it changed."""

    call_uuid: uuid_module.UUID
    private: bool
    changed: bool


def set_call_privacy(
    conn: Connection,
    call_uuid: uuid_module.UUID,
    *,
    private: bool,
    actor: str,
    reason: str,
) -> PrivacyChange | None:
    """Make the call private or public; None when there is no such call.

    The row is locked first, so concurrent requests are applied one after the other
    and each audit row says what its own request did.
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValueError(f"the reason must be 1 to {MAX_REASON} characters")
    with conn.transaction():  # a savepoint inside the caller's transaction
        return _set_privacy(conn, call_uuid, private=private, actor=actor, reason=reason)


def _set_privacy(
    conn: Connection, call_uuid: uuid_module.UUID, *, private: bool, actor: str, reason: str
) -> PrivacyChange | None:
    # Through the call's key, so that only its month's partition is read (sql/0006).
    row = conn.execute(
        "SELECT c.private, c.started_at FROM calls c" + BY_KEY + " FOR UPDATE",
        {"uuid": call_uuid},
    ).fetchone()
    if row is None:
        return None
    if row["private"] == private:
        audit(
            conn,
            actor=actor,
            action=PRIVACY_ACTION,
            call_uuid=call_uuid,
            result="unchanged",
            detail={"private": private, "was_private": private, "reason": reason},
        )
        return PrivacyChange(call_uuid, private, changed=False)
    set_audit_context(conn, actor=actor, reason=reason)
    conn.execute(
        "UPDATE calls SET private = %s, updated_at = now() WHERE uuid = %s AND started_at = %s",
        (private, call_uuid, row["started_at"]),  # the row locked above: it cannot move
    )
    return PrivacyChange(call_uuid, private, changed=True)
