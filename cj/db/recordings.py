"""Recordings: the state machine uploaded → encoding → stored | failed (→ purged).

Every transition is one conditional UPDATE, so concurrent API instances, encoders
and the reconciler cannot move a recording backwards or past a state it is not in.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cj.db.audit import audit
from cj.db.calls import row_to_recording
from cj.db.pool import Connection
from cj.model import Recording, RecordingStatus

MAX_ERROR_LENGTH = 2000

_COLUMNS = """call_uuid, status, original_name, original_size, original_sha256,
    original_storage, original_key, storage, key, size, sha256, content_type, duration_ms,
    sample_rate, channels, attempts, last_error, created_at, updated_at"""


def _to_recording(row: dict[str, Any] | None) -> Recording | None:
    return row_to_recording(row, prefix="") if row is not None else None


class CreateOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"  # same content already recorded for this call
    CONFLICT = "conflict"  # the call already has a different recording


@dataclass(frozen=True)
class Created:
    outcome: CreateOutcome
    recording: Recording


def get_recording(conn: Connection, call_uuid: uuid_module.UUID) -> Recording | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM recordings WHERE call_uuid = %s", (call_uuid,)
    ).fetchone()
    return _to_recording(row)


def create_recording(
    conn: Connection,
    call_uuid: uuid_module.UUID,
    *,
    original_name: str,
    size: int,
    sha256: str,
    storage: str,
    key: str,
) -> Created:
    """Record an uploaded original; idempotent for identical content.

    The caller must hold the call row (it exists: a foreign key enforces it).
    """
    row = conn.execute(
        f"""INSERT INTO recordings (call_uuid, status, original_name, original_size,
                                   original_sha256, original_storage, original_key)
            VALUES (%s, 'uploaded', %s, %s, %s, %s, %s)
            ON CONFLICT (call_uuid) DO NOTHING
            RETURNING {_COLUMNS}""",
        (call_uuid, original_name, size, sha256, storage, key),
    ).fetchone()
    if row is not None:
        recording = _to_recording(row)
        assert recording is not None
        return Created(CreateOutcome.CREATED, recording)
    existing = get_recording(conn, call_uuid)
    assert existing is not None  # a conflicting row exists; rows are never deleted here
    same = existing.original_sha256 == sha256 and existing.original_size == size
    return Created(CreateOutcome.DUPLICATE if same else CreateOutcome.CONFLICT, existing)


def claim_for_encoding(
    conn: Connection, call_uuid: uuid_module.UUID, lease_s: float
) -> Recording | None:
    """Take the recording for encoding (attempts + 1, lease set); None if not encodable.

    Encodable means `uploaded`, or `encoding` with an expired lease (its encoder died).
    """
    row = conn.execute(
        f"""UPDATE recordings
               SET status = 'encoding', attempts = attempts + 1,
                   lease_until = now() + make_interval(secs => %s), updated_at = now()
             WHERE call_uuid = %s
               AND (status = 'uploaded'
                    OR (status = 'encoding' AND (lease_until IS NULL OR lease_until < now())))
         RETURNING {_COLUMNS}""",
        (lease_s, call_uuid),
    ).fetchone()
    return _to_recording(row)


def extend_lease(conn: Connection, call_uuid: uuid_module.UUID, lease_s: float) -> bool:
    row = conn.execute(
        """UPDATE recordings SET lease_until = now() + make_interval(secs => %s)
            WHERE call_uuid = %s AND status = 'encoding' RETURNING 1""",
        (lease_s, call_uuid),
    ).fetchone()
    return row is not None


def mark_stored(
    conn: Connection,
    call_uuid: uuid_module.UUID,
    *,
    storage: str,
    key: str,
    size: int,
    sha256: str,
    content_type: str,
    duration_ms: int,
    sample_rate: int,
    channels: int,
) -> Recording | None:
    """encoding → stored. The original stays referenced until `forget_original`."""
    row = conn.execute(
        f"""UPDATE recordings
               SET status = 'stored', storage = %s, key = %s, size = %s, sha256 = %s,
                   content_type = %s, duration_ms = %s, sample_rate = %s, channels = %s,
                   last_error = NULL, lease_until = NULL, updated_at = now(),
                   stored_at = now()
             WHERE call_uuid = %s AND status IN ('uploaded', 'encoding')
         RETURNING {_COLUMNS}""",
        (storage, key, size, sha256, content_type, duration_ms, sample_rate, channels, call_uuid),
    ).fetchone()
    return _to_recording(row)


def forget_original(conn: Connection, call_uuid: uuid_module.UUID) -> None:
    """The temporary original was deleted: stop pointing at it."""
    conn.execute(
        """UPDATE recordings SET original_storage = NULL, original_key = NULL,
                                 updated_at = now()
            WHERE call_uuid = %s AND status IN ('stored', 'purged')""",
        (call_uuid,),
    )


def release_for_retry(
    conn: Connection, call_uuid: uuid_module.UUID, error: str, retry_in_s: float
) -> None:
    """encoding → uploaded after a transient failure; the queue redelivers later.

    `lease_until` records when the retry is due, so the reconciler does not treat the
    recording as forgotten while it waits for its backoff.
    """
    conn.execute(
        """UPDATE recordings SET status = 'uploaded', last_error = %s,
                                 lease_until = now() + make_interval(secs => %s),
                                 updated_at = now()
            WHERE call_uuid = %s AND status = 'encoding'""",
        (error[:MAX_ERROR_LENGTH], retry_in_s, call_uuid),
    )


def mark_failed(conn: Connection, call_uuid: uuid_module.UUID, error: str) -> None:
    """→ failed, keeping the original for a later `retry-failed`."""
    conn.execute(
        """UPDATE recordings SET status = 'failed', last_error = %s, lease_until = NULL,
                                 updated_at = now()
            WHERE call_uuid = %s AND status IN ('uploaded', 'encoding')""",
        (error[:MAX_ERROR_LENGTH], call_uuid),
    )


def requeue_failed(
    conn: Connection, call_uuid: uuid_module.UUID | None = None
) -> list[uuid_module.UUID]:
    """failed → uploaded with attempts reset; returns the uuids to publish jobs for."""
    if call_uuid is None:
        rows = conn.execute(
            """UPDATE recordings SET status = 'uploaded', attempts = 0, updated_at = now()
                WHERE status = 'failed' RETURNING call_uuid"""
        ).fetchall()
    else:
        rows = conn.execute(
            """UPDATE recordings SET status = 'uploaded', attempts = 0, updated_at = now()
                WHERE status = 'failed' AND call_uuid = %s RETURNING call_uuid""",
            (call_uuid,),
        ).fetchall()
    return [row["call_uuid"] for row in rows]


def stale_recordings(
    conn: Connection, *, older_than_s: float, limit: int = 1000
) -> list[uuid_module.UUID]:
    """Recordings waiting for an encoder that no queue message may be bringing.

    `uploaded` and idle for `older_than_s` (counted from a pending retry's due time),
    or `encoding` whose lease expired (its encoder died).
    """
    rows = conn.execute(
        """SELECT call_uuid FROM recordings
            WHERE (status = 'uploaded'
                   AND greatest(updated_at, lease_until) < now() - make_interval(secs => %s))
               OR (status = 'encoding' AND (lease_until IS NULL OR lease_until < now()))
            ORDER BY updated_at
            LIMIT %s""",
        (older_than_s, limit),
    ).fetchall()
    return [row["call_uuid"] for row in rows]


def touch_requeued(conn: Connection, call_uuids: list[uuid_module.UUID]) -> None:
    """Jobs were re-published: restart the stale clock, and hand back expired leases.

    An `encoding` row whose lease expired lost its encoder; it goes back to `uploaded`
    (a live encoder that claimed it meanwhile holds a fresh lease and is untouched).
    """
    conn.execute(
        """UPDATE recordings SET status = 'uploaded', lease_until = NULL, updated_at = now()
            WHERE call_uuid = ANY(%s)
              AND (status = 'uploaded'
                   OR (status = 'encoding' AND (lease_until IS NULL OR lease_until < now())))""",
        (call_uuids,),
    )


@dataclass(frozen=True)
class RetentionRule:
    """Which calls one retention rule covers: one source, or every source but some."""

    started_before: datetime
    source: str | None = None  # only this source
    other_than: tuple[str, ...] = ()  # every source but these (with source None)

    def where(self) -> tuple[str, list[object]]:
        if self.source is not None:
            return "c.source = %s AND c.started_at < %s", [self.source, self.started_before]
        return (
            "NOT (c.source = ANY(%s)) AND c.started_at < %s",
            [list(self.other_than), self.started_before],
        )


_HELD = "EXISTS (SELECT 1 FROM legal_holds h WHERE h.call_uuid = c.uuid)"


def purgeable(conn: Connection, rule: RetentionRule, *, limit: int = 500) -> list[Recording]:
    """Stored or failed recordings the rule covers, oldest first, held calls left out."""
    where, params = rule.where()
    rows = conn.execute(
        f"""SELECT {", ".join("r." + c.strip() for c in _COLUMNS.split(","))}
              FROM recordings r JOIN calls c ON c.uuid = r.call_uuid
             WHERE r.status IN ('stored', 'failed') AND {where} AND NOT {_HELD}
             ORDER BY c.started_at
             LIMIT %s""",
        (*params, limit),
    ).fetchall()
    return [recording for row in rows if (recording := _to_recording(row)) is not None]


@dataclass(frozen=True)
class Skipped:
    """What a rule covers but purging leaves alone, and why."""

    held: int  # under a legal hold
    held_examples: list[tuple[uuid_module.UUID, str]]  # (call, reason), a few
    not_encoded: int  # still uploaded or encoding: purged once stored


def skipped_by_rule(conn: Connection, rule: RetentionRule, *, examples: int = 10) -> Skipped:
    where, params = rule.where()
    held = conn.execute(
        f"""SELECT count(*) AS n FROM recordings r JOIN calls c ON c.uuid = r.call_uuid
             WHERE r.status IN ('stored', 'failed') AND {where} AND {_HELD}""",
        params,
    ).fetchone()
    rows = conn.execute(
        f"""SELECT c.uuid, h.reason FROM recordings r JOIN calls c ON c.uuid = r.call_uuid
                   JOIN legal_holds h ON h.call_uuid = c.uuid
             WHERE r.status IN ('stored', 'failed') AND {where}
             ORDER BY c.started_at LIMIT %s""",
        (*params, examples),
    ).fetchall()
    pending = conn.execute(
        f"""SELECT count(*) AS n FROM recordings r JOIN calls c ON c.uuid = r.call_uuid
             WHERE r.status IN ('uploaded', 'encoding') AND {where}""",
        params,
    ).fetchone()
    return Skipped(
        held=int(held["n"]) if held else 0,
        held_examples=[(row["uuid"], row["reason"]) for row in rows],
        not_encoded=int(pending["n"]) if pending else 0,
    )


def lock_call(conn: Connection, call_uuid: uuid_module.UUID) -> None:
    """Serialise purging with holding one call, until the transaction ends: statements
    after it see what the other committed (READ COMMITTED takes a snapshot each)."""
    folded = (call_uuid.int >> 64) ^ (call_uuid.int & (1 << 64) - 1)
    signed = folded - (1 << 64) if folded >= 1 << 63 else folded
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (signed,))


def mark_purged(
    conn: Connection, call_uuid: uuid_module.UUID, *, actor: str, reason: str
) -> Recording | None:
    """stored/failed → purged, audited; the recording as it was (with the keys of the
    objects still to delete), or None when the call is under a legal hold or the
    recording is no longer stored/failed.

    The objects' keys stay in the row until `forget_purged_objects`, so a purge
    interrupted between marking and deleting is finished by the next run
    (`purged_with_objects`); downloads answer GONE as soon as the row says purged.
    """
    lock_call(conn, call_uuid)
    row = conn.execute(
        f"""UPDATE recordings r SET status = 'purged', lease_until = NULL, updated_at = now()
             WHERE r.call_uuid = %s AND r.status IN ('stored', 'failed')
               AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.call_uuid = r.call_uuid)
         RETURNING {", ".join("r." + c.strip() for c in _COLUMNS.split(","))}""",
        (call_uuid,),
    ).fetchone()
    recording = _to_recording(row)
    if recording is not None:
        objects = [
            [storage, key]
            for storage, key in (
                (recording.storage, recording.key),
                (recording.original_storage, recording.original_key),
            )
            if storage is not None and key is not None
        ]
        audit(
            conn,
            actor=actor,
            action="purge",
            call_uuid=call_uuid,
            result="purged",
            detail={"reason": reason, "objects": objects},
        )
    return recording


def forget_purged_objects(conn: Connection, call_uuid: uuid_module.UUID) -> None:
    """A purged recording's objects are deleted: forget where they were."""
    conn.execute(
        """UPDATE recordings SET storage = NULL, key = NULL, original_storage = NULL,
                                 original_key = NULL, updated_at = now()
            WHERE call_uuid = %s AND status = 'purged'""",
        (call_uuid,),
    )


