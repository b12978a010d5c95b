"""Legal holds over the API (admin role): place, lift and list, each audited.

The same rules as `cj hold` (cj/db/holds.py): a reason is required; retention never
purges a held call's recording; a uuid whose call has not arrived yet may be held. The
service owns one `LegalHolds` (`CallJournalService.holds`); REST and gRPC call it.
"""

from __future__ import annotations

import functools
import uuid as uuid_module
from dataclasses import dataclass

import structlog

from cj.auth import Principal, require
from cj.config import Role
from cj.db import Database, DatabaseUnavailable
from cj.db.holds import MAX_REASON, Hold, HoldError, add_hold, list_holds, remove_hold
from cj.errors import ServiceError

log = structlog.get_logger(__name__)

MAX_LIST = 10_000
DEFAULT_LIST = 1_000


@dataclass(frozen=True)
class HoldChange:
    call_uuid: uuid_module.UUID
    held: bool  # whether the call is held now
    changed: bool


class LegalHolds:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(
        self, principal: Principal, call_uuid: uuid_module.UUID, *, held: bool, reason: str
    ) -> HoldChange:
        """Place (`held`) or lift a hold; role admin, with a reason."""
        require(principal, Role.ADMIN)
        if not isinstance(reason, str) or not reason.strip():
            raise ServiceError.invalid("reason", "is required: say why (a case number, a request)")
        if len(reason.strip()) > MAX_REASON:
            raise ServiceError.invalid("reason", f"must be at most {MAX_REASON} characters")
        try:
            if held:
                changed = await self._db.run(
                    functools.partial(
                        add_hold, call_uuid=call_uuid, reason=reason, actor=principal.name
                    )
                )
            else:
                lifted = await self._db.run(
                    functools.partial(
                        remove_hold, call_uuid=call_uuid, reason=reason, actor=principal.name
                    )
                )
                changed = lifted is not None
        except HoldError as exc:
            raise ServiceError.invalid(exc.field, exc.reason) from None
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc
        log.info(
            "legal_hold_set",
            call_uuid=str(call_uuid),
            held=held,
            changed=changed,
            actor=principal.name,
        )
        return HoldChange(call_uuid, held, changed)

    async def list(self, principal: Principal, limit: int = DEFAULT_LIST) -> list[Hold]:
        require(principal, Role.ADMIN)
        if isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
            raise ServiceError.invalid("limit", f"must be between 1 and {MAX_LIST}")
        try:
            return await self._db.run(functools.partial(list_holds, limit=limit))
        except DatabaseUnavailable as exc:
            raise ServiceError.unavailable("database unavailable; retry later") from exc
