"""The building blocks of the OpenAPI document: schema shorthands and the value types
the schemas share (`cj_api.openapi_schemas`), and the pieces operations are made of,
error answers, JSON answers and bodies, parameters (`cj_api.openapi_paths`).
"""

from __future__ import annotations

from typing import Any

from cj.model import MAX_TEXT, Direction, RecordingStatus
from cj.phone import MAX_NUMBER_LENGTH

__all__ = [
    "AUTH_ERRORS",
    "CALL_UUID",
    "COUNT",
    "DIRECTION",
    "JSON_BODY_ERRORS",
    "MAX_DURATION_S",
    "NUMBER",
    "SECONDS",
    "SHA256",
    "SIP_CODE",
    "STATUS",
    "TEXT",
    "TIME",
    "UUID",
    "Schema",
    "header",
    "json_body",
    "json_response",
    "nullable",
    "query",
    "ref",
    "responses",
    "strict_object",
]

MAX_DURATION_S = 10 * 365 * 86400

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def strict_object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


UUID: Schema = {"type": "string", "format": "uuid"}
TIME: Schema = {"type": "string", "format": "date-time"}
TEXT: Schema = {"type": "string", "maxLength": MAX_TEXT}
NUMBER: Schema = {"type": "string", "maxLength": MAX_NUMBER_LENGTH}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
COUNT: Schema = {"type": "integer", "minimum": 0}
DIRECTION: Schema = {"type": "string", "enum": [d.value for d in Direction]}
STATUS: Schema = {"type": "string", "enum": [s.value for s in RecordingStatus]}
SECONDS: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_S}
SIP_CODE: Schema = {"type": "integer", "minimum": 100, "maximum": 699}


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
        "content": {"application/json": {"schema": ref("Error")}},
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


def json_response(description: str, schema: str, headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def responses(success: dict[str, Schema], *errors: str) -> Schema:
    """Success answers plus the listed error statuses and the ones every route may give."""
    statuses = {*errors, "404", "405", "500"}
    result = dict(success)
    for status in sorted(statuses):
        result[status] = _error_response(status)
    return result


AUTH_ERRORS = ("401", "403", "503")
JSON_BODY_ERRORS = ("400", "408", "413", "415")

CALL_UUID: Schema = {
    "name": "call_uuid",
    "in": "path",
    "required": True,
    "schema": UUID,
    "description": "the call's uuid",
}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def header(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "header", "required": required, "schema": schema,
            "description": description}  # fmt: skip


def json_body(schema: str, description: str) -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": ref(schema)}},
    }