def purged_with_objects(conn: Connection, *, limit: int = 500) -> list[Recording]:
    """Purged recordings whose objects were not deleted yet (an interrupted purge)."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM recordings
             WHERE status = 'purged' AND (key IS NOT NULL OR original_key IS NOT NULL)
             LIMIT %s""",
        (limit,),
    ).fetchall()
    return [recording for row in rows if (recording := _to_recording(row)) is not None]


BACKLOG_STATUSES = (RecordingStatus.UPLOADED, RecordingStatus.ENCODING, RecordingStatus.FAILED)


def count_backlog(conn: Connection) -> dict[RecordingStatus, tuple[int, float]]:
    """Recordings uploaded, encoding and failed, each with the age in seconds of its
    oldest update: what an encoder's backlog metrics show.

    Only statuses that the partial indexes cover (`recordings_pending_idx`,
    `recordings_failed_idx`), so the count stays cheap however many are stored.
    """
    rows = conn.execute(
        """SELECT status, count(*) AS n,
                  coalesce(extract(epoch FROM now() - min(updated_at)), 0) AS oldest_s
             FROM recordings WHERE status IN ('uploaded', 'encoding', 'failed')
            GROUP BY status"""
    ).fetchall()
    counts = {status: (0, 0.0) for status in BACKLOG_STATUSES}
    for row in rows:
        counts[RecordingStatus(row["status"])] = (int(row["n"]), float(row["oldest_s"]))
    return counts
