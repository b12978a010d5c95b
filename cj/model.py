"""The canonical call and recording (DESIGN §4): what crosses the API and the database."""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cj.phone import PhoneNumber

MAX_TEXT = 256


class ModelError(ValueError):
    """A call or recording violates the model; `field` names the attribute at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class RecordingStatus(StrEnum):
    """uploaded → encoding → stored | failed; purged after retention."""

    UPLOADED = "uploaded"
    ENCODING = "encoding"
    STORED = "stored"
    FAILED = "failed"
    PURGED = "purged"


def parse_uuid(value: str, field: str = "uuid") -> uuid_module.UUID:
    """A UUID from text, or ModelError naming `field`."""
    try:
        return uuid_module.UUID(value.strip())
    except (ValueError, AttributeError, TypeError):
        raise ModelError(field, f"not a valid UUID: {str(value)[:64]!r}") from None


@dataclass(frozen=True)
class Call:
    """One call's metadata. Times are timezone-aware and normalised to UTC."""

    uuid: uuid_module.UUID
    caller: PhoneNumber
    destination: PhoneNumber
    started_at: datetime
    direction: Direction = Direction.UNKNOWN
    source: str = ""
    caller_name: str = ""
    # The extension or SIP login behind each side, when the PBX tells it apart from the
    # number presented (DESIGN §10): "dan", "1001". Searchable like the numbers.
    caller_extension: str = ""
    destination_extension: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: int = 0
    billsec: int = 0
    hangup_cause: str = ""
    hangup_side: str = ""
    sip_code: int | None = None
    private: bool = False
    recording_name: str | None = None
    # Two mono files, the caller's side then the callee's (MixMonitor r()/t(), FreeSWITCH
    # recordings per leg), which the agent merges into one stereo WAV (caller left) named
    # `recording_name` before uploading it. Agent-side only: not stored by the server.
    recording_legs: tuple[str, str] | None = field(default=None, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.uuid, uuid_module.UUID):
            raise ModelError("uuid", "must be a UUID")
        for name in ("started_at", "answered_at", "ended_at"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None or value.utcoffset() is None:
                raise ModelError(name, "must carry a timezone")
            if value.utcoffset() != timedelta(0):
                object.__setattr__(self, name, value.astimezone(UTC))
        if self.answered_at is not None and self.answered_at < self.started_at:
            raise ModelError("answered_at", "is before started_at")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ModelError("ended_at", "is before started_at")
        if (
            self.answered_at is not None
            and self.ended_at is not None
            and self.ended_at < self.answered_at
        ):
            raise ModelError("ended_at", "is before answered_at")
        for name in ("duration_s", "billsec"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelError(name, "must be an integer")
            if value < 0:
                raise ModelError(name, "must not be negative")
            if value > 10 * 365 * 86400:
                raise ModelError(name, "is implausibly large")
        if self.billsec > self.duration_s:
            raise ModelError("billsec", "exceeds duration_s")
        if self.sip_code is not None and not 100 <= self.sip_code <= 699:
            raise ModelError("sip_code", f"{self.sip_code} is not a SIP status code (100-699)")
        if not isinstance(self.direction, Direction):
            raise ModelError("direction", "must be a Direction")
        for name in (
            "source",
            "caller_name",
            "caller_extension",
            "destination_extension",
            "hangup_cause",
            "hangup_side",
        ):
            _check_text(name, getattr(self, name))
        if self.recording_name is not None:
            _check_text("recording_name", self.recording_name)
            if not self.recording_name:
                raise ModelError("recording_name", "must not be empty (use None)")


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ModelError(name, "must be text")
    if len(value) > MAX_TEXT:
        raise ModelError(name, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise ModelError(name, "contains a NUL character")


@dataclass(frozen=True)
class Recording:
    """The audio of one call: the uploaded original and, once encoded, the MP3."""

    call_uuid: uuid_module.UUID
    status: RecordingStatus
    original_name: str
    original_size: int
    original_sha256: str
    original_storage: str | None = None  # temporary storage name while the WAV is kept
    original_key: str | None = None
    storage: str | None = None  # permanent storage name of the MP3
    key: str | None = None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    duration_ms: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
