"""Short-lived signed links: a download an `<audio>` element or a plain `<a>` can follow.

A browser's media element (and a link the browser downloads to disk) cannot send an
`Authorization` header. An authenticated reader therefore asks for a link
(`POST /api/v1/calls/{uuid}/recording/link`, `POST /api/v1/calls:export/link?…`); the
link carries `access=<token>` where the token is

    v1.<token name, base64url>.<expires, unix seconds>.<HMAC-SHA256, base64url>

over the token's name, the resource (`recording:<uuid>`, or `export:` and the export's
filters in a canonical order) and the expiry. It is bound to those three: it opens
nothing else, and nothing after `api.link_ttl_s` (default 5 minutes). At download time
the request is handled as the named token's own (which must still be configured with the
reader role): the privacy check and the audit run then, so a call made private after the
link was issued is refused, and the audit names the token.

The key is `api.link_secret` when set (needed when several cj-api processes serve the
same clients), else 32 random bytes drawn when the process starts (links then die with
the process). No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from cj.errors import ErrorCode, ServiceError

__all__ = ["LINK_PARAMETER", "LinkSigner", "export_resource", "recording_resource"]

LINK_PARAMETER = "access"
_VERSION = "v1"


def recording_resource(call_uuid: object) -> str:
    return f"recording:{call_uuid}"


def export_resource(params: Mapping[str, Sequence[str]]) -> str:
    """The export's filters, canonical (sorted; the link parameter left out)."""
    pairs = sorted(
        (name, value) for name, values in params.items() if name != LINK_PARAMETER
        for value in values
    )  # fmt: skip
    return "export:" + urlencode(pairs)


class LinkSigner:
    def __init__(
        self,
        secret: bytes | None,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        # Derived, so a configured secret is never used raw as an HMAC key elsewhere.
        raw = secret if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"calljournal link key\x00" + raw).digest()
        self._ttl_s = ttl_s
        self._clock = clock

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def issue(self, name: str, resource: str) -> tuple[str, int]:
        """(the token, its expiry in unix seconds) for `name` to open `resource`."""
        expires = int(self._clock() + self._ttl_s)
        encoded = _b64(name.encode())
        return f"{_VERSION}.{encoded}.{expires}.{self._sign(encoded, resource, expires)}", expires

    def verify(self, token: str, resource: str) -> str:
        """The token name the link was issued to; UNAUTHENTICATED when it was not issued
        by us for `resource`, or has expired."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            raise _refused()
        _, encoded, expires_text, signature = parts
        expires = int(expires_text)
        if not hmac.compare_digest(signature, self._sign(encoded, resource, expires)):
            raise _refused()
        if self._clock() >= expires:
            raise ServiceError(
                ErrorCode.UNAUTHENTICATED,
                "the download link has expired: ask for a new one",
                field=LINK_PARAMETER,
            )
        try:
            return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _refused() from None

    def _sign(self, encoded_name: str, resource: str, expires: int) -> str:
        message = f"{_VERSION}\n{encoded_name}\n{resource}\n{expires}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused() -> ServiceError:
    return ServiceError(
        ErrorCode.UNAUTHENTICATED,
        "the download link is not valid for this resource",
        field=LINK_PARAMETER,
    )
