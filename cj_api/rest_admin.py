"""The REST routes of administration (role admin): a call's privacy, legal holds.
Deliberate changes, each with a reason, audited by the service.
"""

from __future__ import annotations

import re

from quart import Response, request

from cj.config import Role
from cj.errors import ServiceError
from cj_api.admin_codec import (
    hold_change_to_json,
    hold_request_from_json,
    hold_to_json,
    privacy_change_to_json,
    privacy_request_from_json,
)
from cj_api.holds import DEFAULT_LIST as DEFAULT_HOLDS
from cj_api.rest_primitives import parse_uuid
from cj_api.rest_route_base import MAX_JSON_BYTES, RouteBase, json_response, only_parameters

__all__ = ["AdminRoutes"]


class AdminRoutes(RouteBase):
    """setCallPrivacy, setLegalHold, listLegalHolds."""

    async def set_hold(self, call_uuid: str) -> Response:
        principal = self._principal(Role.ADMIN)
        target = parse_uuid(call_uuid, "call_uuid")
        held, reason = hold_request_from_json(await self._read_json(MAX_JSON_BYTES))
        change = await self._service.holds.set(principal, target, held=held, reason=reason)
        return json_response(hold_change_to_json(change))

    async def list_holds(self) -> Response:
        principal = self._principal(Role.ADMIN)
        only_parameters("limit")
        text = request.args.get("limit", str(DEFAULT_HOLDS))
        if not re.fullmatch(r"[0-9]{1,6}", text.strip()):
            raise ServiceError.invalid("limit", "must be an integer")
        holds = await self._service.holds.list(principal, int(text))
        return json_response({"holds": [hold_to_json(hold) for hold in holds]})

    async def set_privacy(self, call_uuid: str) -> Response:
        principal = self._principal(Role.ADMIN)
        target = parse_uuid(call_uuid, "call_uuid")
        private, reason = privacy_request_from_json(await self._read_json(MAX_JSON_BYTES))
        change = await self._service.set_privacy(principal, target, private=private, reason=reason)
        return json_response(privacy_change_to_json(change))
