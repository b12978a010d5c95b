"""Protobuf messages of calljournal.v1 ⇄ the model, with errors naming the field.

Shared by the server (requests in, answers out) and the agent (calls out).
"""

from __future__ import annotations

import json
import uuid as uuid_module
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cj.db.calls import CallRecord, CallState
from cj.db.ingest import UpsertOutcome
from cj.errors import ServiceError
from cj.jsonlimits import MAX_JSON_DEPTH, depth_exceeds
from cj.model import Call, Direction, ModelError, Recording, RecordingStatus
from cj.phone import PhoneNumber
from cj.proto import calljournal_pb2 as pb

MAX_RAW_JSON = 1024 * 1024

DIRECTION_TO_PB = {
    Direction.INBOUND: pb.DIRECTION_INBOUND,
    Direction.OUTBOUND: pb.DIRECTION_OUTBOUND,
    Direction.INTERNAL: pb.DIRECTION_INTERNAL,
    Direction.UNKNOWN: pb.DIRECTION_UNKNOWN,
}
DIRECTION_FROM_PB = {value: key for key, value in DIRECTION_TO_PB.items()}

STATUS_TO_PB = {
    RecordingStatus.UPLOADED: pb.RECORDING_STATUS_UPLOADED,
    RecordingStatus.ENCODING: pb.RECORDING_STATUS_ENCODING,
    RecordingStatus.STORED: pb.RECORDING_STATUS_STORED,
    RecordingStatus.FAILED: pb.RECORDING_STATUS_FAILED,
    RecordingStatus.PURGED: pb.RECORDING_STATUS_PURGED,
}

OUTCOME_TO_PB = {
    UpsertOutcome.INSERTED: pb.UPSERT_OUTCOME_INSERTED,
    UpsertOutcome.UPDATED: pb.UPSERT_OUTCOME_UPDATED,
    UpsertOutcome.UNCHANGED: pb.UPSERT_OUTCOME_UNCHANGED,
}


def parse_uuid(text: str, field: str) -> uuid_module.UUID:
    try:
        return uuid_module.UUID(text)
    except (ValueError, TypeError):
        raise ServiceError.invalid(field, f"not a valid UUID: {text[:64]!r}") from None


def timestamp_to_datetime(ts: Timestamp, field: str) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ServiceError.invalid(field, "timestamp out of range") from None


def datetime_to_timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def call_from_pb(message: pb.Call, prefix: str = "call.") -> Call:
    """A model Call from a request message; ServiceError INVALID_ARGUMENT naming the field."""
    if not message.uuid:
        raise ServiceError.invalid(f"{prefix}uuid", "is required")
    call_uuid = parse_uuid(message.uuid, f"{prefix}uuid")
    if not message.HasField("started_at"):
        raise ServiceError.invalid(f"{prefix}started_at", "is required")
    direction = DIRECTION_FROM_PB.get(message.direction, Direction.UNKNOWN)
    if message.direction not in DIRECTION_FROM_PB and message.direction != 0:
        raise ServiceError.invalid(f"{prefix}direction", f"unknown value {message.direction}")
    raw: dict[str, Any] = {}
    if message.raw_json:
        if len(message.raw_json) > MAX_RAW_JSON:
            raise ServiceError.invalid(f"{prefix}raw_json", "larger than 1 MiB")
        too_deep = ServiceError.invalid(
            f"{prefix}raw_json", f"nested deeper than {MAX_JSON_DEPTH} levels"
        )
        try:
            parsed = json.loads(message.raw_json)
        except json.JSONDecodeError as exc:
            raise ServiceError.invalid(f"{prefix}raw_json", f"not valid JSON: {exc.msg}") from None
        except RecursionError:  # deeper than the parser goes (about 1,000 levels)
            raise too_deep from None
        if depth_exceeds(parsed):
            raise too_deep
        if not isinstance(parsed, dict):
            raise ServiceError.invalid(f"{prefix}raw_json", "must be a JSON object")
        raw = parsed
    try:
        return Call(
            uuid=call_uuid,
            source=message.source,
            caller=_phone(message.caller_number, f"{prefix}caller_number"),
            caller_name=message.caller_name,
            caller_extension=message.caller_extension,
            destination=_phone(message.destination_number, f"{prefix}destination_number"),
            destination_extension=message.destination_extension,
            direction=direction,
            started_at=timestamp_to_datetime(message.started_at, f"{prefix}started_at"),
            answered_at=(
                timestamp_to_datetime(message.answered_at, f"{prefix}answered_at")
                if message.HasField("answered_at")
                else None
            ),
            ended_at=(
                timestamp_to_datetime(message.ended_at, f"{prefix}ended_at")
                if message.HasField("ended_at")
                else None
            ),
            duration_s=message.duration_s,
            billsec=message.billsec,
            hangup_cause=message.hangup_cause,
            hangup_side=message.hangup_side,
            sip_code=message.sip_code or None,
            private=message.private,
            recording_name=message.recording_name or None,
            raw=raw,
        )
    except ModelError as exc:
        raise ServiceError.invalid(f"{prefix}{exc.field}", exc.reason) from None


def _phone(text: str, field: str) -> PhoneNumber:
    try:
        return PhoneNumber(text)
    except ValueError as exc:
        raise ServiceError.invalid(field, str(exc)) from None


