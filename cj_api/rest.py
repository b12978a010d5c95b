"""The REST API: a Quart-Trio app that translates HTTP to `CallJournalService`.

Routes (DESIGN §5; the contract is `cj_api.openapi`, served at /api/v1/openapi.json):

    POST /api/v1/calls                     add (upsert) one call          agent
    POST /api/v1/calls:batch               add up to 10,000 calls         agent
    POST /api/v1/calls:check               which uuids exist              agent
    PUT  /api/v1/calls/{uuid}/recording    upload the WAV, streamed       agent
    POST /api/v1/calls/{uuid}:privacy      release or protect a call      admin
    POST /api/v1/calls/{uuid}:hold         place or lift a legal hold     admin
    GET  /api/v1/holds                     every legal hold               admin
    GET  /api/v1/calls?…                   search by phone or interval    reader
    GET  /api/v1/calls/{uuid}              one call with its raw CDR      reader
    GET|HEAD /api/v1/calls/{uuid}/recording  download (Range, ETag)       reader
    GET  /api/v1/calls:export?…            a search's recordings as a ZIP reader (cj_api.export)
    POST /api/v1/calls/{uuid}/recording/link  a signed, short-lived URL   reader (cj_api.links)
    POST /api/v1/calls:export/link?…       the same for an export         reader
    GET  / /console.js /console.css …      the web console (cj_api.console), no token
    GET  /healthz /readyz /metrics /api/v1/openapi.json                   no token

Authentication is `Authorization: Bearer <token>`; the role is checked here before any
body is read (so a wrong token never streams a file and never learns about validation),
and again by the service, which stays the authority.

Every error is JSON `{"error": {"code", "message", "field"?}}`: ServiceErrors with their
code's status, Quart/Werkzeug HTTP errors (404, 405, 413 …) mapped to the nearest code,
anything unexpected as 500 INTERNAL with the traceback in the log only. Errors raised
before a request reaches the app (hypercorn refusing a 16 KiB+ header block with 431,
malformed HTTP with 400) are hypercorn's and have empty bodies.

Request bodies are streamed with backpressure: the server stops reading from the socket
while more than `BODY_BUFFER_BYTES` wait for the handler, so a fast client uploading to a
slow storage does not fill the memory. Every body is held to the body rules
(`cj.bodyrate.BodyLimits`): silent for `idle_timeout_s`, slower than
`min_rate_bytes_per_s` on average after `rate_grace_s`, or longer than `timeout_s` in
all, and the request ends with 408 at that moment. A request refused before its body
was read (wrong token, unknown call, too big) is answered at once: a small rest of a
body (declared, or chunked) is drained for at most `DRAIN_TIMEOUT_S` so the connection
stays usable; otherwise (big, too slow, stalled) the body is not read, the answer says
`Connection: close` and the connection is closed.

Decisions worth knowing as a client:
- Uploads need their size up front: `Content-Length`, or `X-Content-Length` with a
  chunked body (411 otherwise; if both are sent they must agree).
- A Range header asking for several ranges, another unit, or malformed, is ignored: the
  whole file is sent with 200 (RFC 9110 allows it; no multipart answers). An
  unsatisfiable single range is 416 with `Content-Range: bytes */size`.
- HEAD of a recording is audited like a download (it reveals the same metadata); so
  is every refused download, bad credentials included (see `cj_api.downloads`).
- A download stops when its call turns private or its recording is purged: the body
  ends short of its Content-Length (HTTP/2: the stream is reset).
- Over a token's limits (`cj_api.limits`) searches and downloads are answered 429 with
  `Retry-After`; a recording being moved by the encoder, 503 with `Retry-After`.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
import trio
from quart import Response, request
from quart.wrappers.response import DataBody, ResponseBody
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from cj.auth import Authenticator, Principal, require
from cj.bodyrate import BodyLimits
from cj.config import Role
from cj.db.calls import UpsertOutcome
from cj.db.wire import search_json
from cj.errors import ErrorCode, ServiceError
from cj.model import Call
from cj_api import openapi
from cj_api.admin_codec import (
    hold_change_to_json,
    hold_request_from_json,
    hold_to_json,
    privacy_change_to_json,
    privacy_request_from_json,
)
from cj_api.call_codec import (
    MAX_BATCH_CALLS,
    add_call_outcome_to_json,
    add_calls_result_to_json,
    batch_items_from_json,
    call_from_json,
    call_state_to_json,
    check_uuids_from_json,
    record_to_json,
)
from cj_api.console import register_console
from cj_api.downloads import DownloadInfo
from cj_api.export import CallsExport, Capacity, export_query_from_params
from cj_api.holds import DEFAULT_LIST as DEFAULT_HOLDS
from cj_api.links import LINK_PARAMETER, LinkSigner, export_resource, recording_resource
from cj_api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from cj_api.recording_codec import (
    select_range,
    upload_header_from_headers,
    upload_result_to_json,
)
from cj_api.rest_primitives import (
    RestError,
    etag_matches,
    format_timestamp,
    parse_json,
    parse_uuid,
)
from cj_api.rest_streaming import (
    BackpressureConnection,
    BufferedBody,
    IdleTimeoutChunks,
    StreamBody,
    StreamingRequest,
)
from cj_api.search_codec import search_query_from_params
from cj_api.service import MAX_CHECK_UUIDS, CallJournalService, InvalidCall

__all__ = [
    "API_PREFIX",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_CALLS",
    "MAX_JSON_BYTES",
    "create_rest_app",
]

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"
MAX_JSON_BYTES = 1024 * 1024  # one call, or a check of 1,000 uuids
MAX_BATCH_BYTES = 64 * 1024 * 1024  # 10,000 calls with FreeSWITCH-sized raw documents
DRAIN_LIMIT_BYTES = 1024 * 1024  # read a small unread body before answering, keep-alive
PARSE_IN_THREAD_BYTES = 256 * 1024  # bigger JSON documents are decoded off the event loop
DEFAULT_BODY_IDLE_TIMEOUT_S = 60.0
DEFAULT_LINK_TTL_S = 300.0
DRAIN_TIMEOUT_S = 1.0  # an early answer waits at most this long for a body's small rest
# A download may take as long as sending its bytes at this rate needs (plus a minute):
# a reader stuck for longer holds a storage stream for nothing.
MIN_SEND_BYTES_PER_S = 64 * 1024
_PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
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


def create_rest_app(
    service: CallJournalService,
    authenticator: Authenticator,
    metrics: ApiMetrics,
    *,
    max_recording_bytes: int,
    body_idle_timeout_s: float = DEFAULT_BODY_IDLE_TIMEOUT_S,
    body_limits: BodyLimits | None = None,
    console: bool = True,
    export_max_calls: int = 50_000,
    export_concurrency: int = 2,
    export_limiter: Capacity | None = None,
    links: LinkSigner | None = None,
    health: Callable[[], Mapping[str, object]] | None = None,
) -> QuartTrio:
    """The REST application, to be served by `cj_api.rest_server.serve_rest`.

    `max_recording_bytes` bounds uploads (Quart's 16 MB default does not apply; JSON
    bodies have their own, smaller limits). `body_limits` are the body rules (408 when
    one breaks); without them, `body_idle_timeout_s` alone (no rate or total rule).
    `console` serves the web console at `/`; `export_*` bound the ZIP exports
    (`cj_api.export`); `health` adds to `/healthz`'s answer (the worker processes).
    """
    if max_recording_bytes <= 0:
        raise ValueError("max_recording_bytes must be positive")
    if body_idle_timeout_s <= 0:
        raise ValueError("body_idle_timeout_s must be positive")
    if body_limits is None:
        body_limits = BodyLimits(
            idle_timeout_s=body_idle_timeout_s, min_rate_bytes_per_s=0, timeout_s=math.inf
        )
    app = _RestApp(metrics)
    # The upload route streams up to this; JSON routes enforce their own limits.
    app.config["MAX_CONTENT_LENGTH"] = max_recording_bytes
    # Bodies are iterated, never awaited whole: the idle timeout above applies instead.
    app.config["BODY_TIMEOUT"] = None
    app.config["RESPONSE_TIMEOUT"] = 60.0  # JSON answers; downloads set their own
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # only documented methods exist
    # No redirects (a JSON API answers 404, it does not 308 to a canonical path).
    app.url_map.strict_slashes = True
    app.url_map.merge_slashes = False
    app.url_map.converters["call"] = _CallIdConverter

    routes = _Routes(service, authenticator, metrics, body_limits)
    routes.register(app)
    # `export_limiter` (shared by the workers) replaces this process's own.
    limiter = export_limiter or trio.CapacityLimiter(export_concurrency)
    routes.exports = (export_max_calls, limiter)
    routes.links = links or LinkSigner(None, DEFAULT_LINK_TTL_S)
    routes.health = health
    if console:
        register_console(app)
    app.register_error_handler(ServiceError, _on_service_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected_error)
    return app


# --- the application class ---------------------------------------------------------------


class _RestApp(QuartTrio):
    """QuartTrio plus request metrics, bodiless HEAD answers and body backpressure."""

    asgi_http_class = BackpressureConnection
    request_class = StreamingRequest

    def __init__(self, metrics: ApiMetrics) -> None:
        super().__init__(__name__, static_folder=None)
        self._metrics = metrics

    async def handle_request(self, request: Any) -> Any:
        started = time.perf_counter()
        status = 499  # the client went away before it got an answer (nginx's convention)
        try:
            response = await super().handle_request(request)
            if isinstance(response, Response):
                await self._settle_body(request, response)
                if request.method == "HEAD":
                    # Headers as for GET (Content-Length included), never a body: h11
                    # refuses to send one, and it would be a protocol error anyway.
                    response.response = DataBody(b"")
            status = response.status_code
            return response
        except Exception:
            status = 500
            raise
        finally:
            route = _route_label(request)
            seconds = time.perf_counter() - started
            self._metrics.observe("rest", route, str(status), seconds)
            emit = log.debug if request.path in _PROBE_ROUTES else log.info
            emit(
                "http_request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )

    async def _settle_body(self, request: Any, response: Response) -> None:
        """Read a small body the handler left unread (an early error), so the connection
        can be reused and the client does not meet a reset before reading our answer;
        a big one is left, and the connection closed after the answer."""
        body = request.body
        if not isinstance(body, BufferedBody) or body.complete:
            return
        declared = request.content_length
        # A stalled body will not move: answer now. Others get DRAIN_TIMEOUT_S at most.
        worth_reading = not body.stalled and (
            declared is None or declared - body.received <= DRAIN_LIMIT_BYTES
        )
        if worth_reading and await self._drain(body):
            return
        if request.http_version.startswith("1"):  # HTTP/2 resets just the stream
            response.headers["Connection"] = "close"

    async def _drain(self, body: BufferedBody) -> bool:
        """Read and drop the rest of `body`; False if it is too big, too slow or refused."""
        drained = 0
        with trio.move_on_after(DRAIN_TIMEOUT_S):
            try:
                async for chunk in body:
                    drained += len(chunk)
                    if drained > DRAIN_LIMIT_BYTES:
                        return False
            except HTTPException:
                return False  # over MAX_CONTENT_LENGTH
            return True
        return False


_CONVERTER = re.compile(r"<[^:>]+:")


class _CallIdConverter(BaseConverter):
    """A call's uuid in a path: anything up to `/` or `:` (so `…/{uuid}:privacy` is not
    also `…/{uuid}`); the handler validates it as a UUID."""

    regex = "[^/:]+"


# (method, rule) -> label: a few dozen at most (known methods × routes), computed once.
_ROUTE_LABELS: dict[tuple[str, str | None], str] = {}


def _route_label(request: Any) -> str:
    """`METHOD /template` for metrics: the rule, never the raw path (cardinality)."""
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    rule = getattr(request, "url_rule", None)
    key = (method, None if rule is None else rule.rule)
    label = _ROUTE_LABELS.get(key)
    if label is None:
        # Without converters: `/calls/<call_uuid>`, as the labels have always been.
        template = _CONVERTER.sub("<", rule.rule) if rule is not None else "unmatched"
        label = _ROUTE_LABELS[key] = f"{method} {template}"
    return label


# --- routes ------------------------------------------------------------------------------


class _Routes:
    def __init__(
        self,
        service: CallJournalService,
        authenticator: Authenticator,
        metrics: ApiMetrics,
        body_limits: BodyLimits,
    ) -> None:
        self._service = service
        self._authenticator = authenticator
        self._metrics = metrics
        self._body_limits = body_limits
        self._openapi = json.dumps(openapi.document(), separators=(",", ":")).encode()
        self.exports: tuple[int, Capacity] = (50_000, trio.CapacityLimiter(2))
        self.links = LinkSigner(None, DEFAULT_LINK_TTL_S)
        self.health: Callable[[], Mapping[str, object]] | None = None  # /healthz extras

    def register(self, app: QuartTrio) -> None:
        """Endpoint names are the OpenAPI operationIds (tests hold the two together)."""
        calls = f"{API_PREFIX}/calls"
        recording = f"{calls}/<call:call_uuid>/recording"
        add = app.add_url_rule
        add(calls, "addCall", self.add_call, methods=["POST"])
        add(calls, "searchCalls", self.search_calls, methods=["GET"])
        add(f"{calls}:batch", "addCalls", self.add_calls, methods=["POST"])
        add(f"{calls}:check", "checkCalls", self.check_calls, methods=["POST"])
        add(f"{calls}:export", "exportCalls", self.export_calls, methods=["GET"])
        add(f"{calls}:export/link", "linkExport", self.link_export, methods=["POST"])
        add(f"{recording}/link", "linkRecording", self.link_recording, methods=["POST"])
        add(f"{calls}/<call:call_uuid>", "getCall", self.get_call, methods=["GET"])
        add(recording, "uploadRecording", self.upload_recording, methods=["PUT"])
        add(
            f"{calls}/<call:call_uuid>:privacy",
            "setCallPrivacy",
            self.set_privacy,
            methods=["POST"],
        )
        add(f"{calls}/<call:call_uuid>:hold", "setLegalHold", self.set_hold, methods=["POST"])
        add(f"{API_PREFIX}/holds", "listLegalHolds", self.list_holds, methods=["GET"])
        add(recording, "downloadRecording", self.download_recording, methods=["GET", "HEAD"])
        add("/healthz", "healthz", self.healthz, methods=["GET"])
        add("/readyz", "readyz", self.readyz, methods=["GET"])
        add("/metrics", "metrics", self.metrics, methods=["GET"])
        add(f"{API_PREFIX}/openapi.json", "getOpenApi", self.get_openapi, methods=["GET"])

    # --- ingest ---------------------------------------------------------------------

    async def add_call(self) -> Response:
        principal = self._principal(Role.AGENT)
        call = call_from_json(await self._read_json(MAX_JSON_BYTES))
        outcome = await self._service.add_call(principal, call)
        status = 201 if outcome is UpsertOutcome.INSERTED else 200
        return _json(add_call_outcome_to_json(outcome), status)

    async def add_calls(self) -> Response:
        principal = self._principal(Role.AGENT)
        items = batch_items_from_json(await self._read_json(MAX_BATCH_BYTES), MAX_BATCH_CALLS)
        result = await self._service.add_calls(principal, _iterate(items))
        return _json(add_calls_result_to_json(result))

    async def check_calls(self) -> Response:
        principal = self._principal(Role.AGENT)
        uuids = check_uuids_from_json(await self._read_json(MAX_JSON_BYTES), MAX_CHECK_UUIDS)
        states = await self._service.check_calls(principal, uuids)
        return _json({"calls": [call_state_to_json(state) for state in states]})

    async def upload_recording(self, call_uuid: str) -> Response:
        principal = self._principal(Role.AGENT)
        target = parse_uuid(call_uuid, "call_uuid")
        header = upload_header_from_headers(target, request.headers)
        # Bounded here too: a duplicate upload's body is drained, not checked, by the service.
        size_field = "Content-Length" if request.content_length is not None else "X-Content-Length"
        chunks = IdleTimeoutChunks(
            request.body, self._body_limits, max_bytes=header.size, size_field=size_field
        )
        try:
            result = await self._service.upload_recording(principal, header, chunks)
        except ServiceError as exc:
            raise _name_upload_header(exc) from None
        location = f"{API_PREFIX}/calls/{target}/recording"
        status = 200 if result.duplicate else 201
        return _json(upload_result_to_json(result), status, {"Location": location})

    # --- administration -------------------------------------------------------------

    async def set_hold(self, call_uuid: str) -> Response:
        principal = self._principal(Role.ADMIN)
        target = parse_uuid(call_uuid, "call_uuid")
        held, reason = hold_request_from_json(await self._read_json(MAX_JSON_BYTES))
        change = await self._service.holds.set(principal, target, held=held, reason=reason)
        return _json(hold_change_to_json(change))

    async def list_holds(self) -> Response:
        principal = self._principal(Role.ADMIN)
        _only_parameters("limit")
        text = request.args.get("limit", str(DEFAULT_HOLDS))
        if not re.fullmatch(r"[0-9]{1,6}", text.strip()):
            raise ServiceError.invalid("limit", "must be an integer")
        holds = await self._service.holds.list(principal, int(text))
        return _json({"holds": [hold_to_json(hold) for hold in holds]})

    async def set_privacy(self, call_uuid: str) -> Response:
        principal = self._principal(Role.ADMIN)
        target = parse_uuid(call_uuid, "call_uuid")
        private, reason = privacy_request_from_json(await self._read_json(MAX_JSON_BYTES))
        change = await self._service.set_privacy(principal, target, private=private, reason=reason)
        return _json(privacy_change_to_json(change))

    # --- reading --------------------------------------------------------------------

    async def search_calls(self) -> Response:
        principal = self._principal(Role.READER)
        params = request.args.to_dict(flat=False)
        # Built inside the service, after its role check: validation errors come second.
        page = await self._service.search_as(
            principal, lambda: search_query_from_params(params), search_json
        )
        # PostgreSQL wrote the JSON (cj.db.wire): the bytes go out as they came.
        return Response(page.body, 200, content_type="application/json")

    async def get_call(self, call_uuid: str) -> Response:
        principal = self._principal(Role.READER)
        record = await self._service.get_call(principal, parse_uuid(call_uuid, "call_uuid"))
        return _json(record_to_json(record, include_raw=True))

    async def download_recording(self, call_uuid: str) -> Response:
        _only_parameters(LINK_PARAMETER)
        address = _client_address()
        principal = await self._download_principal(address, call_uuid)
        target = parse_uuid(call_uuid, "call_uuid")
        info = await self._service.prepare_download(principal, target, address)
        downloads = self._service.downloads
        if etag_matches(request.headers.get("If-None-Match"), info.etag):
            await downloads.audit_without_body(principal, info, address, "not_modified")
            return Response(b"", 304, _download_headers(info))
        try:
            chosen = select_range(
                request.headers.get("Range"), request.headers.get("If-Range"), info.etag, info.size
            )
        except ServiceError as exc:
            await downloads.audit_refusal(principal, info.call_uuid, exc, address)
            raise
        start, end = (0, info.size) if chosen is None else (chosen.start, chosen.end)
        if request.method == "HEAD":
            await downloads.audit_without_body(principal, info, address, "HEAD")
            body: ResponseBody = DataBody(b"")
        else:
            # Opened before the answer is chosen: its first bytes are there, and `info` is
            # what is really sent (a whole download follows the WAV to its new MP3).
            stream = await StreamBody.open(
                self._service, principal, info, start, None if chosen is None else end, address
            )
            info, start, end = stream.opened.info, stream.opened.start, stream.opened.end
            body = stream
        headers = _download_headers(info)
        if chosen is not None:
            headers["Content-Range"] = chosen.content_range
        status = 200 if chosen is None else 206
        response = Response(body, status, headers, content_type=info.content_type)
        response.headers["Content-Length"] = str(end - start)
        response.timeout = 60.0 + (end - start) / MIN_SEND_BYTES_PER_S
        return response

    async def export_calls(self) -> Response:
        params = request.args.to_dict(flat=False)
        principal = self._reader(lambda: export_resource(params))
        params.pop(LINK_PARAMETER, None)
        max_calls, limiter = self.exports
        query = export_query_from_params(params)
        body = CallsExport(self._service, principal, query, max_calls=max_calls, limiter=limiter)
        await body.start()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = {
            "Content-Disposition": f'attachment; filename="calls-{stamp}.zip"',
            "Cache-Control": "private, no-store",
        }
        response = Response(body, 200, headers, content_type="application/zip")
        response.timeout = None  # as long as it takes; bounded by export_concurrency
        return response

    async def link_recording(self, call_uuid: str) -> Response:
        principal = self._principal(Role.READER)
        target = parse_uuid(call_uuid, "call_uuid")
        return self._link(principal, recording_resource(target), f"calls/{target}/recording?")

    async def link_export(self) -> Response:
        principal = self._principal(Role.READER)
        params = request.args.to_dict(flat=False)
        export_query_from_params(params)  # a link to a refused export is no use
        resource = export_resource(params)
        return self._link(principal, resource, f"calls:export?{resource[len('export:') :]}&")

    def _link(self, principal: Principal, resource: str, path: str) -> Response:
        access, expires = self.links.issue(principal.name, resource)
        log.info("link_issued", actor=principal.name, resource=resource[:200], expires=expires)
        return _json(
            {
                "access": access,
                "url": f"{API_PREFIX}/{path}{LINK_PARAMETER}={quote(access)}",
                "expires_at": format_timestamp(datetime.fromtimestamp(expires, UTC)),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _reader(self, resource: Callable[[], str]) -> Principal:
        """The reader behind the Authorization header, or behind a signed link
        (`?access=`) for `resource` (called only then)."""
        access = request.args.get(LINK_PARAMETER)
        if access is None:
            return self._principal(Role.READER)
        principal = self._authenticator.principal_named(self.links.verify(access, resource()))
        require(principal, Role.READER)
        return principal

    async def _download_principal(self, address: str, call_uuid: str) -> Principal:
        """The reader downloading (by its header, or by a signed link), or the refusal,
        audited (aggregated) either way."""
        authorization = request.headers.get("Authorization")
        access = request.args.get(LINK_PARAMETER)
        try:
            if access is None:
                principal = self._authenticator.authenticate(authorization)
            else:
                resource = recording_resource(parse_uuid(call_uuid, "call_uuid"))
                principal = self._authenticator.principal_named(self.links.verify(access, resource))
        except ServiceError as exc:
            sent = authorization is not None or access is not None
            await self._service.downloads.note_refused_authentication(
                None, sent, exc, address, _uuid_or_none(call_uuid)
            )
            raise
        try:
            require(principal, Role.READER)
        except ServiceError as exc:
            await self._service.downloads.note_refused_authentication(
                principal, True, exc, address, _uuid_or_none(call_uuid)
            )
            raise
        return principal

    # --- operations -----------------------------------------------------------------

    async def healthz(self) -> Response:
        extra = self.health() if self.health is not None else {}
        return _json({"status": "ok", **extra})

    async def readyz(self) -> Response:
        await self._service.ready()
        return _json({"status": "ready"})

    async def metrics(self) -> Response:
        return Response(self._metrics.render(), 200, content_type=CONTENT_TYPE_LATEST)

    async def get_openapi(self) -> Response:
        return Response(self._openapi, 200, content_type="application/json")

    # --- helpers --------------------------------------------------------------------

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
            raise _too_large(limit)
        data = bytearray()
        async for chunk in IdleTimeoutChunks(request.body, self._body_limits):
            data += chunk
            if len(data) > limit:
                raise _too_large(limit)
        if len(data) > PARSE_IN_THREAD_BYTES:
            return await trio.to_thread.run_sync(parse_json, bytes(data))
        return parse_json(bytes(data))


def _only_parameters(*known: str) -> None:
    """400 naming the first query parameter the route does not know."""
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ServiceError.invalid(
            unknown[0][:64] or "query", f"unknown query parameter (known: {allowed})"
        )


def _too_large(limit: int) -> ServiceError:
    return ServiceError.resource_exhausted(
        f"the request body is over the limit of {limit} bytes for this operation",
        field="body",
    )


async def _iterate(items: list[Call | InvalidCall]) -> AsyncIterator[Call | InvalidCall]:
    for item in items:
        yield item


# Which header a field of the service's UploadHeader came from, for REST error messages.
def _name_upload_header(error: ServiceError) -> ServiceError:
    names = {
        "size": "X-Content-Length" if "Content-Length" not in request.headers else "Content-Length",
        "sha256": "X-Content-SHA256"
        if "X-Content-SHA256" in request.headers or "Content-Digest" not in request.headers
        else "Content-Digest",
        "file_name": "X-File-Name",
    }
    if error.field not in names:
        return error
    renamed = ServiceError(error.code, error.message, field=names[error.field])
    renamed.__cause__ = error.__cause__
    return renamed


def _client_address() -> str:
    """The client's IP address (no port: one client's connections count together)."""
    return str(request.remote_addr or "")


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _download_headers(info: DownloadInfo) -> dict[str, str]:
    headers = {
        "ETag": info.etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{info.file_name}"',
        # Authenticated content: a shared cache must not keep it.
        "Cache-Control": "private, no-cache",
    }
    if info.duration_ms is not None:
        headers["X-Duration-Ms"] = str(info.duration_ms)
    return headers


# --- errors ------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status, headers, content_type="application/json")


def _error(error: ServiceError, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": error.to_dict()}, status, headers)


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
        route=_route_label(request),
        exc_info=error,
    )
    return _error(ServiceError.internal(), 500)
