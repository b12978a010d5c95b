"""The gRPC server: purerpc's HTTP/2 machinery under our own listener and dispatcher.

What it adds to purerpc's `Server`:

- Our own listener bound to the configured host only (no SO_REUSEPORT, so two servers
  cannot silently share a port), reported through `task_status`, and closed when
  serving stops: after cancellation or shutdown the port refuses connections.
- The client's `grpc-timeout` is enforced (DEADLINE_EXCEEDED); calls that send none get
  `GrpcLimits.unary_deadline_s` (unary requests), `stream_deadline_s` (streamed answers)
  or, for client streams, the request body rules (`GrpcLimits.body`: idle time,
  minimum rate after a grace window, total time) and then `unary_deadline_s`.
- Bounds (`cj.rpc.limits.GrpcLimits`): per-method message sizes (RESOURCE_EXHAUSTED),
  stream and connection flow-control windows, a stream cap (RST_STREAM REFUSED_STREAM),
  a connection that sends no byte within `preface_timeout_s` is closed, and one with no
  call open for `idle_timeout_s` gets GOAWAY and is closed.
- Errors: `ServiceError` → its status code and message (plus the trailers
  `cj-error-code` and `cj-error-field`); purerpc's `RpcFailedError` passes through; any
  other exception → INTERNAL "internal error (request id …)", with the traceback logged
  under the same request id. Never purerpc's CANCELLED-with-a-repr.
- Bearer-token auth from the `authorization` metadata, checked against the method's
  `@requires` role before any request message is read (see `cj.rpc.access`). A refusal
  (UNAUTHENTICATED or PERMISSION_DENIED) is reported to `on_auth_failure`, if given,
  with the method, the peer address and the error, e.g. to audit refused downloads.
- No header value reaches a log line or an error text (tokens above all): h2's
  protocol errors quote header values, so their quoted parts are cut out.
- Methods a servicer does not override (the generated `raise NotImplementedError`)
  answer UNIMPLEMENTED, not INTERNAL, and need no access policy.
- A client's RST_STREAM (it gave up) cancels the handler.
- Graceful shutdown: `GrpcServer.shutdown()` (or `serve_grpc(shutdown_trigger=...)`)
  closes the listener, answers new calls on open connections with UNAVAILABLE, lets
  in-flight calls finish for `grace_period_s`, then cancels them (their clients get
  UNAVAILABLE "server is shutting down") and closes the connections.

Each RPC runs in its own Trio task with structlog context `rpc` and `request_id`, so
the handler's own log events carry them. A client may choose the request id by
sending `x-request-id` (letters, digits, `._-`, at most 64); it comes back in the
trailers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import ssl
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import structlog
import trio
from anyio.streams.tls import TLSStream
from purerpc import Cardinality
from purerpc.grpclib.status import Status, StatusCode

from cj.auth import Authenticator, Principal, require
from cj.bodyrate import BodyClock
from cj.errors import ErrorCode, ServiceError, single_leaf
from cj.logs import safe_error_text
from cj.rpc._calls import Method, Receiver, index_methods, level_of, request_id_of, status_for
from cj.rpc._purerpc import ServerSocket
from cj.rpc.access import (
    ANONYMOUS,
    NO_POLICY,
    AuthRefusal,
    OnAuthRefused,
    _set_peer,
    _set_principal,
    current_peer_address,
)
from cj.rpc.limits import GrpcLimits
from cj.rpc.timeouts import parse_grpc_timeout

__all__ = ["AuthFailure", "GrpcServer", "serve_grpc"]

log = structlog.get_logger(__name__)

# After the grace period, cancelled calls get this long to flush their UNAVAILABLE.
_ABORT_FLUSH_S = 1.0
# accept() failures that mean "out of resources for now", not "listener is broken".
_TRANSIENT_ACCEPT_ERRNOS = frozenset({23, 24, 12, 105})  # ENFILE EMFILE ENOMEM ENOBUFS


@dataclass(eq=False)
class _Rpc:
    """One call in flight."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    reset_by_client: bool = False
    response_started: bool = False


@dataclass(frozen=True)
class AuthFailure:
    """A call refused for its credentials (what `on_auth_failure` receives)."""

    method: str  # /package.Service/Method
    peer: str  # host:port of the client
    error: ServiceError  # UNAUTHENTICATED or PERMISSION_DENIED, its message for the client