def call_to_pb(call: Call, *, include_raw: bool = False) -> pb.Call:
    message = pb.Call(
        uuid=str(call.uuid),
        source=call.source,
        caller_number=call.caller.raw,
        caller_name=call.caller_name,
        caller_extension=call.caller_extension,
        destination_number=call.destination.raw,
        destination_extension=call.destination_extension,
        direction=DIRECTION_TO_PB[call.direction],
        started_at=datetime_to_timestamp(call.started_at),
        duration_s=call.duration_s,
        billsec=call.billsec,
        hangup_cause=call.hangup_cause,
        hangup_side=call.hangup_side,
        sip_code=call.sip_code or 0,
        private=call.private,
        recording_name=call.recording_name or "",
    )
    if call.answered_at is not None:
        message.answered_at.CopyFrom(datetime_to_timestamp(call.answered_at))
    if call.ended_at is not None:
        message.ended_at.CopyFrom(datetime_to_timestamp(call.ended_at))
    if include_raw and call.raw:
        message.raw_json = json.dumps(call.raw, ensure_ascii=False)
    return message


def recording_to_pb(recording: Recording) -> pb.RecordingInfo:
    stored = recording.status is RecordingStatus.STORED
    return pb.RecordingInfo(
        status=STATUS_TO_PB[recording.status],
        original_name=recording.original_name,
        original_size=recording.original_size,
        original_sha256=recording.original_sha256,
        content_type="audio/mpeg" if stored else "audio/wav",
        size=(recording.size or 0) if stored else recording.original_size,
        sha256=(recording.sha256 or "") if stored else recording.original_sha256,
        duration_ms=recording.duration_ms or 0,
        sample_rate=recording.sample_rate or 0,
        channels=recording.channels or 0,
        last_error=recording.last_error or "",
    )


def record_to_pb(record: CallRecord, *, include_raw: bool = False) -> pb.CallRecord:
    message = pb.CallRecord(call=call_to_pb(record.call, include_raw=include_raw))
    if record.recording is not None:
        message.recording.CopyFrom(recording_to_pb(record.recording))
    return message


def call_state_to_pb(state: CallState) -> pb.CallState:
    return pb.CallState(
        uuid=str(state.uuid),
        exists=state.exists,
        recording_status=(
            STATUS_TO_PB[state.recording_status]
            if state.recording_status is not None
            else pb.RECORDING_STATUS_NONE
        ),
        recording_sha256=state.recording_sha256 or "",
    )


def optional_time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return timestamp_to_datetime(getattr(message, name), name)


def direction_filter(value: int) -> Direction | None:
    if value == pb.DIRECTION_UNSPECIFIED:
        return None
    for pb_value, direction in DIRECTION_FROM_PB.items():
        if pb_value == value:
            return direction
    raise ServiceError.invalid("direction", f"unknown value {value}")


def recording_filter(value: int) -> bool | None:
    if value == pb.RECORDING_FILTER_UNSPECIFIED:
        return None
    if value == pb.RECORDING_FILTER_WITH:
        return True
    if value == pb.RECORDING_FILTER_WITHOUT:
        return False
    raise ServiceError.invalid("recording", f"unknown value {value}")


_DIRECTION_TEXT_TO_PB = {
    direction.value: pb_value for direction, pb_value in DIRECTION_TO_PB.items()
}
_STATUS_TEXT_TO_PB = {status.value: pb_value for status, pb_value in STATUS_TO_PB.items()}


def rows_to_search_pb(
    rows: list[tuple[Any, ...]], next_page_token: str | None
) -> pb.SearchResponse:
    """The SearchResponse of `cj.db.wire.search_rows` tuples, message for message what
    `record_to_pb` builds from the same calls (tests/db/test_wire.py holds them equal).

    Fields are set on the repeated field's own messages: upb builds them in place, about
    three times faster than keyword constructors and sub-messages copied in."""
    response = pb.SearchResponse(next_page_token=next_page_token or "")
    add = response.calls.add
    directions, statuses = _DIRECTION_TEXT_TO_PB, _STATUS_TEXT_TO_PB
    for row in rows:
        (
            at_us, uuid_text, source, caller_number, caller_name, caller_extension,
            destination_number, destination_extension, direction, answered_us, ended_us,
            duration_s, billsec, hangup_cause, hangup_side, sip_code, private, recording_name,
            r_status, r_original_name, r_original_size, r_original_sha256, r_content_type,
            r_size, r_sha256, r_duration_ms, r_sample_rate, r_channels, r_last_error,
        ) = row  # fmt: skip
        record = add()
        call = record.call
        call.uuid = uuid_text
        call.source = source
        call.caller_number = caller_number
        call.caller_name = caller_name
        call.caller_extension = caller_extension
        call.destination_number = destination_number
        call.destination_extension = destination_extension
        call.direction = directions[direction]
        call.started_at.FromMicroseconds(at_us)
        if answered_us is not None:
            call.answered_at.FromMicroseconds(answered_us)
        if ended_us is not None:
            call.ended_at.FromMicroseconds(ended_us)
        call.duration_s = duration_s
        call.billsec = billsec
        call.hangup_cause = hangup_cause
        call.hangup_side = hangup_side
        call.sip_code = sip_code
        call.private = private
        call.recording_name = recording_name
        if r_status is None:
            continue
        info = record.recording
        info.status = statuses[r_status]
        info.original_name = r_original_name
        info.original_size = r_original_size
        info.original_sha256 = r_original_sha256
        info.content_type = r_content_type
        info.size = r_size
        info.sha256 = r_sha256
        info.duration_ms = r_duration_ms
        info.sample_rate = r_sample_rate
        info.channels = r_channels
        info.last_error = r_last_error
    return response
