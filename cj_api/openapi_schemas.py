"""The OpenAPI document's components: the schemas of every JSON body and answer.

As strict as the server: unknown fields are refused (`additionalProperties: false`),
formats are given (uuid, date-time), enums and bounds match the validation in the REST
codecs (`cj_api.call_codec` …) and `cj.model`.
"""

from __future__ import annotations

from cj.db.audit import MAX_REASON
from cj.db.ingest import UpsertOutcome
from cj.errors import ErrorCode
from cj_api.call_codec import MAX_BATCH_CALLS
from cj_api.openapi_blocks import (
    COUNT,
    DIRECTION,
    NUMBER,
    SECONDS,
    SHA256,
    SIP_CODE,
    STATUS,
    TEXT,
    TIME,
    UUID,
    Schema,
    nullable,
    ref,
    strict_object,
)
from cj_api.service import MAX_CHECK_UUIDS

__all__ = ["schemas"]


def schemas() -> dict[str, Schema]:
    call_output = {
        "uuid": UUID,
        "source": {
            **TEXT,
            "description": "the PBX that owns the call: one of the token's sources (its "
            "first when empty); fixed once stored",
        },
        "caller_number": NUMBER,
        "caller_digits": {"type": "string", "pattern": "^[0-9]*$", "readOnly": True},
        "caller_name": TEXT,
        "caller_extension": {
            **TEXT,
            "description": "the extension or SIP login behind the caller (empty if outside)",
        },
        "destination_number": NUMBER,
        "destination_digits": {"type": "string", "pattern": "^[0-9]*$", "readOnly": True},
        "destination_extension": {
            **TEXT,
            "description": "the local extension or SIP login called (empty if outside)",
        },
        "direction": DIRECTION,
        "started_at": TIME,
        "answered_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "duration_s": SECONDS,
        "billsec": SECONDS,
        "hangup_cause": TEXT,
        "hangup_side": TEXT,
        "sip_code": nullable(SIP_CODE),
        "private": {
            "type": "boolean",
            "description": "sticky: ingest may set it, only setCallPrivacy clears it",
        },
        "recording_name": nullable({**TEXT, "minLength": 1}),
    }
    raw = {"type": "object", "description": "the CDR as the PBX wrote it"}
    call = strict_object({**call_output, "raw": raw}, required=list(call_output))
    call["description"] = "A call; `raw` is present when one call is read by uuid."
    call_input = strict_object(
        {
            **call_output,
            "answered_at": nullable(TIME),
            "ended_at": nullable(TIME),
            "recording_name": nullable(TEXT),
            "raw": nullable(raw),
        },
        required=["uuid", "caller_number", "destination_number", "started_at"],
    )
    call_input["description"] = (
        "A call to add. Times are RFC 3339 with a zone; answered_at and ended_at must not "
        "be before started_at, billsec not above duration_s. caller_digits and "
        "destination_digits are read-only: accepted and ignored. An empty recording_name "
        "means none."
    )
    recording = strict_object(
        {
            "status": STATUS,
            "original_name": {"type": "string"},
            "original_size": COUNT,
            "original_sha256": SHA256,
            "content_type": {"type": "string", "enum": ["audio/mpeg", "audio/wav"]},
            "size": COUNT,
            "sha256": SHA256,
            "duration_ms": nullable(COUNT),
            "sample_rate": nullable({"type": "integer", "minimum": 1}),
            "channels": nullable({"type": "integer", "minimum": 1}),
            "attempts": COUNT,
            "last_error": nullable({"type": "string"}),
        }
    )
    recording["description"] = (
        "content_type, size and sha256 describe what a download sends now: the MP3 once "
        "stored, the original WAV before."
    )
    error = strict_object(
        {
            "error": strict_object(
                {
                    "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
                    "message": {"type": "string"},
                    "field": {
                        "type": "string",
                        "description": "the request field, parameter or header at fault",
                    },
                },
                required=["code", "message"],
            )
        }
    )
    return {
        "Call": call,
        "CallInput": call_input,
        "Recording": recording,
        "CallRecord": strict_object({"call": ref("Call"), "recording": nullable(ref("Recording"))}),
        "AddCallResponse": strict_object(
            {"outcome": {"type": "string", "enum": [o.value for o in UpsertOutcome]}}
        ),
        "AddCallsRequest": {
            **strict_object(
                {
                    "calls": {
                        "type": "array",
                        "maxItems": MAX_BATCH_CALLS,
                        "items": {
                            "description": "a CallInput; an invalid item becomes a "
                            "rejection, it does not fail the request"
                        },
                    }
                }
            ),
        },
        "Rejection": strict_object(
            {
                "index": COUNT,
                "uuid": {"type": "string", "description": "as sent, empty if none"},
                "field": nullable({"type": "string"}),
                "reason": {"type": "string"},
                "code": {
                    "type": "string",
                    "enum": [ErrorCode.INVALID_ARGUMENT.value, ErrorCode.PERMISSION_DENIED.value],
                    "description": "PERMISSION_DENIED: the call belongs to, or names, a "
                    "source this token may not write",
                },
            }
        ),
        "PrivacyRequest": strict_object(
            {
                "private": {
                    "type": "boolean",
                    "description": "true protects the call, false releases it",
                },
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_REASON,
                    "description": "why (kept in the audit log; blank is refused)",
                },
            }
        ),
        "PrivacyResponse": strict_object(
            {
                "uuid": UUID,
                "private": {"type": "boolean", "description": "the call's privacy now"},
                "changed": {
                    "type": "boolean",
                    "description": "false when it already had this privacy (still audited)",
                },
            }
        ),
        "HoldRequest": strict_object(
            {
                "held": {"type": "boolean", "description": "true places a hold, false lifts it"},
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_REASON,
                    "description": "why (kept with the hold and in the audit log)",
                },
            }
        ),
        "HoldResponse": strict_object(
            {
                "uuid": UUID,
                "held": {"type": "boolean", "description": "whether the call is held now"},
                "changed": {
                    "type": "boolean",
                    "description": "false when it already was (or was not) held; still audited",
                },
            }
        ),
        "HoldList": strict_object(
            {
                "holds": {
                    "type": "array",
                    "items": strict_object(
                        {
                            "uuid": UUID,
                            "reason": {"type": "string"},
                            "held_by": {"type": "string"},
                            "held_at": TIME,
                        }
                    ),
                }
            }
        ),
        "AddCallsResponse": strict_object(
            {
                "inserted": COUNT,
                "updated": COUNT,
                "unchanged": COUNT,
                "rejected": COUNT,
                "rejections": {
                    "type": "array",
                    "items": ref("Rejection"),
                    "description": "the first 1,000 rejections",
                },
            }
        ),
        "CheckCallsRequest": strict_object(
            {
                "uuids": {
                    "type": "array",
                    "items": UUID,
                    "minItems": 1,
                    "maxItems": MAX_CHECK_UUIDS,
                }
            }
        ),
        "CallState": strict_object(
            {
                "uuid": UUID,
                "exists": {"type": "boolean"},
                "recording_status": nullable(STATUS),
                "recording_sha256": nullable(SHA256),
            }
        ),
        "CheckCallsResponse": strict_object(
            {"calls": {"type": "array", "items": ref("CallState")}}
        ),
        "UploadResponse": strict_object(
            {
                "duplicate": {
                    "type": "boolean",
                    "description": "true when this very recording was already stored",
                },
                "size": COUNT,
                "sha256": SHA256,
                "status": STATUS,
            }
        ),
        "SearchResponse": strict_object(
            {
                "calls": {"type": "array", "items": ref("CallRecord")},
                "next_page_token": nullable({"type": "string"}),
            }
        ),
        "Health": strict_object({"status": {"type": "string", "const": "ok"}}),
        "Ready": strict_object({"status": {"type": "string", "const": "ready"}}),
        "Link": strict_object(
            {
                "access": {"type": "string", "description": "the `access` query parameter"},
                "url": {"type": "string", "description": "the signed URL (a path)"},
                "expires_at": TIME,
            }
        ),
        "Error": error,
    }