@dataclass(eq=False)
class _Connection:
    peer: str
    rpcs: dict[int, _Rpc] = field(default_factory=dict)
    scope: trio.CancelScope | None = None  # cancels the reader and every RPC
    # Fires when the connection has been silent (no call open) for too long.
    idle: trio.CancelScope = field(default_factory=trio.CancelScope)
    idle_timeout_s: float = math.inf

    def reset(self, stream_id: int) -> None:
        rpc = self.rpcs.get(stream_id)
        if rpc is not None:
            rpc.reset_by_client = True
            rpc.scope.cancel()

    def close(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def busy(self) -> None:
        self.idle.deadline = math.inf

    def quiet(self) -> None:
        """No call is open (or the first bytes came): the idle time starts now."""
        if not self.rpcs:
            self.idle.deadline = trio.current_time() + self.idle_timeout_s


class GrpcServer:
    """Serves purerpc services (see module doc). One `serve()` per instance.

    `services` are `purerpc.Service` objects, e.g. a generated servicer's `.service`.
    With an `authenticator`, every method must carry `@requires(role)` (ValueError
    otherwise); without one, calls are anonymous with every role (development only).
    """

    def __init__(
        self,
        services: Sequence[Any],
        *,
        ssl_context: ssl.SSLContext | None = None,
        authenticator: Authenticator | None = None,
        default_deadline_s: float | None = None,
        grace_period_s: float = 10.0,
        handshake_timeout_s: float = 10.0,
        limits: GrpcLimits | None = None,
        on_auth_failure: Callable[[AuthFailure], None] | None = None,
        on_auth_refused: OnAuthRefused | None = None,
    ) -> None:
        if default_deadline_s is not None and not default_deadline_s > 0:
            raise ValueError(f"default_deadline_s must be > 0 or None, not {default_deadline_s}")
        if not grace_period_s >= 0 or math.isinf(grace_period_s):
            raise ValueError(f"grace_period_s must be finite and >= 0, not {grace_period_s}")
        self._methods = index_methods(services)
        if authenticator is not None:
            unguarded = sorted(
                m.path for m in self._methods.values() if m.implemented and m.role is NO_POLICY
            )
            if unguarded:
                raise ValueError(
                    "methods without an access policy (decorate them with "
                    f"cj.rpc.requires(role)): {', '.join(unguarded)}"
                )
        self._ssl_context = ssl_context
        self._authenticator = authenticator
        limits = limits or GrpcLimits()
        if default_deadline_s is not None:  # the older spelling of limits.unary_deadline_s
            limits = dataclasses.replace(limits, unary_deadline_s=default_deadline_s)
        self._limits = limits
        self._on_auth_failure = on_auth_failure
        self._on_auth_refused = on_auth_refused
        self._grace_period_s = grace_period_s
        self._handshake_timeout_s = handshake_timeout_s
        self._connections: set[_Connection] = set()
        self._shutdown_requested = trio.Event()
        self._draining = False
        self._no_connections = trio.Event()
        self._started = False
        self.addresses: list[tuple[str, int]] = []
        """The bound socket addresses (host, port), once serving."""

    @property
    def in_flight(self) -> int:
        """Calls being handled now."""
        return sum(len(connection.rpcs) for connection in self._connections)

    @property
    def connection_count(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent); `serve()` returns when it is done."""
        self._shutdown_requested.set()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on `host:port` and serve until cancelled or shut down.

        Reports the bound port through `task_status` (useful with port 0). Cancelling
        it stops at once: the listener and every connection are closed. `reuse_port`
        binds with SO_REUSEPORT (several processes serving one port).
        """
        if self._started:
            raise RuntimeError("GrpcServer.serve() can run only once per server")
        self._started = True
        listener = await anyio.create_tcp_listener(
            local_host=host, local_port=port, reuse_port=reuse_port
        )
        try:
            self.addresses = [
                _host_port(sub.extra(anyio.abc.SocketAttribute.local_address))
                for sub in listener.listeners
            ]
            bound_port = self.addresses[0][1]
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    for sub in listener.listeners:
                        acceptors.start_soon(self._accept, sub, connections)
                    log.info("grpc server listening", addresses=self.addresses)
                    task_status.started(bound_port)
                    await self._shutdown_requested.wait()
                    acceptors.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await listener.aclose()  # from here on the port refuses connections
                self._drain(connections)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()  # idempotent
            log.info("grpc server stopped", addresses=self.addresses)

    # --- connections --------------------------------------------------------------------

    async def _accept(self, listener: Any, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _TRANSIENT_ACCEPT_ERRNOS:
                    raise
                log.warning("grpc accept failed; pausing", error=repr(exc))
                await trio.sleep(0.1)  # out of file descriptors or memory: let some go
                continue
            nursery.start_soon(self._serve_connection, stream)

    def _drain(self, connections: trio.Nursery) -> None:
        """Stop taking calls; give those in flight the grace period, then cancel them."""
        self._draining = True
        log.info(
            "grpc server shutting down",
            in_flight=self.in_flight,
            grace_period_s=self._grace_period_s,
        )
        for connection in list(self._connections):
            if not connection.rpcs:
                connection.close()
        if not self._connections:
            self._no_connections.set()
        # The last resort: whatever still runs after this is cancelled outright.
        connections.cancel_scope.deadline = (
            trio.current_time() + self._grace_period_s + _ABORT_FLUSH_S
        )
        connections.start_soon(self._abort_after_grace)

    async def _abort_after_grace(self) -> None:
        with trio.move_on_after(self._grace_period_s):
            await self._no_connections.wait()
            return
        log.warning("grpc grace period over; cancelling calls", in_flight=self.in_flight)
        for connection in list(self._connections):
            connection.close()

    async def _serve_connection(self, raw: anyio.abc.SocketStream) -> None:
        peer = _peer_of(raw)
        connection = _Connection(peer=peer, idle_timeout_s=self._limits.idle_timeout_s)
        self._connections.add(connection)
        try:
            async with raw:
                stream: anyio.abc.ByteStream = raw
                if self._ssl_context is not None:
                    with trio.move_on_after(self._handshake_timeout_s):
                        stream = await TLSStream.wrap(
                            raw,
                            server_side=True,
                            ssl_context=self._ssl_context,
                            standard_compatible=False,
                        )
                    if stream is raw:
                        log.info("grpc tls handshake timed out", peer=peer)
                        return
                # Until its first bytes (the HTTP/2 preface), then until its first call.
                connection.idle.deadline = trio.current_time() + self._limits.preface_timeout_s
                async with ServerSocket(stream, self._limits) as sock:
                    sock.on_reset = connection.reset
                    sock.connection.on_first_bytes = connection.quiet
                    async with trio.open_nursery() as rpcs:
                        connection.scope = rpcs.cancel_scope
                        if self._draining:  # shutdown began during the TLS handshake
                            rpcs.cancel_scope.cancel()
                        rpcs.start_soon(self._close_when_idle, connection, sock)
                        async for h2_stream in sock.listen():
                            if self._draining:
                                await _close_quietly(
                                    sock,
                                    h2_stream,
                                    Status(StatusCode.UNAVAILABLE, "server is shutting down"),
                                )
                                continue
                            rpc = _Rpc()
                            connection.busy()
                            connection.rpcs[h2_stream.stream_id] = rpc
                            rpcs.start_soon(self._run_rpc, connection, sock, h2_stream, rpc)
                        # EOF: the client is gone, so nobody is left to answer.
                        rpcs.cancel_scope.cancel()
        except Exception as exc:  # a broken or misbehaving peer ends only its connection
            # Never repr(exc): h2's protocol errors quote header values (tokens).
            log.info("grpc connection failed", peer=peer, error=safe_error_text(single_leaf(exc)))
        finally:
            self._connections.discard(connection)
            if self._draining and not self._connections:
                self._no_connections.set()

    async def _close_when_idle(self, connection: _Connection, sock: ServerSocket) -> None:
        with connection.idle:
            await trio.sleep_forever()
        silent = sock.connection.bytes_received == 0
        log.info(
            "grpc connection closed",
            peer=connection.peer,
            reason="no preface" if silent else "idle",
            timeout_s=self._limits.preface_timeout_s if silent else self._limits.idle_timeout_s,
        )
        if not silent:
            try:  # GOAWAY: the client knows no call was lost and opens a new connection
                sock.connection.h2_connection.close_connection()
            except Exception as exc:  # the h2 state machine says the connection is over
                log.debug("grpc goaway not sent", error=safe_error_text(single_leaf(exc)))
            sock._socket._flush_event.set()
        connection.close()

    # --- one call -----------------------------------------------------------------------

    async def _run_rpc(
        self, connection: _Connection, sock: ServerSocket, stream: Any, rpc: _Rpc
    ) -> None:
        started = trio.current_time()
        status = Status(StatusCode.OK)
        trailers: list[tuple[str, str]] = []
        try:
            event = await stream.receive_event()  # purerpc queued the headers first
            path = f"/{event.service_name}/{event.method_name}"
            request_id = request_id_of(event.custom_metadata)
            trailers.append(("x-request-id", request_id))
            structlog.contextvars.bind_contextvars(rpc=path, request_id=request_id)
            _set_peer(connection.peer)
            with rpc.scope:
                try:
                    await self._dispatch(sock, stream, event, path, rpc, connection.peer)
                except Exception as exc:
                    status, extra = status_for(exc, request_id)
                    trailers.extend(extra)
            if rpc.scope.cancelled_caught:
                if rpc.reset_by_client:
                    log.info("grpc call cancelled by the client")
                    return
                status = Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
            await _close_quietly(sock, stream, status, trailers)
            log.log(
                level_of(status),
                "grpc call",
                code=status.status_code.name,
                duration_ms=round((trio.current_time() - started) * 1000),
            )
        except trio.Cancelled:
            # The connection is going away (shutdown past its grace period, or the
            # client left). Queue a retryable status; it is sent if the socket lives.
            if not rpc.reset_by_client:
                await _close_quietly(
                    sock, stream, Status(StatusCode.UNAVAILABLE, "server is shutting down")
                )
            raise
        finally:
            sock.finish(stream)
            connection.rpcs.pop(stream.stream_id, None)
            connection.quiet()
            if self._draining and not connection.rpcs:
                connection.close()

    async def _dispatch(
        self, sock: ServerSocket, stream: Any, event: Any, path: str, rpc: _Rpc, peer: str
    ) -> None:
        method = self._methods.get(path)
        if method is None or not method.implemented:
            raise ServiceError.unimplemented(f"method {path} is not implemented")
        limits = self._limits
        raw_timeout = sock.connection.raw_timeouts.pop(stream.stream_id, None)
        timeout: float | None = None
        if raw_timeout is not None:
            try:
                timeout = parse_grpc_timeout(raw_timeout)
            except ValueError as exc:
                raise ServiceError.invalid("grpc-timeout", str(exc)) from None
        now = trio.current_time()
        client_streams = method.cardinality in (Cardinality.STREAM_UNARY, Cardinality.STREAM_STREAM)
        if timeout is not None:
            rpc.scope.deadline = now + timeout
        elif client_streams:  # the body rules govern the request; this is the backstop
            rpc.scope.deadline = now + limits.body.timeout_s + limits.unary_deadline_s
        elif method.cardinality is Cardinality.UNARY_STREAM:
            rpc.scope.deadline = now + limits.stream_deadline_s
        else:
            rpc.scope.deadline = now + limits.unary_deadline_s
        try:
            principal = self._authorize(event.custom_metadata, method, peer)
        except ServiceError as exc:
            await self._report_refusal(path, event.custom_metadata, exc)
            raise
        _set_principal(principal)

        stream.expect_message_type(method.request_type)
        receiver = Receiver(sock, stream, method, BodyClock(limits.body, now))
        handler = functools.partial(method.handler, request=event)
        if method.cardinality is Cardinality.UNARY_UNARY:
            reply = await handler(await receiver.single())
            await _send(stream, rpc, method, reply)
        elif method.cardinality is Cardinality.STREAM_UNARY:
            async with aclosing(receiver.messages()) as messages:
                reply = await handler(messages)
            await _send(stream, rpc, method, reply)
        elif method.cardinality is Cardinality.UNARY_STREAM:
            message = await receiver.single()
            async with aclosing(handler(message)) as replies:
                async for reply in replies:
                    await _send(stream, rpc, method, reply)
        else:
            async with (
                aclosing(receiver.messages()) as messages,
                aclosing(handler(messages)) as replies,
            ):
                async for reply in replies:
                    await _send(stream, rpc, method, reply)

    def _authorize(
        self, metadata: Sequence[tuple[str, Any]], method: Method, peer: str
    ) -> Principal:
        if self._authenticator is None:
            return ANONYMOUS
        try:
            values = [value for name, value in metadata if name == "authorization"]
            if len(values) > 1:
                raise ServiceError.unauthenticated(
                    "malformed authorization: send exactly one authorization header"
                )
            principal = self._authenticator.authenticate(values[0] if values else None)
            require(principal, method.role)
        except ServiceError as exc:
            if self._on_auth_failure is not None:
                try:
                    self._on_auth_failure(AuthFailure(method=method.path, peer=peer, error=exc))
                except Exception:  # an auditing hook must not turn a 401 into a 500
                    log.exception("grpc auth failure hook failed")
            raise
        return principal

    async def _report_refusal(
        self, path: str, metadata: Sequence[tuple[str, Any]], error: ServiceError
    ) -> None:
        """Tell `on_auth_refused` (auditing) about a refused call; its failure is logged,
        the call is refused anyway."""
        if self._on_auth_refused is None or self._authenticator is None:
            return
        values = [value for name, value in metadata if name == "authorization"]
        principal: Principal | None = None
        if error.code is ErrorCode.PERMISSION_DENIED and len(values) == 1:
            principal = self._authenticator.authenticate(values[0])  # valid: only the role
        refusal = AuthRefusal(path, current_peer_address(), principal, bool(values), error)
        try:
            await self._on_auth_refused(refusal)
        except Exception as exc:
            log.warning("grpc auth refusal not reported", error=safe_error_text(exc))


async def serve_grpc(
    services: Sequence[Any],
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    authenticator: Authenticator | None = None,
    default_deadline_s: float | None = None,
    grace_period_s: float = 10.0,
    limits: GrpcLimits | None = None,
    on_auth_failure: Callable[[AuthFailure], None] | None = None,
    on_auth_refused: OnAuthRefused | None = None,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `services` on `host:port` until cancelled, or until `shutdown_trigger`
    returns and the graceful shutdown completes (as in hypercorn's `serve`).
    `reuse_port`: bind with SO_REUSEPORT, sharing the port with other processes.

    `task_status.started` receives the bound port. To stop gRPC and REST together on
    SIGTERM, set one `trio.Event` from a signal task and pass `event.wait` to both.
    """
    server = GrpcServer(
        services,
        ssl_context=ssl_context,
        authenticator=authenticator,
        default_deadline_s=default_deadline_s,
        grace_period_s=grace_period_s,
        limits=limits,
        on_auth_failure=on_auth_failure,
        on_auth_refused=on_auth_refused,
    )
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[int]) -> None:
            await server.serve(host, port, reuse_port=reuse_port, task_status=task_status)
            nursery.cancel_scope.cancel()  # done: stop waiting for the trigger

        bound_port: int = await nursery.start(run)
        task_status.started(bound_port)
        if shutdown_trigger is not None:
            await shutdown_trigger()
            server.shutdown()


# --- helpers ----------------------------------------------------------------------------


async def _send(stream: Any, rpc: _Rpc, method: Method, reply: object) -> None:
    if not isinstance(reply, method.response_type):
        raise TypeError(
            f"{method.path} handler produced {type(reply).__name__}, "
            f"expected {method.response_type.__name__}"
        )
    if not rpc.response_started:
        rpc.response_started = True
        await stream.start_response()
    await stream.send_message(reply)


async def _close_quietly(
    sock: ServerSocket, stream: Any, status: Status, trailers: Sequence[tuple[str, str]] = ()
) -> None:
    """Send the final status unless the stream is already closed or gone."""
    try:
        # purerpc's close() only queues frames and sets an event: no checkpoint, so it
        # also works from a cancelled scope; the connection's writer sends them.
        await stream.close(status, custom_metadata=tuple(trailers))
    except Exception as exc:  # reset by the client, connection lost, already closed
        log.debug(
            "grpc status not sent",
            code=status.status_code.name,
            error=safe_error_text(single_leaf(exc)),
        )
    sock.finish(stream)


def _host_port(address: Any) -> tuple[str, int]:
    return str(address[0]), int(address[1])


def _peer_of(stream: anyio.abc.SocketStream) -> str:
    try:
        host, port = _host_port(stream.extra(anyio.abc.SocketAttribute.remote_address))
    except (anyio.TypedAttributeLookupError, OSError, TypeError, IndexError):
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
