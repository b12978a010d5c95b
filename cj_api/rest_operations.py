"""The REST routes of operations, no token: `/healthz`, `/readyz`, `/metrics` and this
API's OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from quart import Response

from cj_api import openapi
from cj_api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from cj_api.rest_route_base import json_response
from cj_api.service import CallJournalService

__all__ = ["OperationRoutes"]


class OperationRoutes:
    """healthz, readyz, metrics, getOpenApi."""

    def __init__(
        self,
        service: CallJournalService,
        metrics: ApiMetrics,
        health: Callable[[], Mapping[str, object]] | None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._health = health  # /healthz extras (the worker processes)
        self._openapi = json.dumps(openapi.document(), separators=(",", ":")).encode()

    async def healthz(self) -> Response:
        extra = self._health() if self._health is not None else {}
        return json_response({"status": "ok", **extra})

    async def readyz(self) -> Response:
        await self._service.ready()
        return json_response({"status": "ready"})

    async def metrics(self) -> Response:
        return Response(self._metrics.render(), 200, content_type=CONTENT_TYPE_LATEST)

    async def get_openapi(self) -> Response:
        return Response(self._openapi, 200, content_type="application/json")
