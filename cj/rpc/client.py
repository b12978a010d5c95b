"""The gRPC client: one connection, deadlines on every call, errors as `RpcError`.

    async with open_channel("api.example:50051", token=token, default_timeout_s=60) as ch:
        reply = await ch.unary_unary(ADD_CALL, request, pb.AddCallResponse)

Every call has a deadline (`timeout_s`, else the channel's `default_timeout_s`): it is
sent to the server as `grpc-timeout` and enforced here with a Trio cancel scope, so a
silent server cannot hang the caller. Failures are `RpcError` with an `ErrorCode`;
`RpcUnavailable` (a subclass) means the server could not be reached, the connection
broke, or the server said UNAVAILABLE: retry those with backoff, on a new channel when
`channel.closed`. Leaving `open_channel` closes the connection, also on cancellation.

A call abandoned before its end (cancelled, timed out, or a server stream left early)
is cancelled on the server with RST_STREAM, so the server stops working on it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.abc
import h2.exceptions  # type: ignore[import-untyped]
import trio
from google.protobuf.message import DecodeError, Message
from purerpc.grpclib.exceptions import StreamClosedError

from cj.errors import ErrorCode
from cj.logs import safe_error_text
from cj.rpc._purerpc import ClientSocket
from cj.rpc.timeouts import grpc_timeout_delta

__all__ = [
    "Channel",
    "RpcError",
    "RpcUnavailable",
    "as_async_iterator",
    "open_channel",
    "parse_address",
]

R = TypeVar("R", bound=Message)

# The server reset or finished the stream while we were sending.
_STREAM_GONE = (h2.exceptions.StreamClosedError, StreamClosedError)
_RETRYABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.ABORTED})


class RpcError(Exception):
    """A call failed: `code` says how, `message` is the server's (or our) explanation.

    `field` is the request field at fault when the server named one (INVALID_ARGUMENT);
    `method` the call's path.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        method: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        self.code = ErrorCode(code)
        self.message = message
        self.field = field
        self.method = method
        self.retry_after_s = retry_after_s  # the server's `retry-after` trailer, if any
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{self.code.value}: {message}")

    @property
    def retryable(self) -> bool:
        """Whether sending the same (idempotent) call again later may succeed."""
        return self.code in _RETRYABLE


class RpcUnavailable(RpcError):
    """The server could not be reached or the connection broke: retry with backoff."""

    def __init__(self, message: str, *, method: str = "") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message, method=method)


def _error(
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    method: str,
    retry_after_s: float | None = None,
) -> RpcError:
    if code is ErrorCode.UNAVAILABLE:
        error: RpcError = RpcUnavailable(message, method=method)
        error.retry_after_s = retry_after_s
        return error
    return RpcError(code, message, field=field, method=method, retry_after_s=retry_after_s)


