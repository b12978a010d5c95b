import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_INBOUND: _ClassVar[Direction]
    DIRECTION_OUTBOUND: _ClassVar[Direction]
    DIRECTION_INTERNAL: _ClassVar[Direction]
    DIRECTION_UNKNOWN: _ClassVar[Direction]

class RecordingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORDING_STATUS_UNSPECIFIED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_NONE: _ClassVar[RecordingStatus]
    RECORDING_STATUS_UPLOADED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_ENCODING: _ClassVar[RecordingStatus]
    RECORDING_STATUS_STORED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_FAILED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_PURGED: _ClassVar[RecordingStatus]

class RecordingFilter(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORDING_FILTER_UNSPECIFIED: _ClassVar[RecordingFilter]
    RECORDING_FILTER_WITH: _ClassVar[RecordingFilter]
    RECORDING_FILTER_WITHOUT: _ClassVar[RecordingFilter]

class UpsertOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSERT_OUTCOME_UNSPECIFIED: _ClassVar[UpsertOutcome]
    UPSERT_OUTCOME_INSERTED: _ClassVar[UpsertOutcome]
    UPSERT_OUTCOME_UPDATED: _ClassVar[UpsertOutcome]
    UPSERT_OUTCOME_UNCHANGED: _ClassVar[UpsertOutcome]

class CallPrivacy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_PRIVACY_UNSPECIFIED: _ClassVar[CallPrivacy]
    CALL_PRIVACY_PRIVATE: _ClassVar[CallPrivacy]
    CALL_PRIVACY_PUBLIC: _ClassVar[CallPrivacy]

class LegalHoldAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEGAL_HOLD_ACTION_UNSPECIFIED: _ClassVar[LegalHoldAction]
    LEGAL_HOLD_ACTION_PLACE: _ClassVar[LegalHoldAction]
    LEGAL_HOLD_ACTION_LIFT: _ClassVar[LegalHoldAction]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_INBOUND: Direction
DIRECTION_OUTBOUND: Direction
DIRECTION_INTERNAL: Direction
DIRECTION_UNKNOWN: Direction
RECORDING_STATUS_UNSPECIFIED: RecordingStatus
RECORDING_STATUS_NONE: RecordingStatus
RECORDING_STATUS_UPLOADED: RecordingStatus
RECORDING_STATUS_ENCODING: RecordingStatus
RECORDING_STATUS_STORED: RecordingStatus
RECORDING_STATUS_FAILED: RecordingStatus
RECORDING_STATUS_PURGED: RecordingStatus
RECORDING_FILTER_UNSPECIFIED: RecordingFilter
RECORDING_FILTER_WITH: RecordingFilter
RECORDING_FILTER_WITHOUT: RecordingFilter
UPSERT_OUTCOME_UNSPECIFIED: UpsertOutcome
UPSERT_OUTCOME_INSERTED: UpsertOutcome
UPSERT_OUTCOME_UPDATED: UpsertOutcome
UPSERT_OUTCOME_UNCHANGED: UpsertOutcome
CALL_PRIVACY_UNSPECIFIED: CallPrivacy
CALL_PRIVACY_PRIVATE: CallPrivacy
CALL_PRIVACY_PUBLIC: CallPrivacy
LEGAL_HOLD_ACTION_UNSPECIFIED: LegalHoldAction
LEGAL_HOLD_ACTION_PLACE: LegalHoldAction
LEGAL_HOLD_ACTION_LIFT: LegalHoldAction

class Call(_message.Message):
    __slots__ = ("uuid", "source", "caller_number", "caller_name", "destination_number", "direction", "started_at", "answered_at", "ended_at", "duration_s", "billsec", "hangup_cause", "hangup_side", "sip_code", "private", "recording_name", "raw_json", "caller_extension", "destination_extension")
    UUID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CALLER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CALLER_NAME_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    BILLSEC_FIELD_NUMBER: _ClassVar[int]
    HANGUP_CAUSE_FIELD_NUMBER: _ClassVar[int]
    HANGUP_SIDE_FIELD_NUMBER: _ClassVar[int]
    SIP_CODE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    RECORDING_NAME_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    CALLER_EXTENSION_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_EXTENSION_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    source: str
    caller_number: str
    caller_name: str
    destination_number: str
    direction: Direction
    started_at: _timestamp_pb2.Timestamp
    answered_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    duration_s: int
    billsec: int
    hangup_cause: str
    hangup_side: str
    sip_code: int
    private: bool
    recording_name: str
    raw_json: str
    caller_extension: str
    destination_extension: str
    def __init__(self, uuid: _Optional[str] = ..., source: _Optional[str] = ..., caller_number: _Optional[str] = ..., caller_name: _Optional[str] = ..., destination_number: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_s: _Optional[int] = ..., billsec: _Optional[int] = ..., hangup_cause: _Optional[str] = ..., hangup_side: _Optional[str] = ..., sip_code: _Optional[int] = ..., private: _Optional[bool] = ..., recording_name: _Optional[str] = ..., raw_json: _Optional[str] = ..., caller_extension: _Optional[str] = ..., destination_extension: _Optional[str] = ...) -> None: ...

class RecordingInfo(_message.Message):
    __slots__ = ("status", "original_name", "original_size", "original_sha256", "content_type", "size", "sha256", "duration_ms", "sample_rate", "channels", "last_error")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_NAME_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    status: RecordingStatus
    original_name: str
    original_size: int
    original_sha256: str
    content_type: str
    size: int
    sha256: str
    duration_ms: int
    sample_rate: int
    channels: int
    last_error: str
    def __init__(self, status: _Optional[_Union[RecordingStatus, str]] = ..., original_name: _Optional[str] = ..., original_size: _Optional[int] = ..., original_sha256: _Optional[str] = ..., content_type: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., duration_ms: _Optional[int] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class CallRecord(_message.Message):
    __slots__ = ("call", "recording")
    CALL_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    call: Call
    recording: RecordingInfo
    def __init__(self, call: _Optional[_Union[Call, _Mapping]] = ..., recording: _Optional[_Union[RecordingInfo, _Mapping]] = ...) -> None: ...

class AddCallRequest(_message.Message):
    __slots__ = ("call",)
    CALL_FIELD_NUMBER: _ClassVar[int]
    call: Call
    def __init__(self, call: _Optional[_Union[Call, _Mapping]] = ...) -> None: ...

class AddCallResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: UpsertOutcome
    def __init__(self, outcome: _Optional[_Union[UpsertOutcome, str]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("index", "uuid", "reason", "field", "code")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    reason: str
    field: str
    code: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class AddCallsResponse(_message.Message):
    __slots__ = ("inserted", "updated", "unchanged", "rejected", "rejections")
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, inserted: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class CheckCallsRequest(_message.Message):
    __slots__ = ("uuids",)
    UUIDS_FIELD_NUMBER: _ClassVar[int]
    uuids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uuids: _Optional[_Iterable[str]] = ...) -> None: ...

class CallState(_message.Message):
    __slots__ = ("uuid", "exists", "recording_status", "recording_sha256")
    UUID_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    RECORDING_STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORDING_SHA256_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    exists: bool
    recording_status: RecordingStatus
    recording_sha256: str
    def __init__(self, uuid: _Optional[str] = ..., exists: _Optional[bool] = ..., recording_status: _Optional[_Union[RecordingStatus, str]] = ..., recording_sha256: _Optional[str] = ...) -> None: ...

class CheckCallsResponse(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallState]
    def __init__(self, calls: _Optional[_Iterable[_Union[CallState, _Mapping]]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("call_uuid", "file_name", "size", "sha256")
    CALL_UUID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    call_uuid: str
    file_name: str
    size: int
    sha256: str
    def __init__(self, call_uuid: _Optional[str] = ..., file_name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadRecordingRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadRecordingResponse(_message.Message):
    __slots__ = ("duplicate", "size", "sha256", "status")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    size: int
    sha256: str
    status: RecordingStatus
    def __init__(self, duplicate: _Optional[bool] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., status: _Optional[_Union[RecordingStatus, str]] = ...) -> None: ...

class SearchByPhoneRequest(_message.Message):
    __slots__ = ("phone", "exact", "start_time", "end_time", "direction", "recording", "limit", "page_token")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    phone: str
    exact: bool
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    direction: Direction
    recording: RecordingFilter
    limit: int
    page_token: str
    def __init__(self, phone: _Optional[str] = ..., exact: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., direction: _Optional[_Union[Direction, str]] = ..., recording: _Optional[_Union[RecordingFilter, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchByIntervalRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "direction", "recording", "limit", "page_token")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    direction: Direction
    recording: RecordingFilter
    limit: int
    page_token: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., direction: _Optional[_Union[Direction, str]] = ..., recording: _Optional[_Union[RecordingFilter, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("calls", "next_page_token")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallRecord]
    next_page_token: str
    def __init__(self, calls: _Optional[_Iterable[_Union[CallRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCallRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class DownloadRecordingRequest(_message.Message):
    __slots__ = ("call_uuid", "offset")
    CALL_UUID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    call_uuid: str
    offset: int
    def __init__(self, call_uuid: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ("content_type", "size", "sha256", "duration_ms", "file_name", "offset")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    size: int
    sha256: str
    duration_ms: int
    file_name: str
    offset: int
    def __init__(self, content_type: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., duration_ms: _Optional[int] = ..., file_name: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadRecordingResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SetCallPrivacyRequest(_message.Message):
    __slots__ = ("uuid", "privacy", "reason")
    UUID_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    privacy: CallPrivacy
    reason: str
    def __init__(self, uuid: _Optional[str] = ..., privacy: _Optional[_Union[CallPrivacy, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetCallPrivacyResponse(_message.Message):
    __slots__ = ("uuid", "privacy", "changed")
    UUID_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    privacy: CallPrivacy
    changed: bool
    def __init__(self, uuid: _Optional[str] = ..., privacy: _Optional[_Union[CallPrivacy, str]] = ..., changed: _Optional[bool] = ...) -> None: ...

class SetLegalHoldRequest(_message.Message):
    __slots__ = ("uuid", "action", "reason")
    UUID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    action: LegalHoldAction
    reason: str
    def __init__(self, uuid: _Optional[str] = ..., action: _Optional[_Union[LegalHoldAction, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetLegalHoldResponse(_message.Message):
    __slots__ = ("uuid", "held", "changed")
    UUID_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    held: bool
    changed: bool
    def __init__(self, uuid: _Optional[str] = ..., held: _Optional[bool] = ..., changed: _Optional[bool] = ...) -> None: ...

class ListLegalHoldsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class LegalHold(_message.Message):
    __slots__ = ("uuid", "reason", "held_by", "held_at")
    UUID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    HELD_AT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    reason: str
    held_by: str
    held_at: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., reason: _Optional[str] = ..., held_by: _Optional[str] = ..., held_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLegalHoldsResponse(_message.Message):
    __slots__ = ("holds",)
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[LegalHold]
    def __init__(self, holds: _Optional[_Iterable[_Union[LegalHold, _Mapping]]] = ...) -> None: ...
