"""The REST app's Quart-Trio class: what happens around every request's handler.

`RestApp` counts and logs each answer under its route's template (`route_label`), sends
HEAD answers without a body, streams request bodies with backpressure
(`cj_api.rest_streaming`), and reads the small rest of a body a handler left unread, so
the connection stays usable (`DRAIN_TIMEOUT_S`); a bigger or stalled one is left and the
connection closed after the answer. `CallIdConverter` is the `<call:…>` of the routes.
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
import trio
from quart import Response
from quart.wrappers.response import DataBody
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from cj_api.metrics import ApiMetrics
from cj_api.rest_streaming import BackpressureConnection, BufferedBody, StreamingRequest

__all__ = ["DRAIN_LIMIT_BYTES", "DRAIN_TIMEOUT_S", "CallIdConverter", "RestApp", "route_label"]

# The REST layer's events keep the logger name they have always had (cj_api.rest).
log = structlog.get_logger("cj_api.rest")

DRAIN_LIMIT_BYTES = 1024 * 1024  # read a small unread body before answering, keep-alive
DRAIN_TIMEOUT_S = 1.0  # an early answer waits at most this long for a body's small rest
_PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RestApp(QuartTrio):
    """QuartTrio plus request metrics, bodiless HEAD answers and body backpressure."""

    asgi_http_class = BackpressureConnection
    request_class = StreamingRequest

    def __init__(self, import_name: str, metrics: ApiMetrics) -> None:
        super().__init__(import_name, static_folder=None)
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
            route = route_label(request)
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


class CallIdConverter(BaseConverter):
    """A call's uuid in a path: anything up to `/` or `:` (so `…/{uuid}:privacy` is not
    also `…/{uuid}`); the handler validates it as a UUID."""

    regex = "[^/:]+"


# (method, rule) -> label: a few dozen at most (known methods × routes), computed once.
_ROUTE_LABELS: dict[tuple[str, str | None], str] = {}


def route_label(request: Any) -> str:
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
