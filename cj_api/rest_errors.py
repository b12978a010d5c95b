"""The REST API's error answers: every error is JSON `{"error": {"code", "message",
"field"?}}`.

ServiceErrors are answered with their code's status (a `RestError`'s own, more precise
one), Quart/Werkzeug HTTP errors (404, 405, 413 …) mapped to the nearest code, anything
unexpected as 500 INTERNAL with the traceback in the log only.
"""

from __future__ import annotations

import structlog
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from cj.errors import ErrorCode, ServiceError
from cj_api.rest_app import route_label
from cj_api.rest_primitives import RestError
from cj_api.rest_route_base import json_response

__all__ = ["register_error_handlers"]

# The REST layer's events keep the logger name they have always had (cj_api.rest).
log = structlog.get_logger("cj_api.rest")

_AUTH_CHALLENGE = 'Bearer realm="calljournal"'

# Werkzeug's HTTP errors as error codes (the status line keeps the precise status).
_HTTP_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.UNIMPLEMENTED,
    408: ErrorCode.DEADLINE_EXCEEDED,
    409: ErrorCode.ABORTED,
    410: ErrorCode.GONE,
    411: ErrorCode.INVALID_ARGUMENT,
    413: ErrorCode.RESOURCE_EXHAUSTED,
    415: ErrorCode.INVALID_ARGUMENT,
    416: ErrorCode.OUT_OF_RANGE,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    431: ErrorCode.RESOURCE_EXHAUSTED,
    501: ErrorCode.UNIMPLEMENTED,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.DEADLINE_EXCEEDED,
}


def register_error_handlers(app: QuartTrio) -> None:
    app.register_error_handler(ServiceError, _on_service_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected_error)


def _error(error: ServiceError, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": error.to_dict()}, status, headers)


async def _on_service_error(error: ServiceError) -> Response:
    status = error.http_status if isinstance(error, RestError) else error.code.http_status
    headers = dict(error.headers) if isinstance(error, RestError) else {}
    retry_after = error.retry_after_header
    if retry_after is not None:
        headers["Retry-After"] = retry_after
        if error.code is ErrorCode.RESOURCE_EXHAUSTED:
            status = 429  # a limit of the caller's, not a request too large (413)
    if error.code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = _AUTH_CHALLENGE
    if status >= 500:
        log.warning("rest_error", code=error.code.value, message=error.message, path=request.path)
    return _error(error, status, headers)


async def _on_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status) or (
        ErrorCode.INVALID_ARGUMENT if status < 500 else ErrorCode.INTERNAL
    )
    headers = {name: value for name, value in error.get_headers() if name.lower() == "allow"}
    path = request.path[:200]
    if status == 404:
        message = f"no such resource: {path}"
    elif status == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method[:16]} is not allowed on {path} (allowed: {allowed})"
    elif status == 413:
        message = "the request body is too large"
        limit = request.max_content_length
        if limit is not None:
            message += f" (limit: {limit} bytes)"
    else:
        message = error.description or error.name
    return _error(ServiceError(code, message), status, headers)


async def _on_unexpected_error(error: Exception) -> Response:
    log.error(
        "rest_unexpected_error",
        method=request.method,
        route=route_label(request),
        exc_info=error,
    )
    return _error(ServiceError.internal(), 500)
