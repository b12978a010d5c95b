"""The OpenAPI 3.1 description of the REST API, as Python data (`document()`).

Served at `/api/v1/openapi.json`. Schemas are as strict as the server: unknown fields
are refused (`additionalProperties: false`), formats are given (uuid, date-time), enums
and bounds match the validation in the REST codecs and `cj.model`. Tests check the
document with openapi-spec-validator, that it lists exactly the app's routes, and that
the integration tests' responses validate against it.
"""

from __future__ import annotations

import copy
import importlib.metadata
from typing import Any

from cj.db.audit import MAX_REASON
from cj.db.calls import MAX_LIMIT, UpsertOutcome
from cj.errors import ErrorCode
from cj.model import MAX_TEXT, Direction, RecordingStatus
from cj.phone import MAX_NUMBER_LENGTH
from cj_api.call_codec import MAX_BATCH_CALLS
from cj_api.recording_codec import RECORDING_CONTENT_TYPES
from cj_api.search_codec import DEFAULT_LIMIT
from cj_api.service import MAX_CHECK_UUIDS, MAX_FILE_NAME

__all__ = ["document"]

MAX_DURATION_S = 10 * 365 * 86400

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


_UUID: Schema = {"type": "string", "format": "uuid"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_TEXT: Schema = {"type": "string", "maxLength": MAX_TEXT}
_NUMBER: Schema = {"type": "string", "maxLength": MAX_NUMBER_LENGTH}
_SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_DIRECTION: Schema = {"type": "string", "enum": [d.value for d in Direction]}
_STATUS: Schema = {"type": "string", "enum": [s.value for s in RecordingStatus]}
_SECONDS: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_S}
_SIP_CODE: Schema = {"type": "integer", "minimum": 100, "maximum": 699}


