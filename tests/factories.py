"""Builders for test data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cj.model import Call, Direction
from cj.phone import PhoneNumber

BASE_TIME = datetime(2026, 3, 2, 6, 0, 0, tzinfo=UTC)


def make_call(
    *,
    caller: str = "79161234567",
    destination: str = "84957001020",
    started_at: datetime | None = None,
    call_uuid: uuid.UUID | None = None,
    **overrides: Any,
) -> Call:
    started = started_at or BASE_TIME
    fields: dict[str, Any] = {
        "uuid": call_uuid or uuid.uuid4(),
        "caller": PhoneNumber(caller),
        "destination": PhoneNumber(destination),
        "started_at": started,
        "answered_at": started + timedelta(seconds=5),
        "ended_at": started + timedelta(seconds=65),
        "duration_s": 65,
        "billsec": 60,
        "direction": Direction.INBOUND,
        "source": "pbx-test",
        "hangup_cause": "NORMAL_CLEARING",
        "hangup_side": "recv_bye",
        "sip_code": 200,
        "raw": {"test": True},
    }
    fields.update(overrides)
    return Call(**fields)
