"""The REST API: a Quart-Trio app that translates HTTP to `CallJournalService`.

This module builds the app (`create_rest_app`) and holds its table of routes; the
handlers are in one module per OpenAPI tag (`cj_api.rest_ingest`, `cj_api.rest_reading`,
`cj_api.rest_admin`, `cj_api.rest_operations`), the JSON and header codecs in
`cj_api.call_codec`, `cj_api.search_codec`, `cj_api.recording_codec` and
`cj_api.admin_codec`.

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
anything unexpected as 500 INTERNAL with the traceback in the log only
(`cj_api.rest_errors`). Errors raised
before a request reaches the app (hypercorn refusing a 16 KiB+ header block with 431,
malformed HTTP with 400) are hypercorn's and have empty bodies.

Request bodies are streamed with backpressure (`cj_api.rest_app`, `cj_api.rest_streaming`):
the server stops reading from the socket
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

import math
from collections.abc import Callable, Mapping

import trio
from quart_trio import QuartTrio

from cj.auth import Authenticator
from cj.bodyrate import BodyLimits
from cj_api.call_codec import MAX_BATCH_CALLS
from cj_api.console import register_console
from cj_api.export import Capacity
from cj_api.links import LinkSigner
from cj_api.metrics import ApiMetrics
from cj_api.rest_admin import AdminRoutes
from cj_api.rest_app import CallIdConverter, RestApp
from cj_api.rest_errors import register_error_handlers
from cj_api.rest_ingest import MAX_BATCH_BYTES, IngestRoutes
from cj_api.rest_operations import OperationRoutes
from cj_api.rest_reading import ReadingRoutes
from cj_api.rest_route_base import API_PREFIX, MAX_JSON_BYTES
from cj_api.service import CallJournalService

__all__ = [
    "API_PREFIX",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_CALLS",
    "MAX_JSON_BYTES",
    "create_rest_app",
]

DEFAULT_BODY_IDLE_TIMEOUT_S = 60.0
DEFAULT_LINK_TTL_S = 300.0


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
    app = RestApp(__name__, metrics)
    # The upload route streams up to this; JSON routes enforce their own limits.
    app.config["MAX_CONTENT_LENGTH"] = max_recording_bytes
    # Bodies are iterated, never awaited whole: the idle timeout above applies instead.
    app.config["BODY_TIMEOUT"] = None
    app.config["RESPONSE_TIMEOUT"] = 60.0  # JSON answers; downloads set their own
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # only documented methods exist
    # No redirects (a JSON API answers 404, it does not 308 to a canonical path).
    app.url_map.strict_slashes = True
    app.url_map.merge_slashes = False
    app.url_map.converters["call"] = CallIdConverter

    # `export_limiter` (shared by the workers) replaces this process's own.
    limiter = export_limiter or trio.CapacityLimiter(export_concurrency)
    _register_routes(
        app,
        IngestRoutes(service, authenticator, body_limits),
        AdminRoutes(service, authenticator, body_limits),
        ReadingRoutes(
            service,
            authenticator,
            body_limits,
            exports=(export_max_calls, limiter),
            links=links or LinkSigner(None, DEFAULT_LINK_TTL_S),
        ),
        OperationRoutes(service, metrics, health),
    )
    if console:
        register_console(app)
    register_error_handlers(app)
    return app


def _register_routes(
    app: QuartTrio,
    ingest: IngestRoutes,
    admin: AdminRoutes,
    reading: ReadingRoutes,
    operations: OperationRoutes,
) -> None:
    """Endpoint names are the OpenAPI operationIds (tests hold the two together)."""
    calls = f"{API_PREFIX}/calls"
    recording = f"{calls}/<call:call_uuid>/recording"
    add = app.add_url_rule
    add(calls, "addCall", ingest.add_call, methods=["POST"])
    add(calls, "searchCalls", reading.search_calls, methods=["GET"])
    add(f"{calls}:batch", "addCalls", ingest.add_calls, methods=["POST"])
    add(f"{calls}:check", "checkCalls", ingest.check_calls, methods=["POST"])
    add(f"{calls}:export", "exportCalls", reading.export_calls, methods=["GET"])
    add(f"{calls}:export/link", "linkExport", reading.link_export, methods=["POST"])
    add(f"{recording}/link", "linkRecording", reading.link_recording, methods=["POST"])
    add(f"{calls}/<call:call_uuid>", "getCall", reading.get_call, methods=["GET"])
    add(recording, "uploadRecording", ingest.upload_recording, methods=["PUT"])
    add(
        f"{calls}/<call:call_uuid>:privacy",
        "setCallPrivacy",
        admin.set_privacy,
        methods=["POST"],
    )
    add(f"{calls}/<call:call_uuid>:hold", "setLegalHold", admin.set_hold, methods=["POST"])
    add(f"{API_PREFIX}/holds", "listLegalHolds", admin.list_holds, methods=["GET"])
    add(recording, "downloadRecording", reading.download_recording, methods=["GET", "HEAD"])
    add("/healthz", "healthz", operations.healthz, methods=["GET"])
    add("/readyz", "readyz", operations.readyz, methods=["GET"])
    add("/metrics", "metrics", operations.metrics, methods=["GET"])
    add(f"{API_PREFIX}/openapi.json", "getOpenApi", operations.get_openapi, methods=["GET"])