def _schemas() -> dict[str, Schema]:
    call_output = {
        "uuid": _UUID,
        "source": {
            **_TEXT,
            "description": "the PBX that owns the call: one of the token's sources (its "
            "first when empty); fixed once stored",
        },
        "caller_number": _NUMBER,
        "caller_digits": {"type": "string", "pattern": "^[0-9]*$", "readOnly": True},
        "caller_name": _TEXT,
        "caller_extension": {
            **_TEXT,
            "description": "the extension or SIP login behind the caller (empty if outside)",
        },
        "destination_number": _NUMBER,
        "destination_digits": {"type": "string", "pattern": "^[0-9]*$", "readOnly": True},
        "destination_extension": {
            **_TEXT,
            "description": "the local extension or SIP login called (empty if outside)",
        },
        "direction": _DIRECTION,
        "started_at": _TIME,
        "answered_at": _nullable(_TIME),
        "ended_at": _nullable(_TIME),
        "duration_s": _SECONDS,
        "billsec": _SECONDS,
        "hangup_cause": _TEXT,
        "hangup_side": _TEXT,
        "sip_code": _nullable(_SIP_CODE),
        "private": {
            "type": "boolean",
            "description": "sticky: ingest may set it, only setCallPrivacy clears it",
        },
        "recording_name": _nullable({**_TEXT, "minLength": 1}),
    }
    raw = {"type": "object", "description": "the CDR as the PBX wrote it"}
    call = _object({**call_output, "raw": raw}, required=list(call_output))
    call["description"] = "A call; `raw` is present when one call is read by uuid."
    call_input = _object(
        {
            **call_output,
            "answered_at": _nullable(_TIME),
            "ended_at": _nullable(_TIME),
            "recording_name": _nullable(_TEXT),
            "raw": _nullable(raw),
        },
        required=["uuid", "caller_number", "destination_number", "started_at"],
    )
    call_input["description"] = (
        "A call to add. Times are RFC 3339 with a zone; answered_at and ended_at must not "
        "be before started_at, billsec not above duration_s. caller_digits and "
        "destination_digits are read-only: accepted and ignored. An empty recording_name "
        "means none."
    )
    recording = _object(
        {
            "status": _STATUS,
            "original_name": {"type": "string"},
            "original_size": _COUNT,
            "original_sha256": _SHA256,
            "content_type": {"type": "string", "enum": ["audio/mpeg", "audio/wav"]},
            "size": _COUNT,
            "sha256": _SHA256,
            "duration_ms": _nullable(_COUNT),
            "sample_rate": _nullable({"type": "integer", "minimum": 1}),
            "channels": _nullable({"type": "integer", "minimum": 1}),
            "attempts": _COUNT,
            "last_error": _nullable({"type": "string"}),
        }
    )
    recording["description"] = (
        "content_type, size and sha256 describe what a download sends now: the MP3 once "
        "stored, the original WAV before."
    )
    error = _object(
        {
            "error": _object(
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
        "CallRecord": _object({"call": _ref("Call"), "recording": _nullable(_ref("Recording"))}),
        "AddCallResponse": _object(
            {"outcome": {"type": "string", "enum": [o.value for o in UpsertOutcome]}}
        ),
        "AddCallsRequest": {
            **_object(
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
        "Rejection": _object(
            {
                "index": _COUNT,
                "uuid": {"type": "string", "description": "as sent, empty if none"},
                "field": _nullable({"type": "string"}),
                "reason": {"type": "string"},
                "code": {
                    "type": "string",
                    "enum": [ErrorCode.INVALID_ARGUMENT.value, ErrorCode.PERMISSION_DENIED.value],
                    "description": "PERMISSION_DENIED: the call belongs to, or names, a "
                    "source this token may not write",
                },
            }
        ),
        "PrivacyRequest": _object(
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
        "PrivacyResponse": _object(
            {
                "uuid": _UUID,
                "private": {"type": "boolean", "description": "the call's privacy now"},
                "changed": {
                    "type": "boolean",
                    "description": "false when it already had this privacy (still audited)",
                },
            }
        ),
        "HoldRequest": _object(
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
        "HoldResponse": _object(
            {
                "uuid": _UUID,
                "held": {"type": "boolean", "description": "whether the call is held now"},
                "changed": {
                    "type": "boolean",
                    "description": "false when it already was (or was not) held; still audited",
                },
            }
        ),
        "HoldList": _object(
            {
                "holds": {
                    "type": "array",
                    "items": _object(
                        {
                            "uuid": _UUID,
                            "reason": {"type": "string"},
                            "held_by": {"type": "string"},
                            "held_at": _TIME,
                        }
                    ),
                }
            }
        ),
        "AddCallsResponse": _object(
            {
                "inserted": _COUNT,
                "updated": _COUNT,
                "unchanged": _COUNT,
                "rejected": _COUNT,
                "rejections": {
                    "type": "array",
                    "items": _ref("Rejection"),
                    "description": "the first 1,000 rejections",
                },
            }
        ),
        "CheckCallsRequest": _object(
            {
                "uuids": {
                    "type": "array",
                    "items": _UUID,
                    "minItems": 1,
                    "maxItems": MAX_CHECK_UUIDS,
                }
            }
        ),
        "CallState": _object(
            {
                "uuid": _UUID,
                "exists": {"type": "boolean"},
                "recording_status": _nullable(_STATUS),
                "recording_sha256": _nullable(_SHA256),
            }
        ),
        "CheckCallsResponse": _object({"calls": {"type": "array", "items": _ref("CallState")}}),
        "UploadResponse": _object(
            {
                "duplicate": {
                    "type": "boolean",
                    "description": "true when this very recording was already stored",
                },
                "size": _COUNT,
                "sha256": _SHA256,
                "status": _STATUS,
            }
        ),
        "SearchResponse": _object(
            {
                "calls": {"type": "array", "items": _ref("CallRecord")},
                "next_page_token": _nullable({"type": "string"}),
            }
        ),
        "Health": _object({"status": {"type": "string", "const": "ok"}}),
        "Ready": _object({"status": {"type": "string", "const": "ready"}}),
        "Link": _object(
            {
                "access": {"type": "string", "description": "the `access` query parameter"},
                "url": {"type": "string", "description": "the signed URL (a path)"},
                "expires_at": _TIME,
            }
        ),
        "Error": error,
    }


# --- responses and parameters ---------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    "400": "Invalid request (INVALID_ARGUMENT); `field` names what is wrong",
    "401": "Missing, malformed or unknown bearer token (UNAUTHENTICATED)",
    "403": "The token lacks the role this operation needs, or the call belongs to a "
    "source the token may not write (PERMISSION_DENIED)",
    "404": "No such call, recording or route (NOT_FOUND)",
    "405": "Method not allowed on this path (UNIMPLEMENTED)",
    "408": "The request body stalled or was too slow (see api.body_*; DEADLINE_EXCEEDED)",
    "409": "Conflict: FAILED_PRECONDITION (the call does not exist yet) or "
    "ALREADY_EXISTS (a different recording is stored)",
    "410": "The recording was purged after its retention period (GONE)",
    "411": "The upload's size was not declared (INVALID_ARGUMENT)",
    "413": "The body or the batch is over its limit (RESOURCE_EXHAUSTED)",
    "415": "Unsupported Content-Type (INVALID_ARGUMENT)",
    "416": "The range is outside the recording (OUT_OF_RANGE); Content-Range: bytes */size",
    "429": "Over a limit (RESOURCE_EXHAUSTED): the token's requests at once or per second, "
    "or exports at once; retry after Retry-After seconds",
    "500": "Server fault (INTERNAL or DATA_LOSS); details are in the server log",
    "503": "A dependency is down, or the recording is being moved (UNAVAILABLE): retry "
    "with backoff (after Retry-After seconds when it is sent)",
}


def _error_response(status: str) -> Schema:
    response: Schema = {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if status == "401":
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
        }
    if status == "405":
        response["headers"] = {"Allow": {"schema": {"type": "string"}}}
    if status == "416":
        response["headers"] = {"Content-Range": {"schema": {"type": "string"}}}
    if status in ("429", "503"):
        response["headers"] = {
            "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait"}
        }
    return response


def _json_response(description: str, schema: str, headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _responses(success: dict[str, Schema], *errors: str) -> Schema:
    """Success answers plus the listed error statuses and the ones every route may give."""
    statuses = {*errors, "404", "405", "500"}
    result = dict(success)
    for status in sorted(statuses):
        result[status] = _error_response(status)
    return result


_AUTH_ERRORS = ("401", "403", "503")
_JSON_BODY_ERRORS = ("400", "408", "413", "415")

_CALL_UUID: Schema = {
    "name": "call_uuid",
    "in": "path",
    "required": True,
    "schema": _UUID,
    "description": "the call's uuid",
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _header(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "header", "required": required, "schema": schema,
            "description": description}  # fmt: skip


def _json_body(schema: str, description: str) -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _paths() -> dict[str, Schema]:
    wav_body = {
        "required": True,
        "description": "The original WAV, streamed. Its size is Content-Length (or "
        "X-Content-Length with a chunked body); its sha256 is X-Content-SHA256 or "
        "Content-Digest.",
        "content": {media: {} for media in sorted(RECORDING_CONTENT_TYPES)},
    }
    audio: Schema = {"audio/mpeg": {}, "audio/wav": {}}
    download_headers = {
        "ETag": {"schema": {"type": "string"}, "description": "the sha256, quoted"},
        "Accept-Ranges": {"schema": {"type": "string", "const": "bytes"}},
        "Content-Disposition": {"schema": {"type": "string"}},
        "Content-Length": {"schema": {"type": "integer", "minimum": 0}},
        "X-Duration-Ms": {"schema": {"type": "integer", "minimum": 0}},
    }
    access = _query(
        "access",
        {"type": "string", "maxLength": 1024},
        "a signed link's token (from the link operations) instead of the Authorization "
        "header; short-lived, bound to its token, the resource and an expiry",
    )
    download_parameters = [
        _CALL_UUID,
        access,
        _header(
            "Range",
            {"type": "string"},
            "one byte range: bytes=a-b, bytes=a- or bytes=-n. Several ranges, other "
            "units or a malformed value are ignored (the whole file is sent with 200).",
        ),
        _header("If-None-Match", {"type": "string"}, "ETags held by the client: 304 if current"),
        _header("If-Range", {"type": "string"}, "apply Range only if this is the ETag"),
    ]
    download_responses = _responses(
        {
            "200": {
                "description": "The whole recording (MP3 once encoded, the WAV before)",
                "headers": download_headers,
                "content": audio,
            },
            "206": {
                "description": "The requested range",
                "headers": {**download_headers, "Content-Range": {"schema": {"type": "string"}}},
                "content": audio,
            },
            "304": {"description": "The client's copy (If-None-Match) is current"},
        },
        *_AUTH_ERRORS,
        "400",
        "410",
        "416",
        "429",
    )
    search_filters = [
        _query(
            "phone",
            {"type": "string", "pattern": "[0-9]|^[A-Za-z0-9._@+-]{1,64}$"},
            "digits to match, or an extension / SIP login",
        ),
        _query("exact", {"type": "boolean"}, "match the whole number"),
        _query("from", _TIME, "interval start (inclusive), with a zone"),
        _query("to", _TIME, "interval end (exclusive), with a zone"),
        _query("direction", _DIRECTION, "only calls of this direction"),
        _query("has_recording", {"type": "boolean"}, "with or without recording"),
    ]
    head_responses = copy.deepcopy(download_responses)
    for response in head_responses.values():
        response.pop("content", None)  # a HEAD answer has the headers only
    return {
        "/api/v1/calls": {
            "post": {
                "operationId": "addCall",
                "summary": "Add or update one call (idempotent upsert by uuid)",
                "tags": ["ingest"],
                "requestBody": _json_body("CallInput", "the call"),
                "responses": _responses(
                    {
                        "201": _json_response("Inserted", "AddCallResponse"),
                        "200": _json_response("Updated or unchanged", "AddCallResponse"),
                    },
                    *_AUTH_ERRORS,
                    *_JSON_BODY_ERRORS,
                ),
            },
            "get": {
                "operationId": "searchCalls",
                "summary": "Search calls by phone number, or by interval; newest first",
                "description": "With `phone`, calls whose caller or destination matches "
                "(by suffix of digits unless `exact`), or whose caller or destination "
                "extension equals it (case-insensitive: `1001`, `dan`), optionally within "
                "[from, to). "
                "Without `phone`, calls with from <= started_at < to (both required). "
                "Unknown parameters are refused.",
                "tags": ["search"],
                "parameters": [
                    *search_filters,
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                        "page size",
                    ),
                    _query(
                        "page_token",
                        {"type": "string", "maxLength": 512},
                        "next_page_token of the previous page of the same query (opaque; a "
                        "token not issued for this query is refused with 400)",
                    ),
                ],
                "responses": _responses(
                    {"200": _json_response("One page of calls", "SearchResponse")},
                    *_AUTH_ERRORS,
                    "400",
                    "429",
                ),
            },
        },
        "/api/v1/calls:export": {
            "get": {
                "operationId": "exportCalls",
                "summary": "The recordings of a search as one ZIP, streamed",
                "description": "Every call the search matches (the filters of searchCalls, "
                "no paging) in manifest.csv and manifest.json, last in the ZIP, with its "
                "status: included, withheld-private, no-recording or unavailable. Each "
                "included recording is a member named <started_at UTC>_<caller digits>_"
                "<destination digits>_<uuid>.mp3 (stored, ZIP64 when needed). Private "
                "recordings are never included; every recording is audited (action "
                "export). A failure half-way cuts the answer short.",
                "tags": ["search"],
                "parameters": [*search_filters, access],
                "responses": _responses(
                    {
                        "200": {
                            "description": "The ZIP (chunked; its size is not known ahead)",
                            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                            "content": {"application/zip": {}},
                        }
                    },
                    *_AUTH_ERRORS,
                    "400",
                    "429",
                ),
            },
        },
        "/api/v1/calls:export/link": {
            "post": {
                "operationId": "linkExport",
                "summary": "A signed, short-lived URL of this export (for a browser to "
                "download straight to disk)",
                "tags": ["search"],
                "parameters": search_filters,
                "responses": _responses(
                    {"200": _json_response("The link", "Link")}, *_AUTH_ERRORS, "400"
                ),
            },
        },
        "/api/v1/calls/{call_uuid}/recording/link": {
            "post": {
                "operationId": "linkRecording",
                "summary": "A signed, short-lived URL of the recording (for an audio "
                "element, which cannot send a token)",
                "description": "The privacy check and the audit run when the URL is used.",
                "tags": ["search"],
                "parameters": [_CALL_UUID],
                "responses": _responses(
                    {"200": _json_response("The link", "Link")}, *_AUTH_ERRORS, "400"
                ),
            },
        },
        "/api/v1/calls:batch": {
            "post": {
                "operationId": "addCalls",
                "summary": f"Add or update up to {MAX_BATCH_CALLS:,} calls",
                "description": "Invalid items are reported as rejections; the valid "
                "ones are stored.",
                "tags": ["ingest"],
                "requestBody": _json_body("AddCallsRequest", "the calls"),
                "responses": _responses(
                    {"200": _json_response("Counts and rejections", "AddCallsResponse")},
                    *_AUTH_ERRORS,
                    *_JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/calls:check": {
            "post": {
                "operationId": "checkCalls",
                "summary": "Which of these calls exist, and the state of their recordings",
                "tags": ["ingest"],
                "requestBody": _json_body("CheckCallsRequest", "the uuids to check"),
                "responses": _responses(
                    {"200": _json_response("One state per uuid, in order", "CheckCallsResponse")},
                    *_AUTH_ERRORS,
                    *_JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/calls/{call_uuid}:privacy": {
            "post": {
                "operationId": "setCallPrivacy",
                "summary": "Release a private call, or protect one, with a reason (audited)",
                "description": "The only way to make a private call public again: ingest "
                "may make a call private, never public. Role admin; the audit log keeps "
                "the token's name and the reason.",
                "tags": ["admin"],
                "parameters": [_CALL_UUID],
                "requestBody": _json_body("PrivacyRequest", "the privacy and why"),
                "responses": _responses(
                    {"200": _json_response("The call's privacy now", "PrivacyResponse")},
                    *_AUTH_ERRORS,
                    *_JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/calls/{call_uuid}:hold": {
            "post": {
                "operationId": "setLegalHold",
                "summary": "Place or lift a legal hold on a call, with a reason (audited)",
                "description": "Retention (`cj purge`) never purges the recording of a held "
                "call. A uuid whose call has not arrived yet may be held. Role admin.",
                "tags": ["admin"],
                "parameters": [_CALL_UUID],
                "requestBody": _json_body("HoldRequest", "place or lift, and why"),
                "responses": _responses(
                    {"200": _json_response("Whether the call is held now", "HoldResponse")},
                    *_AUTH_ERRORS,
                    *_JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/holds": {
            "get": {
                "operationId": "listLegalHolds",
                "summary": "Every legal hold, oldest first",
                "tags": ["admin"],
                "parameters": [
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 10000},
                        "at most this many (default 1000)",
                    )
                ],
                "responses": _responses(
                    {"200": _json_response("The holds", "HoldList")},
                    *_AUTH_ERRORS,
                    "400",
                ),
            }
        },
        "/api/v1/calls/{call_uuid}": {
            "get": {
                "operationId": "getCall",
                "summary": "One call with its recording state and the original CDR",
                "tags": ["search"],
                "parameters": [_CALL_UUID],
                "responses": _responses(
                    {"200": _json_response("The call", "CallRecord")}, *_AUTH_ERRORS, "400"
                ),
            }
        },
        "/api/v1/calls/{call_uuid}/recording": {
            "put": {
                "operationId": "uploadRecording",
                "summary": "Upload the call's original WAV (streamed, size and sha256 checked)",
                "description": "Acknowledged only once the bytes are durable and recorded; "
                "the encode job is queued. The same file again is answered 200 with "
                "duplicate=true; a different one is 409.",
                "tags": ["ingest"],
                "parameters": [
                    _CALL_UUID,
                    _header(
                        "X-Content-SHA256",
                        {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "sha256 of the body, hex (or send Content-Digest)",
                    ),
                    _header(
                        "Content-Digest",
                        {"type": "string"},
                        "RFC 9530: sha-256=:<base64>: (or send X-Content-SHA256)",
                    ),
                    _header(
                        "X-Content-Length",
                        {"type": "integer", "minimum": 0},
                        "the body's size when it is sent chunked (no Content-Length); if both "
                        "are sent they must agree",
                    ),
                    _header(
                        "X-File-Name",
                        {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME},
                        "original file name, percent-encoded UTF-8 (default <uuid>.wav)",
                    ),
                ],
                "requestBody": wav_body,
                "responses": _responses(
                    {
                        "201": _json_response(
                            "Stored; encoding queued",
                            "UploadResponse",
                            {"Location": {"schema": {"type": "string"}}},
                        ),
                        "200": _json_response(
                            "This recording was already stored (duplicate)", "UploadResponse"
                        ),
                    },
                    *_AUTH_ERRORS,
                    "400",
                    "408",
                    "409",
                    "411",
                    "413",
                    "415",
                ),
            },
            "get": {
                "operationId": "downloadRecording",
                "summary": "Download the recording (MP3; the WAV while still encoding)",
                "description": "Private recordings are never downloadable (403); every "
                "attempt is audited.",
                "tags": ["search"],
                "parameters": download_parameters,
                "responses": download_responses,
            },
            "head": {
                "operationId": "headRecording",
                "summary": "The download's headers without its body (audited as a download)",
                "tags": ["search"],
                "parameters": download_parameters,
                "responses": head_responses,
            },
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive",
                "tags": ["operations"],
                "security": [],
                "responses": _responses({"200": _json_response("Alive", "Health")}),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready to serve: the database answers",
                "tags": ["operations"],
                "security": [],
                "responses": _responses({"200": _json_response("Ready", "Ready")}, "503"),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": _responses(
                    {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                ),
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "tags": ["operations"],
                "security": [],
                "responses": _responses(
                    {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    }
                ),
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh copy each call)."""
    try:
        version = importlib.metadata.version("calljournal")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        version = "0.0.0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Call Journal",
            "version": version,
            "description": "Stores call metadata (CDRs) and recordings from PBXs and finds "
            "them by phone number and date. Errors are JSON "
            '`{"error": {"code", "message", "field"}}`. The gRPC service '
            "calljournal.v1.CallJournal offers the same operations.",
        },
        "tags": [
            {"name": "ingest", "description": "for agents (role agent)"},
            {"name": "search", "description": "for readers (role reader)"},
            {"name": "admin", "description": "deliberate, audited changes (role admin)"},
            {"name": "operations", "description": "probes and metadata, no token"},
        ],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from the server's auth.tokens configuration",
                }
            },
        },
    }
