"""The OpenAPI document's paths: every operation of the REST API, with its parameters,
body and answers (the error answers each may give included).

Each operationId is the endpoint name of its route in `cj_api.rest`; tests hold the
two together.
"""

from __future__ import annotations

import copy

from cj.db.calls import MAX_LIMIT
from cj_api.call_codec import MAX_BATCH_CALLS
from cj_api.openapi_blocks import (
    AUTH_ERRORS,
    CALL_UUID,
    DIRECTION,
    JSON_BODY_ERRORS,
    TIME,
    Schema,
    header,
    json_body,
    json_response,
    query,
    responses,
)
from cj_api.recording_codec import RECORDING_CONTENT_TYPES
from cj_api.search_codec import DEFAULT_LIMIT
from cj_api.service import MAX_FILE_NAME

__all__ = ["paths"]


def paths() -> dict[str, Schema]:
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
    access = query(
        "access",
        {"type": "string", "maxLength": 1024},
        "a signed link's token (from the link operations) instead of the Authorization "
        "header; short-lived, bound to its token, the resource and an expiry",
    )
    download_parameters = [
        CALL_UUID,
        access,
        header(
            "Range",
            {"type": "string"},
            "one byte range: bytes=a-b, bytes=a- or bytes=-n. Several ranges, other "
            "units or a malformed value are ignored (the whole file is sent with 200).",
        ),
        header("If-None-Match", {"type": "string"}, "ETags held by the client: 304 if current"),
        header("If-Range", {"type": "string"}, "apply Range only if this is the ETag"),
    ]
    download_responses = responses(
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
        *AUTH_ERRORS,
        "400",
        "410",
        "416",
        "429",
    )
    search_filters = [
        query(
            "phone",
            {"type": "string", "pattern": "[0-9]|^[A-Za-z0-9._@+-]{1,64}$"},
            "digits to match, or an extension / SIP login",
        ),
        query("exact", {"type": "boolean"}, "match the whole number"),
        query("from", TIME, "interval start (inclusive), with a zone"),
        query("to", TIME, "interval end (exclusive), with a zone"),
        query("direction", DIRECTION, "only calls of this direction"),
        query("has_recording", {"type": "boolean"}, "with or without recording"),
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
                "requestBody": json_body("CallInput", "the call"),
                "responses": responses(
                    {
                        "201": json_response("Inserted", "AddCallResponse"),
                        "200": json_response("Updated or unchanged", "AddCallResponse"),
                    },
                    *AUTH_ERRORS,
                    *JSON_BODY_ERRORS,
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
                    query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                        "page size",
                    ),
                    query(
                        "page_token",
                        {"type": "string", "maxLength": 512},
                        "next_page_token of the previous page of the same query (opaque; a "
                        "token not issued for this query is refused with 400)",
                    ),
                ],
                "responses": responses(
                    {"200": json_response("One page of calls", "SearchResponse")},
                    *AUTH_ERRORS,
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
                "responses": responses(
                    {
                        "200": {
                            "description": "The ZIP (chunked; its size is not known ahead)",
                            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                            "content": {"application/zip": {}},
                        }
                    },
                    *AUTH_ERRORS,
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
                "responses": responses(
                    {"200": json_response("The link", "Link")}, *AUTH_ERRORS, "400"
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
                "parameters": [CALL_UUID],
                "responses": responses(
                    {"200": json_response("The link", "Link")}, *AUTH_ERRORS, "400"
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
                "requestBody": json_body("AddCallsRequest", "the calls"),
                "responses": responses(
                    {"200": json_response("Counts and rejections", "AddCallsResponse")},
                    *AUTH_ERRORS,
                    *JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/calls:check": {
            "post": {
                "operationId": "checkCalls",
                "summary": "Which of these calls exist, and the state of their recordings",
                "tags": ["ingest"],
                "requestBody": json_body("CheckCallsRequest", "the uuids to check"),
                "responses": responses(
                    {"200": json_response("One state per uuid, in order", "CheckCallsResponse")},
                    *AUTH_ERRORS,
                    *JSON_BODY_ERRORS,
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
                "parameters": [CALL_UUID],
                "requestBody": json_body("PrivacyRequest", "the privacy and why"),
                "responses": responses(
                    {"200": json_response("The call's privacy now", "PrivacyResponse")},
                    *AUTH_ERRORS,
                    *JSON_BODY_ERRORS,
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
                "parameters": [CALL_UUID],
                "requestBody": json_body("HoldRequest", "place or lift, and why"),
                "responses": responses(
                    {"200": json_response("Whether the call is held now", "HoldResponse")},
                    *AUTH_ERRORS,
                    *JSON_BODY_ERRORS,
                ),
            }
        },
        "/api/v1/holds": {
            "get": {
                "operationId": "listLegalHolds",
                "summary": "Every legal hold, oldest first",
                "tags": ["admin"],
                "parameters": [
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 10000},
                        "at most this many (default 1000)",
                    )
                ],
                "responses": responses(
                    {"200": json_response("The holds", "HoldList")},
                    *AUTH_ERRORS,
                    "400",
                ),
            }
        },
        "/api/v1/calls/{call_uuid}": {
            "get": {
                "operationId": "getCall",
                "summary": "One call with its recording state and the original CDR",
                "tags": ["search"],
                "parameters": [CALL_UUID],
                "responses": responses(
                    {"200": json_response("The call", "CallRecord")}, *AUTH_ERRORS, "400"
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
                    CALL_UUID,
                    header(
                        "X-Content-SHA256",
                        {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "sha256 of the body, hex (or send Content-Digest)",
                    ),
                    header(
                        "Content-Digest",
                        {"type": "string"},
                        "RFC 9530: sha-256=:<base64>: (or send X-Content-SHA256)",
                    ),
                    header(
                        "X-Content-Length",
                        {"type": "integer", "minimum": 0},
                        "the body's size when it is sent chunked (no Content-Length); if both "
                        "are sent they must agree",
                    ),
                    header(
                        "X-File-Name",
                        {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME},
                        "original file name, percent-encoded UTF-8 (default <uuid>.wav)",
                    ),
                ],
                "requestBody": wav_body,
                "responses": responses(
                    {
                        "201": json_response(
                            "Stored; encoding queued",
                            "UploadResponse",
                            {"Location": {"schema": {"type": "string"}}},
                        ),
                        "200": json_response(
                            "This recording was already stored (duplicate)", "UploadResponse"
                        ),
                    },
                    *AUTH_ERRORS,
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
                "responses": responses({"200": json_response("Alive", "Health")}),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready to serve: the database answers",
                "tags": ["operations"],
                "security": [],
                "responses": responses({"200": json_response("Ready", "Ready")}, "503"),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": responses(
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
                "responses": responses(
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
