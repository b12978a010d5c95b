"""Calls over REST: a call and a call record ⇄ JSON, and the bodies and answers of
adding calls (one, a batch) and checking which exist. No I/O.

JSON shapes (see `cj_api.openapi_schemas` for the schemas):
- a call: flat object; times are RFC 3339 (`…Z` on output); `caller_digits` and
  `destination_digits` are read-only (sent, ignored on input).
- a call record: `{"call": Call, "recording": Recording | null}`, as gRPC's CallRecord.

Searches do not go through `record_to_json`: PostgreSQL writes their JSON
(`cj.db.wire`), byte for byte what this module would.
"""

from __future__ import annotations

import uuid as uuid_module
from datetime import datetime
from typing import Any

from cj.db.calls import CallRecord, CallState
from cj.db.ingest import UpsertOutcome
from cj.errors import ServiceError
from cj.jsonlimits import MAX_JSON_DEPTH, depth_exceeds
from cj.model import Call, Direction, ModelError, Recording, RecordingStatus
from cj.phone import PhoneNumber
from cj_api.rest_primitives import format_timestamp, parse_timestamp, parse_uuid
from cj_api.service import AddCallsResult, InvalidCall

__all__ = [
    "CALL_FIELDS",
    "MAX_BATCH_CALLS",
    "REQUIRED_CALL_FIELDS",
    "add_call_outcome_to_json",
    "add_calls_result_to_json",
    "batch_items_from_json",
    "call_from_json",
    "call_state_to_json",
    "call_to_json",
    "check_uuids_from_json",
    "record_to_json",
    "recording_to_json",
]

# The fields of a call on input, and which of them must be given.
CALL_FIELDS = frozenset(
    {
        "uuid",
        "source",
        "caller_number",
        "caller_digits",
        "caller_name",
        "caller_extension",
        "destination_number",
        "destination_digits",
        "destination_extension",
        "direction",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_s",
        "billsec",
        "hangup_cause",
        "hangup_side",
        "sip_code",
        "private",
        "recording_name",
        "raw",
    }
)
REQUIRED_CALL_FIELDS = ("uuid", "caller_number", "destination_number", "started_at")
MAX_BATCH_CALLS = 10_000


def _optional_timestamp(value: object, field: str) -> datetime | None:
    return None if value is None else parse_timestamp(value, field)


def call_from_json(data: object, prefix: str = "call") -> Call:
    """A Call from its JSON object; ServiceError INVALID_ARGUMENT naming `prefix.field`."""
    if not isinstance(data, dict):
        raise ServiceError.invalid(prefix, "must be a JSON object")
    unknown = sorted(set(data) - CALL_FIELDS)
    if unknown:
        raise ServiceError.invalid(
            f"{prefix}.{unknown[0]}", f"unknown field(s): {', '.join(unknown)[:200]}"
        )
    missing = [name for name in REQUIRED_CALL_FIELDS if data.get(name) is None]
    if missing:
        raise ServiceError.invalid(f"{prefix}.{missing[0]}", "is required")

    def field(name: str) -> str:
        return f"{prefix}.{name}"

    # Absent fields take the model's defaults; null is only accepted where the schema
    # says nullable (answered_at, ended_at, sip_code, recording_name, raw).
    def text(name: str, default: str = "", *, nullable: bool = False) -> str:
        value = data.get(name, default)
        if value is None and nullable:
            return default
        if not isinstance(value, str):
            raise ServiceError.invalid(field(name), "must be a string")
        return value

    def integer(name: str, default: int) -> int:
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ServiceError.invalid(field(name), "must be an integer")
        return value

    def number(name: str) -> PhoneNumber:
        try:
            return PhoneNumber(text(name))
        except ValueError as exc:
            raise ServiceError.invalid(field(name), str(exc)) from None

    try:
        direction = Direction(text("direction", Direction.UNKNOWN.value))
    except ValueError:
        allowed = ", ".join(d.value for d in Direction)
        raise ServiceError.invalid(field("direction"), f"must be one of {allowed}") from None
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise ServiceError.invalid(field("private"), "must be true or false")
    raw = data.get("raw")
    if raw is not None and not isinstance(raw, dict):
        raise ServiceError.invalid(field("raw"), "must be a JSON object")
    if raw and depth_exceeds(raw):
        raise ServiceError.invalid(field("raw"), f"nested deeper than {MAX_JSON_DEPTH} levels")
    sip_code = data.get("sip_code")
    if sip_code is not None and (isinstance(sip_code, bool) or not isinstance(sip_code, int)):
        raise ServiceError.invalid(field("sip_code"), "must be an integer")
    try:
        return Call(
            uuid=parse_uuid(data["uuid"], field("uuid")),
            caller=number("caller_number"),
            destination=number("destination_number"),
            started_at=parse_timestamp(data["started_at"], field("started_at")),
            answered_at=_optional_timestamp(data.get("answered_at"), field("answered_at")),
            ended_at=_optional_timestamp(data.get("ended_at"), field("ended_at")),
            direction=direction,
            source=text("source"),
            caller_name=text("caller_name"),
            caller_extension=text("caller_extension"),
            destination_extension=text("destination_extension"),
            duration_s=integer("duration_s", 0),
            billsec=integer("billsec", 0),
            hangup_cause=text("hangup_cause"),
            hangup_side=text("hangup_side"),
            sip_code=sip_code,
            private=private,
            # As in gRPC (proto3 strings), an empty name means "no name".
            recording_name=text("recording_name", nullable=True) or None,
            raw=raw or {},
        )
    except ModelError as exc:
        raise ServiceError.invalid(field(exc.field), exc.reason) from None


