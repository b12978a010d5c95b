"""What the download watcher asks the database: which downloads may no longer go on.

A download is revoked when its call turned private, or its recording was purged or
deleted (the call with it). Migration 0003's triggers announce these changes on the
channel `REVOKED_CHANNEL`; `revocations` answers the same question by looking, for the
moments no listener was there to hear.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from psycopg.types.json import Jsonb

from cj.db.keys import MANY_BY_KEY
from cj.db.pool import Connection

REVOKED_CHANNEL = "cj_download_revoked"
REASONS = frozenset({"private", "purged", "deleted"})


def parse_notification(payload: str) -> tuple[uuid_module.UUID, str] | None:
    """`'<reason>:<uuid>'` → (uuid, reason); None for anything else."""
    reason, _, text = payload.partition(":")
    if reason not in REASONS:
        return None
    try:
        return uuid_module.UUID(text), reason
    except ValueError:
        return None


def revocations(
    conn: Connection, call_uuids: list[uuid_module.UUID]
) -> dict[uuid_module.UUID, str]:
    """The calls of `call_uuids` whose recording may not be downloaded now, with why."""
    if not call_uuids:
        return {}
    rows = conn.execute(
        f"""SELECT c.uuid, c.private, r.status
              FROM {MANY_BY_KEY.format(columns="c.uuid, c.private")}
              LEFT JOIN recordings r ON r.call_uuid = c.uuid
             WHERE k.uuid = ANY(%s)""",
        (call_uuids,),
    ).fetchall()
    found: dict[uuid_module.UUID, str] = {}
    for row in rows:
        if row["private"]:
            found[row["uuid"]] = "private"
        elif row["status"] is None:
            found[row["uuid"]] = "deleted"
        elif row["status"] == "purged":
            found[row["uuid"]] = "purged"
    for missing in set(call_uuids) - {row["uuid"] for row in rows}:
        found[missing] = "deleted"
    return found


def audit_download_start(
    conn: Connection,
    *,
    actor: str,
    call_uuid: uuid_module.UUID,
    address: str,
    detail: dict[str, Any],
    action: str = "download",
) -> str | None:
    """Record that a download's first bytes are ready to go, unless it was revoked in
    the meantime: then record that refusal instead and return its reason.

    The caller registers its watch before calling this, so a revocation committed after
    this transaction's snapshot reaches the watch as a notification.
    """
    reason = revocations(conn, [call_uuid]).get(call_uuid)
    result = "allowed" if reason is None else _refusal_result(reason)
    if reason is not None:
        detail = {**detail, "revoked": reason}
    conn.execute(
        """INSERT INTO audit_log (actor, action, call_uuid, result, detail, address)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (actor, action, call_uuid, result, Jsonb(detail), address),
    )
    return reason


def _refusal_result(reason: str) -> str:
    return "permission_denied" if reason == "private" else "gone"
