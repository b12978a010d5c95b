"""Who may call a servicer method, and who is calling it.

Decorate each method of a servicer with the role it needs:

    class Servicer(calljournal_grpc.CallJournalServicer):
        @requires(Role.AGENT)
        async def AddCall(self, input_message: pb.AddCallRequest) -> pb.AddCallResponse:
            principal = current_principal()  # who sent it (token name, roles)
            ...

The server reads the role before it reads any request message: a caller without a
valid token gets UNAUTHENTICATED, one without the role PERMISSION_DENIED, and the
handler does not run. A server given an authenticator refuses to start when a method
has no `@requires` (a forgotten decorator must not mean "open to everyone").

purerpc passes the request's headers (a `RequestReceived` with `.custom_metadata`) only
to methods whose second parameter is named `request`. The decorator makes every method
look like that to purerpc and passes `request` on when the decorated function has such
a parameter; most handlers need only `current_principal()`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from cj.auth import Principal
from cj.config import Role
from cj.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])

_ROLE_ATTRIBUTE = "__cj_required_role__"
_principal: ContextVar[Principal] = ContextVar("cj_rpc_principal")
_peer: ContextVar[str] = ContextVar("cj_rpc_peer", default="")

# When the server runs without authentication (development), every call is this.
ANONYMOUS = Principal(name="anonymous", roles=frozenset(Role))

_PURERPC_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("input_message", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
    ]
)


def requires(role: Role) -> Callable[[F], F]:
    """Mark a servicer method as callable only by principals holding `role`."""
    role = Role(role)

    def decorate(method: F) -> F:
        parameters = inspect.signature(method).parameters
        wants_request = "request" in parameters

        # A plain function returning what the method returns: a coroutine for unary
        # responses, an async iterator for server streams.
        def handler(self: Any, input_message: Any, request: Any = None) -> Any:
            if wants_request:
                return method(self, input_message, request=request)
            return method(self, input_message)

        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(handler, attribute, getattr(method, attribute, None))
        # Not functools.wraps: inspect.signature would follow __wrapped__ back to the
        # one-parameter original, and purerpc would then hide the headers again.
        handler.__signature__ = _PURERPC_SIGNATURE  # type: ignore[attr-defined]
        setattr(handler, _ROLE_ATTRIBUTE, role)
        return cast(F, handler)

    return decorate


class _NoPolicy:
    """The marker for a method without `@requires`."""

    def __repr__(self) -> str:
        return "NO_POLICY"


NO_POLICY = _NoPolicy()


def required_role(method: Callable[..., Any]) -> Role | _NoPolicy:
    """The role `@requires` put on `method` (a function or bound method), or NO_POLICY."""
    role = getattr(method, _ROLE_ATTRIBUTE, NO_POLICY)
    return role if isinstance(role, Role) else NO_POLICY


def current_principal() -> Principal:
    """The principal of the RPC being handled (set by the server before the handler runs).

    Raises RuntimeError outside an RPC served by `cj.rpc`.
    """
    try:
        return _principal.get()
    except LookupError:
        raise RuntimeError("current_principal() called outside an RPC served by cj.rpc") from None


def _set_principal(principal: Principal) -> None:
    # Each RPC runs in its own Trio task, whose context is its own copy: setting the
    # variable there is visible to the handler and its children only.
    _principal.set(principal)


def current_peer_address() -> str:
    """The IP address (without port) of the client of the RPC being handled, or ""."""
    peer = _peer.get()
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if ":" in peer else peer


def _set_peer(peer: str) -> None:
    _peer.set(peer)


@dataclass(frozen=True)
class AuthRefusal:
    """A call refused before its handler ran: no or a wrong token, or a missing role.

    `principal` is the token's holder when the token was valid (the role was missing),
    `credentials_sent` whether any authorization was sent. Never the token itself.
    """

    method: str  # /package.Service/Method
    peer_address: str
    principal: Principal | None
    credentials_sent: bool
    error: ServiceError


OnAuthRefused = Callable[[AuthRefusal], Awaitable[None]]
