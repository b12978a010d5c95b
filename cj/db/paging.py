"""Opaque page tokens for keyset pagination over (started_at DESC, uuid DESC).

A token names the last row of the previous page, plus a fingerprint of the query it
belongs to, so it cannot be replayed against a different query by mistake. Keyset
pages stay correct while calls arrive: a new call sorts before or after the cursor and
never shifts the rows of pages still to come.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

TOKEN_VERSION = 1
MAX_TOKEN_LENGTH = 512


class PageTokenError(ValueError):
    """The page token is not one we issued for this query."""


@dataclass(frozen=True)
class Cursor:
    started_at: datetime
    uuid: uuid.UUID


def query_fingerprint(*parts: object) -> str:
    """A short, stable digest of the query parameters (not the paging ones)."""
    text = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(cursor: Cursor, fingerprint: str) -> str:
    micros = _to_micros(cursor.started_at)
    payload = json.dumps(
        {"v": TOKEN_VERSION, "t": micros, "u": str(cursor.uuid), "q": fingerprint},
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_token(token: str, fingerprint: str) -> Cursor:
    if len(token) > MAX_TOKEN_LENGTH:
        raise PageTokenError("page_token is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != TOKEN_VERSION:
            raise ValueError("unknown token version")
        micros, last_uuid, query = data["t"], data["u"], data["q"]
        # Every field is checked for its type: a decoded token is attacker-controlled
        # JSON, and a list or object where a string belongs must not reach uuid.UUID.
        if not isinstance(micros, int) or isinstance(micros, bool):
            raise ValueError("bad time")
        if not isinstance(last_uuid, str) or not isinstance(query, str):
            raise ValueError("bad cursor")
        cursor = Cursor(_from_micros(micros), uuid.UUID(last_uuid))
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
        UnicodeDecodeError,
        RecursionError,
    ):
        raise PageTokenError("page_token is malformed") from None
    if query != fingerprint:
        raise PageTokenError("page_token belongs to a different query")
    return cursor


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=micros)
