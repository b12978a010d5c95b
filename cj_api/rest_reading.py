"""The REST routes of reading (role reader): searches, one call, a recording's
download (Range, ETag, HEAD), a search's recordings as a ZIP, and signed links.

A download or an export may be authorised by the Authorization header or by a signed,
short-lived link (`?access=`, `cj_api.links`). Every download attempt is audited,
refusals (bad credentials included) aggregated (`cj_api.downloads`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import structlog
from quart import Response, request
from quart.wrappers.response import DataBody, ResponseBody

from cj.auth import Authenticator, Principal, require
from cj.bodyrate import BodyLimits
from cj.config import Role
from cj.db.wire import search_json
from cj.errors import ServiceError
from cj_api.call_codec import record_to_json
from cj_api.downloads import DownloadInfo
from cj_api.export import CallsExport, Capacity, export_query_from_params
from cj_api.links import LINK_PARAMETER, LinkSigner, export_resource, recording_resource
from cj_api.recording_codec import select_range
from cj_api.rest_primitives import etag_matches, format_timestamp, parse_uuid
from cj_api.rest_route_base import (
    API_PREFIX,
    RouteBase,
    client_address,
    json_response,
    only_parameters,
)
from cj_api.rest_streaming import StreamBody
from cj_api.search_codec import search_query_from_params
from cj_api.service import CallJournalService

__all__ = ["MIN_SEND_BYTES_PER_S", "ReadingRoutes"]

# The REST layer's events keep the logger name they have always had (cj_api.rest).
log = structlog.get_logger("cj_api.rest")

# A download may take as long as sending its bytes at this rate needs (plus a minute):
# a reader stuck for longer holds a storage stream for nothing.
MIN_SEND_BYTES_PER_S = 64 * 1024


class ReadingRoutes(RouteBase):
    """searchCalls, getCall, downloadRecording (and HEAD), exportCalls, linkRecording,
    linkExport."""

    def __init__(
        self,
        service: CallJournalService,
        authenticator: Authenticator,
        body_limits: BodyLimits,
        *,
        exports: tuple[int, Capacity],
        links: LinkSigner,
    ) -> None:
        super().__init__(service, authenticator, body_limits)
        self._exports = exports  # (max_calls, limiter)
        self._links = links

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
        return json_response(record_to_json(record, include_raw=True))

    async def download_recording(self, call_uuid: str) -> Response:
        only_parameters(LINK_PARAMETER)
        address = client_address()
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
        max_calls, limiter = self._exports
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
        access, expires = self._links.issue(principal.name, resource)
        log.info("link_issued", actor=principal.name, resource=resource[:200], expires=expires)
        return json_response(
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
        principal = self._authenticator.principal_named(self._links.verify(access, resource()))
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
                principal = self._authenticator.principal_named(
                    self._links.verify(access, resource)
                )
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
