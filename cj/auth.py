"""Bearer-token authentication and role checks, the same for gRPC and REST.

Tokens, their roles and their sources come from configuration (`auth.tokens`). A
request carries `authorization: Bearer <token>` (gRPC metadata or HTTP header);
`Authenticator` turns it into a `Principal` or raises `ServiceError` UNAUTHENTICATED,
and `require` checks a role (PERMISSION_DENIED naming the role needed). A principal's
`sources` are the sources whose calls it may write (DESIGN §9); the service checks them.

Tokens are compared in constant time: both sides are hashed to SHA-256 first (so the
comparison does not depend on lengths either) and compared with `hmac.compare_digest`
against every configured token, without stopping at the first match.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cj.config import AuthConfig, Role
from cj.errors import ServiceError

__all__ = ["Authenticator", "Principal", "Role", "require"]

_SCHEME = "bearer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's configured name, its roles, and the sources whose
    calls it may write (the first is the default for calls sent without one)."""

    name: str
    roles: frozenset[Role]
    sources: tuple[str, ...] = ()

    def may_write(self, source: str) -> bool:
        return source in self.sources

    def has(self, role: Role) -> bool:
        return role in self.roles


class Authenticator:
    """Resolves `authorization` header values to principals, from `AuthConfig`."""

    def __init__(self, config: AuthConfig) -> None:
        self._tokens: list[tuple[bytes, Principal]] = [
            (
                _digest(token.token.get_secret_value()),
                Principal(token.name, token.roles, token.writable_sources),
            )
            for token in config.tokens
        ]

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of `Bearer <token>`; ServiceError UNAUTHENTICATED otherwise.

        The scheme is case-insensitive. Messages tell a missing header from a malformed
        one from an unknown token, and never repeat the token.
        """
        if authorization is None or not authorization.strip():
            raise ServiceError.unauthenticated(
                "missing credentials: send the header 'authorization: Bearer <token>'"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != _SCHEME or not token:
            raise ServiceError.unauthenticated(
                "malformed authorization header: expected 'Bearer <token>'"
            )
        candidate = _digest(token)
        found: Principal | None = None
        for secret, principal in self._tokens:
            # No early exit: the time taken must not tell which token matched.
            if hmac.compare_digest(candidate, secret):
                found = principal
        if found is None:
            raise ServiceError.unauthenticated("invalid token")
        return found

    def principal_named(self, name: str) -> Principal:
        """The principal of the configured token called `name` (a signed link names its
        token); UNAUTHENTICATED when no such token is configured any more."""
        for _, principal in self._tokens:
            if principal.name == name:
                return principal
        raise ServiceError.unauthenticated("the link's token is not configured any more")


def require(principal: Principal, role: Role) -> None:
    """Raise ServiceError PERMISSION_DENIED unless `principal` holds `role`."""
    if not principal.has(role):
        raise ServiceError.permission_denied(
            f"this operation needs the {role.value!r} role, which token "
            f"{principal.name!r} does not have"
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
