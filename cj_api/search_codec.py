"""Searches over REST: the query parameters of `GET /api/v1/calls?…` → `SearchQuery`.
No I/O. (The answer's JSON is PostgreSQL's: `cj.db.wire.search_json`.)

The exports (`cj_api.export`) take the same filters, without paging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from cj.db.calls import SearchError, SearchQuery
from cj.errors import ServiceError
from cj.model import Direction
from cj_api.rest_primitives import parse_timestamp

__all__ = ["DEFAULT_LIMIT", "SEARCH_PARAMETERS", "search_query_from_params"]

SEARCH_PARAMETERS = (
    "phone",
    "exact",
    "from",
    "to",
    "direction",
    "has_recording",
    "limit",
    "page_token",
)
DEFAULT_LIMIT = 100

# SearchQuery names the interval start/end; the REST parameters are from/to.
_SEARCH_FIELD_NAMES = {"start": "from", "end": "to"}


def search_query_from_params(params: Mapping[str, Sequence[str]]) -> SearchQuery:
    """The SearchQuery of `GET /api/v1/calls?…`; unknown or repeated parameters are 400.

    With `phone` it is a phone search (from/to optional); without, an interval search
    that needs both `from` and `to`.
    """
    unknown = sorted(set(params) - set(SEARCH_PARAMETERS))
    if unknown:
        raise ServiceError.invalid(
            unknown[0],
            f"unknown query parameter(s): {', '.join(unknown)[:200]} "
            f"(known: {', '.join(SEARCH_PARAMETERS)})",
        )
    single: dict[str, str] = {}
    for name, values in params.items():
        if len(values) != 1:
            raise ServiceError.invalid(name, "given more than once")
        single[name] = values[0]
    phone = single.get("phone")
    start = _time_param(single, "from")
    end = _time_param(single, "to")
    if phone is None:
        for name, value in (("from", start), ("to", end)):
            if value is None:
                raise ServiceError.invalid(
                    name, "is required for an interval search (or give phone)"
                )
    direction = None
    if "direction" in single:
        try:
            direction = Direction(single["direction"])
        except ValueError:
            allowed = ", ".join(d.value for d in Direction)
            raise ServiceError.invalid("direction", f"must be one of {allowed}") from None
    limit_text = single.get("limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not re.fullmatch(r"[0-9]+", limit_text.strip()):
            raise ServiceError.invalid("limit", "must be an integer")
        limit = int(limit_text)  # SearchQuery checks the range
    try:
        return SearchQuery(
            phone=phone,
            exact=_bool_param(single, "exact") or False,
            start=start,
            end=end,
            direction=direction,
            has_recording=_bool_param(single, "has_recording"),
            limit=limit,
            page_token=single.get("page_token") or None,
        )
    except SearchError as exc:
        raise ServiceError.invalid(
            _SEARCH_FIELD_NAMES.get(exc.field, exc.field), exc.reason
        ) from None


def _time_param(params: Mapping[str, str], name: str) -> datetime | None:
    value = params.get(name)
    return None if value is None else parse_timestamp(value, name)


def _bool_param(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ServiceError.invalid(name, "must be true or false")
    return lowered == "true"
