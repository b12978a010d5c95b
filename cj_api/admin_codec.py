"""The JSON of the admin requests over REST (privacy, legal holds) and their answers."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from cj.db.holds import Hold
from cj.db.privacy import PrivacyChange
from cj.errors import ServiceError
from cj_api.holds import HoldChange


def flag_and_reason_from_json(
    payload: object, flag: str, flag_help: str, reason_help: str
) -> tuple[bool, str]:
    """(flag, reason) of an admin request `{"<flag>": bool, "reason": "..."}`; both
    required, nothing else allowed."""
    if not isinstance(payload, dict):
        raise ServiceError.invalid("body", f'must be a JSON object {{"{flag}": …, "reason": …}}')
    unknown = sorted(set(payload) - {flag, "reason"})
    if unknown:
        raise ServiceError.invalid(unknown[0], f"unknown field(s): {', '.join(unknown)[:200]}")
    value = payload.get(flag)
    if not isinstance(value, bool):
        raise ServiceError.invalid(flag, f"is required: {flag_help}")
    reason = payload.get("reason")
    if not isinstance(reason, str):
        raise ServiceError.invalid("reason", f"is required: {reason_help}")
    return value, reason


def hold_request_from_json(payload: object) -> tuple[bool, str]:
    """(held, reason) of `{"held": bool, "reason": "..."}`; both required."""
    return flag_and_reason_from_json(
        payload, "held", "true places a hold, false lifts it", "say why"
    )


def hold_change_to_json(change: HoldChange) -> dict[str, Any]:
    return {"uuid": str(change.call_uuid), "held": change.held, "changed": change.changed}


def hold_to_json(hold: Hold) -> dict[str, Any]:
    return {
        "uuid": str(hold.call_uuid),
        "reason": hold.reason,
        "held_by": hold.held_by,
        "held_at": hold.held_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def privacy_request_from_json(payload: object) -> tuple[bool, str]:
    """(private, reason) of `{"private": bool, "reason": "..."}`; both required."""
    return flag_and_reason_from_json(
        payload, "private", "true or false", "say why the privacy changes"
    )


def privacy_change_to_json(change: PrivacyChange) -> dict[str, Any]:
    return {"uuid": str(change.call_uuid), "private": change.private, "changed": change.changed}
