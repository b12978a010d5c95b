"""The REST routes of ingest (role agent): add calls, one or a batch; check which
exist; upload a call's recording, streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Response, request

from cj.config import Role
from cj.db.ingest import UpsertOutcome
from cj.errors import ServiceError
from cj.model import Call
from cj_api.call_codec import (
    MAX_BATCH_CALLS,
    add_call_outcome_to_json,
    add_calls_result_to_json,
    batch_items_from_json,
    call_from_json,
    call_state_to_json,
    check_uuids_from_json,
)
from cj_api.recording_codec import upload_header_from_headers, upload_result_to_json
from cj_api.rest_primitives import parse_uuid
from cj_api.rest_route_base import API_PREFIX, MAX_JSON_BYTES, RouteBase, json_response
from cj_api.rest_streaming import IdleTimeoutChunks
from cj_api.service import MAX_CHECK_UUIDS, InvalidCall

__all__ = ["MAX_BATCH_BYTES", "IngestRoutes"]

MAX_BATCH_BYTES = 64 * 1024 * 1024  # 10,000 calls with FreeSWITCH-sized raw documents


class IngestRoutes(RouteBase):
    """addCall, addCalls, checkCalls, uploadRecording."""

    async def add_call(self) -> Response:
        principal = self._principal(Role.AGENT)
        call = call_from_json(await self._read_json(MAX_JSON_BYTES))
        outcome = await self._service.add_call(principal, call)
        status = 201 if outcome is UpsertOutcome.INSERTED else 200
        return json_response(add_call_outcome_to_json(outcome), status)

    async def add_calls(self) -> Response:
        principal = self._principal(Role.AGENT)
        items = batch_items_from_json(await self._read_json(MAX_BATCH_BYTES), MAX_BATCH_CALLS)
        result = await self._service.add_calls(principal, _iterate(items))
        return json_response(add_calls_result_to_json(result))

    async def check_calls(self) -> Response:
        principal = self._principal(Role.AGENT)
        uuids = check_uuids_from_json(await self._read_json(MAX_JSON_BYTES), MAX_CHECK_UUIDS)
        states = await self._service.check_calls(principal, uuids)
        return json_response({"calls": [call_state_to_json(state) for state in states]})

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
        return json_response(upload_result_to_json(result), status, {"Location": location})


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