def call_to_json(call: Call, *, include_raw: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": str(call.uuid),
        "source": call.source,
        "caller_number": call.caller.raw,
        "caller_digits": call.caller.digits,
        "caller_name": call.caller_name,
        "caller_extension": call.caller_extension,
        "destination_number": call.destination.raw,
        "destination_digits": call.destination.digits,
        "destination_extension": call.destination_extension,
        "direction": call.direction.value,
        "started_at": format_timestamp(call.started_at),
        "answered_at": call.answered_at and format_timestamp(call.answered_at),
        "ended_at": call.ended_at and format_timestamp(call.ended_at),
        "duration_s": call.duration_s,
        "billsec": call.billsec,
        "hangup_cause": call.hangup_cause,
        "hangup_side": call.hangup_side,
        "sip_code": call.sip_code,
        "private": call.private,
        "recording_name": call.recording_name,
    }
    if include_raw:
        body["raw"] = dict(call.raw)
    return body


def recording_to_json(recording: Recording | None) -> dict[str, Any] | None:
    """The recording as a client sees it; content_type/size/sha256 describe what a
    download sends now: the MP3 once encoded, the original WAV before."""
    if recording is None:
        return None
    encoded = recording.status in (RecordingStatus.STORED, RecordingStatus.PURGED) and (
        recording.size is not None and recording.sha256 is not None
    )
    return {
        "status": recording.status.value,
        "original_name": recording.original_name,
        "original_size": recording.original_size,
        "original_sha256": recording.original_sha256,
        "content_type": "audio/mpeg" if encoded else "audio/wav",
        "size": recording.size if encoded else recording.original_size,
        "sha256": recording.sha256 if encoded else recording.original_sha256,
        "duration_ms": recording.duration_ms,
        "sample_rate": recording.sample_rate,
        "channels": recording.channels,
        "attempts": recording.attempts,
        "last_error": recording.last_error,
    }


def record_to_json(record: CallRecord, *, include_raw: bool = False) -> dict[str, Any]:
    return {
        "call": call_to_json(record.call, include_raw=include_raw),
        "recording": recording_to_json(record.recording),
    }


def add_call_outcome_to_json(outcome: UpsertOutcome) -> dict[str, Any]:
    return {"outcome": outcome.value}


def batch_items_from_json(payload: object, max_calls: int) -> list[Call | InvalidCall]:
    """The items of `{"calls": [...]}`: each a Call, or an InvalidCall saying why not."""
    if not isinstance(payload, dict):
        raise ServiceError.invalid("body", 'must be a JSON object {"calls": [...]}')
    unknown = sorted(set(payload) - {"calls"})
    if unknown:
        raise ServiceError.invalid(unknown[0], f"unknown field(s): {', '.join(unknown)[:200]}")
    calls = payload.get("calls")
    if not isinstance(calls, list):
        raise ServiceError.invalid("calls", "must be an array of calls")
    if len(calls) > max_calls:
        raise ServiceError.resource_exhausted(
            f"{len(calls)} calls is over the limit of {max_calls} per batch; split the batch",
            field="calls",
        )
    items: list[Call | InvalidCall] = []
    for item in calls:
        try:
            items.append(call_from_json(item))
        except ServiceError as exc:
            claimed = item.get("uuid") if isinstance(item, dict) else None
            items.append(InvalidCall(claimed[:64] if isinstance(claimed, str) else "", exc))
    return items


def add_calls_result_to_json(result: AddCallsResult) -> dict[str, Any]:
    return {
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "rejections": [
            {
                "index": r.index,
                "uuid": r.uuid,
                "field": r.field,
                "reason": r.reason,
                "code": r.code.value,
            }
            for r in result.rejections
        ],
    }


def check_uuids_from_json(payload: object, max_uuids: int) -> list[uuid_module.UUID]:
    if not isinstance(payload, dict):
        raise ServiceError.invalid("body", 'must be a JSON object {"uuids": [...]}')
    unknown = sorted(set(payload) - {"uuids"})
    if unknown:
        raise ServiceError.invalid(unknown[0], f"unknown field(s): {', '.join(unknown)[:200]}")
    uuids = payload.get("uuids")
    if not isinstance(uuids, list):
        raise ServiceError.invalid("uuids", "must be an array of UUID strings")
    if not 1 <= len(uuids) <= max_uuids:
        raise ServiceError.invalid("uuids", f"give 1 to {max_uuids} uuids")
    return [parse_uuid(value, f"uuids[{index}]") for index, value in enumerate(uuids)]


def call_state_to_json(state: CallState) -> dict[str, Any]:
    return {
        "uuid": str(state.uuid),
        "exists": state.exists,
        "recording_status": state.recording_status and state.recording_status.value,
        "recording_sha256": state.recording_sha256,
    }
