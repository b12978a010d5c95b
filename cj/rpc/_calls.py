"""One call's plumbing for `cj.rpc.server`: the method table, reading request
messages under their limits and the body rules, and turning exceptions into statuses."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from google.protobuf.message import DecodeError, Message
from purerpc import Cardinality
from purerpc.grpclib.exceptions import RpcFailedError
from purerpc.grpclib.status import Status, StatusCode

from cj.bodyrate import BodyClock
from cj.errors import ErrorCode, ServiceError, single_leaf
from cj.rpc._purerpc import ServerSocket, is_generated_placeholder
from cj.rpc.access import required_role

log = structlog.get_logger("cj.rpc.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Method:
    path: str  # /package.Service/Method
    handler: Callable[..., Any]  # purerpc's bound method (takes the message and `request`)
    cardinality: Cardinality
    request_type: type[Message]
    response_type: type[Message]
    role: Any  # Role, or NO_POLICY
    implemented: bool  # False: the generated placeholder, answered UNIMPLEMENTED


def index_methods(services: Sequence[Any]) -> dict[str, Method]:
    methods: dict[str, Method] = {}
    names: set[str] = set()
    for service in services:
        if service.name in names:
            raise ValueError(f"service {service.name} is given twice")
        names.add(service.name)
        for name, bound in service.methods.items():
            signature = bound.signature
            path = f"/{service.name}/{name}"
            methods[path] = Method(
                path=path,
                handler=bound.method_fn,
                cardinality=signature.cardinality,
                request_type=signature.request_type,
                response_type=signature.response_type,
                role=required_role(bound.method_fn),
                implemented=not is_generated_placeholder(bound.method_fn),
            )
    return methods


class Receiver:
    """The request messages of one call: decoded, size-checked (the connection refused
    a message over the method's limit) and, for client streams, held to the body rules."""

    def __init__(self, sock: ServerSocket, stream: Any, method: Method, clock: BodyClock):
        self._sock = sock
        self._stream = stream
        self._method = method
        self._clock = clock

    async def single(self) -> Message:
        first = await self._receive()
        if first is None:
            raise ServiceError.invalid("request", "expected one request message, got none")
        if await self._receive() is not None:
            raise ServiceError.invalid("request", "expected one request message, got several")
        return first

    async def messages(self) -> AsyncGenerator[Message, None]:
        while (message := await self._receive()) is not None:
            yield message

    async def _receive(self) -> Message | None:
        clock = self._clock
        message: Message | None = None
        with trio.move_on_at(clock.deadline) as timer:
            try:
                message = await self._stream.receive_message()
            except DecodeError:
                raise ServiceError.invalid(
                    "request",
                    f"not a valid {self._method.request_type.DESCRIPTOR.full_name} message",
                ) from None
        now = trio.current_time()
        if timer.cancelled_caught:
            raise ServiceError(ErrorCode.DEADLINE_EXCEEDED, clock.reason(now), field="request")
        if message is None:
            refusal = self._sock.connection.too_large.pop(self._stream.stream_id, None)
            if refusal is not None:
                raise ServiceError.resource_exhausted(
                    f"{refusal} bytes for {self._method.path}", field="request"
                )
            return None
        clock.receive(message.ByteSize(), now)
        return message


def status_for(exc: Exception, request_id: str) -> tuple[Status, list[tuple[str, str]]]:
    leaf = single_leaf(exc)
    if isinstance(leaf, ServiceError):
        trailers = [("cj-error-code", leaf.code.value)]
        if leaf.field:
            trailers.append(("cj-error-field", leaf.field))
        if leaf.retry_after_header is not None:
            trailers.append(("retry-after", leaf.retry_after_header))
        if leaf.code is ErrorCode.INTERNAL:
            log.error("grpc call failed", error=str(leaf), exc_info=leaf)
        return Status(leaf.code.grpc_status, leaf.describe()), trailers
    if isinstance(leaf, RpcFailedError):
        return leaf.status, []
    log.error("grpc call failed with an unexpected error", exc_info=exc)
    message = f"internal error (request id {request_id})"
    return Status(StatusCode.INTERNAL, message), [("cj-error-code", ErrorCode.INTERNAL.value)]


def level_of(status: Status) -> int:
    # OK at debug (a line per call is too much at info); failures at info: the client's
    # problem, or ours with its traceback already logged at error.
    return logging.DEBUG if status.status_code is StatusCode.OK else logging.INFO


def request_id_of(metadata: Sequence[tuple[str, Any]]) -> str:
    for name, value in metadata:
        if name == "x-request-id" and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return secrets.token_hex(8)