class Channel:
    """An open connection to a gRPC server; get one from `open_channel`."""

    def __init__(
        self,
        sock: ClientSocket,
        *,
        authority: str,
        scheme: str,
        token: str | None,
        default_timeout_s: float | None,
    ) -> None:
        self._sock = sock
        self._authority = authority
        self._scheme = scheme
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.default_timeout_s = default_timeout_s

    @property
    def closed(self) -> bool:
        """The connection is gone; every further call raises RpcUnavailable."""
        return self._sock.closed_reason is not None

    async def unary_unary(
        self,
        method: str,
        request: Message,
        response_type: type[R],
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> R:
        """Send one message to `method` ("/package.Service/Method"), return the answer."""
        timeout = self._timeout(timeout_s)
        with trio.CancelScope(deadline=_deadline(timeout)) as scope:
            stream = await self._start(method, response_type, timeout, metadata)
            try:
                await _send_one(stream, request)
                return await _one_response(stream, response_type, method)
            finally:
                self._sock.cancel(stream)  # a no-op when the call ended normally
        raise _deadline_error(method, timeout, scope)

    async def stream_unary(
        self,
        method: str,
        requests: AsyncIterable[Message] | Iterable[Message],
        response_type: type[R],
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> R:
        """Send a stream of messages, return the one answer.

        `requests` is iterated as the connection accepts data (flow control), so an
        async generator reading a file streams it without holding it in memory. If the
        server answers early (an error, typically) sending stops. An exception raised
        by `requests` itself cancels the call and propagates unchanged.
        """
        timeout = self._timeout(timeout_s)
        with trio.CancelScope(deadline=_deadline(timeout)) as scope:
            stream = await self._start(method, response_type, timeout, metadata)
            try:
                return await _exchange(stream, requests, response_type, method)
            finally:
                self._sock.cancel(stream)
        raise _deadline_error(method, timeout, scope)

    @asynccontextmanager
    async def unary_stream(
        self,
        method: str,
        request: Message,
        response_type: type[R],
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[AsyncIterator[R]]:
        """Send one message; yield an iterator over the server's stream of answers.

            async with channel.unary_stream(DOWNLOAD, request, pb.Chunk) as answers:
                async for answer in answers:
                    ...

        The deadline covers the whole block. Iteration raises RpcError when the server
        ends the stream with an error. Leaving the block early cancels the call.
        """
        timeout = self._timeout(timeout_s)
        with trio.CancelScope(deadline=_deadline(timeout)) as scope:
            stream = await self._start(method, response_type, timeout, metadata)
            try:
                await _send_one(stream, request)
                async with aclosing(_responses(stream, response_type, method)) as responses:
                    yield responses
            finally:
                self._sock.cancel(stream)
        if scope.cancelled_caught:
            raise _deadline_error(method, timeout, scope)

    # --- internals ----------------------------------------------------------------------

    def _timeout(self, timeout_s: float | None) -> float | None:
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout}")
        return timeout

    async def _start(
        self,
        method: str,
        response_type: type[Message],
        grpc_timeout: float | None,
        metadata: Sequence[tuple[str, str]],
    ) -> Any:
        service, name = _split_method(method)
        if self._sock.closed_reason is not None:
            raise RpcUnavailable(self._sock.closed_reason, method=method)
        try:
            stream = await self._sock.start_request(
                self._scheme,
                service,
                name,
                authority=self._authority,
                timeout=None if grpc_timeout is None else grpc_timeout_delta(grpc_timeout),
                custom_metadata=(*self._metadata, *metadata),
            )
        except (h2.exceptions.ProtocolError, StreamClosedError) as exc:
            # h2 refuses new streams on a connection the server is closing.
            # Not repr(exc): h2 quotes the offending header, which may be our token.
            raise RpcUnavailable(
                f"cannot start a call: {safe_error_text(exc)}", method=method
            ) from None
        stream.expect_message_type(response_type)
        return stream


@asynccontextmanager
async def open_channel(
    address: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    token: str | None = None,
    default_timeout_s: float | None = None,
    connect_timeout_s: float = 10.0,
) -> AsyncIterator[Channel]:
    """Connect to `address` ("host:port", "[v6]:port"); close the connection on exit.

    `ssl_context` (see `make_client_ssl_context`) turns on TLS; `token` is sent as
    `authorization: Bearer <token>` on every call. A failure to connect raises
    RpcUnavailable.
    """
    host, port = parse_address(address)
    try:
        with trio.fail_after(connect_timeout_s):
            raw: anyio.abc.ByteStream
            if ssl_context is None:
                raw = await anyio.connect_tcp(host, port)
            else:
                raw = await anyio.connect_tcp(
                    host,
                    port,
                    ssl_context=ssl_context,
                    tls_hostname=host,
                    tls_standard_compatible=False,  # HTTP/2 frames end the stream itself
                )
    except trio.TooSlowError:
        raise RpcUnavailable(f"connecting to {address} timed out") from None
    except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
        raise RpcUnavailable(f"cannot connect to {address}: {exc}") from exc
    async with raw, ClientSocket(raw) as sock:
        try:
            yield Channel(
                sock,
                authority=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                scheme="https" if ssl_context is not None else "http",
                token=token,
                default_timeout_s=default_timeout_s,
            )
        finally:
            # A call still running in another task must not outlive the connection
            # silently: it ends with RpcUnavailable.
            sock.abandon("the channel was closed")


def parse_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError naming the problem."""
    host, sep, port_text = address.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"address {address!r} is not host:port (e.g. 127.0.0.1:50051)")
    return host, int(port_text)


def _split_method(method: str) -> tuple[str, str]:
    parts = method.split("/")
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        raise ValueError(f"method {method!r} is not '/package.Service/Method'")
    return parts[1], parts[2]


def _deadline(timeout: float | None) -> float:
    return trio.current_time() + timeout if timeout is not None else float("inf")


def _deadline_error(method: str, timeout: float | None, scope: trio.CancelScope) -> RpcError:
    # Reached only when our scope swallowed its own cancellation: the deadline passed.
    assert scope.cancelled_caught
    return RpcError(
        ErrorCode.DEADLINE_EXCEEDED,
        f"no answer within {timeout} s (client deadline)",
        method=method,
    )


async def _send_one(stream: Any, request: Message) -> None:
    try:
        await stream.send_message(request)
    except _STREAM_GONE:
        return  # the server already ended the call; reading its status says why
    await _half_close(stream)


async def _half_close(stream: Any) -> None:
    try:
        await stream.close()
    except _STREAM_GONE:
        pass


async def _receive(stream: Any, response_type: type[Message], method: str) -> Any:
    try:
        return await stream.receive_message()
    except DecodeError:
        raise RpcError(
            ErrorCode.INTERNAL,
            f"the server's answer is not a valid {response_type.DESCRIPTOR.full_name}",
            method=method,
        ) from None


def _status_error(stream: Any, method: str) -> RpcError | None:
    """The error the stream ended with, or None if it ended OK."""
    ended = stream.end_stream_event
    status = ended.status
    if status.int_value == 0:
        return None
    code = ErrorCode.from_grpc_status(status.int_value)
    field = None
    retry_after_s: float | None = None
    headers = [*getattr(stream.start_stream_event, "custom_metadata", ()), *ended.custom_metadata]
    for name, value in headers:
        if name == "cj-error-code" and value in ErrorCode.__members__:
            refined = ErrorCode(value)
            if refined.grpc_status == status.int_value:  # never contradict the status
                code = refined
        elif name == "cj-error-field":
            field = value
        elif name == "retry-after" and isinstance(value, str) and value.isdigit():
            retry_after_s = float(value)
    return _error(
        code,
        status.status_message or code.value,
        field=field,
        method=method,
        retry_after_s=retry_after_s,
    )


async def _one_response(stream: Any, response_type: type[R], method: str) -> R:
    message = await _receive(stream, response_type, method)
    if message is None:
        error = _status_error(stream, method)
        raise error or RpcError(ErrorCode.INTERNAL, "the server sent no answer", method=method)
    if await _receive(stream, response_type, method) is not None:
        raise RpcError(ErrorCode.INTERNAL, "the server sent several answers", method=method)
    error = _status_error(stream, method)
    if error is not None:
        raise error
    assert isinstance(message, response_type)
    return message


async def _responses(stream: Any, response_type: type[R], method: str) -> AsyncGenerator[R, None]:
    while (message := await _receive(stream, response_type, method)) is not None:
        yield message
    error = _status_error(stream, method)
    if error is not None:
        raise error


async def _exchange(
    stream: Any,
    requests: AsyncIterable[Message] | Iterable[Message],
    response_type: type[R],
    method: str,
) -> R:
    """Send `requests` while waiting for the answer; stop sending once it comes."""
    request_failure: list[BaseException] = []
    outcome: list[R | RpcError] = []

    async def send_all(cancel_scope: trio.CancelScope) -> None:
        try:
            async with aclosing(as_async_iterator(requests)) as messages:
                async for message in messages:
                    try:
                        await stream.send_message(message)
                    except _STREAM_GONE:
                        return  # the server ended the call; its status says why
            await _half_close(stream)
        except Exception as exc:  # raised by `requests` (e.g. reading the file failed)
            request_failure.append(exc)
            cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all, nursery.cancel_scope)
        try:
            outcome.append(await _one_response(stream, response_type, method))
        except RpcError as exc:
            outcome.append(exc)
        nursery.cancel_scope.cancel()  # answered: whatever is left unsent is not needed
    if request_failure:
        raise request_failure[0]
    (result,) = outcome
    if isinstance(result, RpcError):
        raise result
    return result


T = TypeVar("T")


async def as_async_iterator(items: AsyncIterable[T] | Iterable[T]) -> AsyncGenerator[T, None]:
    """Iterate `items`, sync or async; an async iterator is closed (`aclose`) at the end,
    so an async generator reading a file releases it even when iteration stops early."""
    if isinstance(items, AsyncIterable):
        iterator = aiter(items)
        try:
            async for item in iterator:
                yield item
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
    else:
        for item in items:
            yield item
