"""What every REST route handler shares: the `RouteBase` its route classes extend
(the caller's principal, a JSON body read with its limits) and small helpers.

The route classes, one module per OpenAPI tag: `cj_api.rest_ingest` (agents),
`cj_api.rest_reading` (readers), `cj_api.rest_admin` (admins), `cj_api.rest_operations`
(probes, no token). `cj_api.rest` registers their methods as the app's routes.
"""

from __future__ import annotations

import json
from typing import Any

import trio
from quart import Response, request

from cj.auth import Authenticator, Principal, require
from cj.bodyrate import BodyLimits
from cj.config import Role
from cj.errors import ErrorCode, ServiceError
from cj_api.rest_primitives import RestError, parse_json
from cj_api.rest_streaming import IdleTimeoutChunks
from cj_api.service import CallJournalService

__all__ = [
    "API_PREFIX",
    "MAX_JSON_BYTES",
    "RouteBase",
    "client_address",
    "json_response",
    "only_parameters",
    "too_large",
]

API_PREFIX = "/api/v1"
MAX_JSON_BYTES = 1024 * 1024  # one call, or a check of 1,000 uuids
PARSE_IN_THREAD_BYTES = 256 * 1024  # bigger JSON documents are decoded off the event loop


class RouteBase:
    """The service behind the routes, who is asking, and how a JSON body is read."""

    def __init__(
        self, service: CallJournalService, authenticator: Authenticator, body_limits: BodyLimits
    ) -> None:
        self._service = service
        self._authenticator = authenticator
        self._body_limits = body_limits

    def _principal(self, role: Role) -> Principal:
        principal = self._authenticator.authenticate(request.headers.get("Authorization"))
        require(principal, role)
        return principal

    async def _read_json(self, limit: int) -> Any:
        """The request's JSON document, read with a size limit and the body rules."""
        media_type = (request.headers.get("Content-Type") or "").split(";", 1)[0]
        if media_type.strip().lower() != "application/json":
            raise RestError(
                ErrorCode.INVALID_ARGUMENT,
                f"send the body as application/json, not {media_type.strip() or 'nothing'!r}",
                status=415,
                field="Content-Type",
            )
        declared = request.content_length
        if declared is not None and declared > limit:
            raise too_large(limit)
        data = bytearray()
        async for chunk in IdleTimeoutChunks(request.body, self._body_limits):
            data += chunk
            if len(data) > limit:
                raise too_large(limit)
        if len(data) > PARSE_IN_THREAD_BYTES:
            return await trio.to_thread.run_sync(parse_json, bytes(data))
        return parse_json(bytes(data))


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """`payload` as compact UTF-8 JSON (the bytes every JSON answer of the API has)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status, headers, content_type="application/json")


def only_parameters(*known: str) -> None:
    """400 naming the first query parameter the route does not know."""
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ServiceError.invalid(
            unknown[0][:64] or "query", f"unknown query parameter (known: {allowed})"
        )


def too_large(limit: int) -> ServiceError:
    return ServiceError.resource_exhausted(
        f"the request body is over the limit of {limit} bytes for this operation",
        field="body",
    )


def client_address() -> str:
    """The client's IP address (no port: one client's connections count together)."""
    return str(request.remote_addr or "")
