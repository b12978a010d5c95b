"""Opening an NSQ connection: magic, IDENTIFY, the TLS upgrade, AUTH.

nsqd (protocol_v2.go) answers a negotiating IDENTIFY with a JSON document in clear
text. If both sides want `tls_v1`, the client then starts a TLS handshake on the same
socket and nsqd sends `OK` through it. If the answer says `auth_required`, AUTH with
the configured secret must come before SUB/PUB; nsqd asks its auth server and answers
`{"identity", "identity_url", "permission_count"}`.

IDENTIFY settings nsqd refuses (`E_BAD_BODY IDENTIFY msg timeout (901000) is invalid`)
and refusals that only a configuration change can cure become NsqConfigError naming the
key and nsqd's limit, so that callers stop rather than reconnect forever.
"""

from __future__ import annotations

import re
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
import trio

from cj.config import QueueConfig
from cj.queue.nsq import wire
from cj.queue.nsq.errors import (
    NsqAuthError,
    NsqConfigError,
    NsqConnectionLost,
    NsqError,
    NsqProtocolError,
)

log = structlog.get_logger(__name__)

_RECEIVE_BYTES: Final = 64 * 1024
_SIZE: Final = struct.Struct(">l")

# nsqd's defaults for the bounds its IDENTIFY answer does not report.
_MAX_HEARTBEAT_MS: Final = 60_000
_MIN_OUTPUT_BUFFER_TIMEOUT_MS: Final = 25
_MAX_OUTPUT_BUFFER_TIMEOUT_MS: Final = 30_000


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """What every connection of one client sends and expects while opening."""

    identify: dict[str, Any]
    heartbeat_interval_s: float
    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None
    auth_secret: str | None = None
    connect_timeout_s: float = 10.0

    @property
    def identify_command(self) -> bytes:
        return wire.identify_command(self.identify)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


@dataclass(frozen=True, slots=True)
class Opened:
    """The result of a successful handshake."""

    stream: trio.abc.Stream
    decoder: wire.FrameDecoder  # holds whatever nsqd sent after the last answer
    negotiated: wire.Negotiated
    identity: str | None = None  # from AUTH
    permission_count: int | None = None


def options_from_config(
    config: QueueConfig,
    *,
    client_id: str,
    hostname: str,
    user_agent: str,
    msg_timeout_ms: int | None,
    connect_timeout_s: float = 10.0,
) -> ConnectionOptions:
    """The IDENTIFY body, TLS context and AUTH secret the configuration asks for."""
    check_settings(config)
    identify = wire.identify_body(
        client_id=client_id,
        hostname=hostname,
        user_agent=user_agent,
        heartbeat_interval_ms=to_ms(config.heartbeat_interval_s),
        msg_timeout_ms=msg_timeout_ms,
        output_buffer_timeout_ms=config.nsq_output_buffer_timeout_ms,
        tls=config.nsq_tls,
    )
    secret = config.nsq_auth_secret
    return ConnectionOptions(
        identify=identify,
        heartbeat_interval_s=to_ms(config.heartbeat_interval_s) / 1000,
        ssl_context=tls_context(config) if config.nsq_tls else None,
        server_name=config.nsq_tls_server_name,
        auth_secret=None if secret is None else secret.get_secret_value(),
        connect_timeout_s=connect_timeout_s,
    )


def check_settings(config: QueueConfig) -> None:
    """NsqConfigError for settings below what any nsqd accepts."""
    if config.heartbeat_interval_s < 1:
        raise NsqConfigError(
            f"queue.heartbeat_interval_s must be at least 1 (nsqd's minimum), "
            f"got {config.heartbeat_interval_s:g}"
        )


def tls_context(config: QueueConfig) -> ssl.SSLContext:
    """A client context that verifies nsqd (CA file or the system's), with our cert."""
    try:
        context = ssl.create_default_context(
            cafile=None if config.nsq_tls_ca_file is None else str(config.nsq_tls_ca_file)
        )
        if config.nsq_tls_cert_file is not None:
            assert config.nsq_tls_key_file is not None  # the schema pairs them
            context.load_cert_chain(str(config.nsq_tls_cert_file), str(config.nsq_tls_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise NsqConfigError(
            f"queue.nsq_tls_ca_file / nsq_tls_cert_file / nsq_tls_key_file: cannot load: {exc}"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def to_ms(seconds: float) -> int:
    """Whole milliseconds, as IDENTIFY wants heartbeat_interval and msg_timeout."""
    return int(seconds * 1000)


async def open_stream(address: str, options: ConnectionOptions) -> Opened:
    """Connect to `address` and complete the handshake; the stream is ours to close."""
    host, port = wire.parse_address(address, setting="nsqd address")
    try:
        with trio.fail_after(options.connect_timeout_s):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise NsqConnectionLost(f"cannot connect to nsqd at {address}: {exc!r}") from exc
    try:
        with trio.fail_after(options.connect_timeout_s):
            return await _handshake(address, host, stream, options)
    except _MsgTimeoutRefused as refused:
        await trio.aclose_forcefully(stream)
        limit = await _probe_max_msg_timeout_ms(address, options)
        nsqd_says = (
            "15 min by default" if limit is None else f"it is {limit / 1000:g} s on this nsqd"
        )
        raise NsqConfigError(
            f"queue.lease_s: nsqd at {address} refused {refused.value / 1000:g} s: more than "
            f"its --max-msg-timeout ({nsqd_says}) "
            f"(nsqd answered {refused.error.code} {refused.error.description})"
        ) from None
    except trio.TooSlowError as exc:
        await trio.aclose_forcefully(stream)
        raise NsqConnectionLost(
            f"nsqd at {address} did not complete the handshake in {options.connect_timeout_s:g}s"
        ) from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


class _Frames:
    """Reads the handshake's answers from a stream; heartbeats in between are skipped
    (nsqd's ticker runs from the start; the handshake takes milliseconds)."""

    def __init__(self, address: str, stream: trio.abc.Stream) -> None:
        self.address = address
        self.stream = stream
        self.decoder = wire.FrameDecoder()

    async def next(self, what: str) -> wire.ResponseFrame | wire.ErrorFrame:
        while True:
            frame = self.decoder.next_frame()
            if isinstance(frame, wire.ResponseFrame) and frame.data == wire.HEARTBEAT:
                continue
            if frame is not None:
                break
            try:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise NsqConnectionLost(
                    f"{what} with nsqd at {self.address} failed: {exc!r}"
                ) from exc
            if not data:
                raise NsqConnectionLost(f"nsqd at {self.address} closed the connection on {what}")
            self.decoder.feed(data)
        if isinstance(frame, wire.MessageFrame):
            raise NsqProtocolError(f"nsqd at {self.address} answered {what} with a message")
        return frame

    async def send(self, data: bytes, what: str) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise NsqConnectionLost(f"{what} with nsqd at {self.address} failed: {exc!r}") from exc


class _MsgTimeoutRefused(Exception):
    def __init__(self, error: wire.ErrorFrame, value: int) -> None:
        super().__init__(error.description)
        self.error = error
        self.value = value


async def _probe_max_msg_timeout_ms(address: str, options: ConnectionOptions) -> int | None:
    """nsqd's max_msg_timeout, read from the answer to an IDENTIFY without msg_timeout."""
    probe = {k: v for k, v in options.identify.items() if k in _PROBE_KEYS}
    host, port = wire.parse_address(address, setting="nsqd address")
    with trio.move_on_after(options.connect_timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return None
        try:
            frames = _Frames(address, stream)
            await frames.send(wire.MAGIC_V2 + wire.identify_command(probe), "IDENTIFY")
            answer = await frames.next("IDENTIFY")
            if isinstance(answer, wire.ResponseFrame):
                return wire.parse_identify_response(answer.data).max_msg_timeout_ms
        except (NsqConnectionLost, NsqProtocolError):
            return None
        finally:
            await trio.aclose_forcefully(stream)
    return None


_PROBE_KEYS: Final = frozenset(
    {"client_id", "hostname", "user_agent", "feature_negotiation", "heartbeat_interval"}
)


async def _handshake(
    address: str, host: str, stream: trio.abc.Stream, options: ConnectionOptions
) -> Opened:
    frames = _Frames(address, stream)
    await frames.send(wire.MAGIC_V2 + options.identify_command, "IDENTIFY")
    answer = await frames.next("IDENTIFY")
    if isinstance(answer, wire.ErrorFrame):
        match = _MSG_TIMEOUT_INVALID.search(answer.description)
        if answer.code == "E_BAD_BODY" and match:
            raise _MsgTimeoutRefused(answer, int(match[1]))
        raise explain_identify_error(answer, address, options.identify)
    negotiated = wire.parse_identify_response(answer.data, tls_requested=options.tls)
    if options.ssl_context is not None:
        if not negotiated.tls_v1:
            raise NsqConfigError(
                f"queue.nsq_tls is set, but nsqd at {address} did not agree to TLS "
                "(it runs without --tls-cert/--tls-key)"
            )
        if frames.decoder.buffered:
            # TLS starts right after the answer: clear bytes past it are an attack or a bug.
            raise NsqProtocolError(f"nsqd at {address} sent clear text after agreeing to TLS")
        stream = await _upgrade_tls(address, host, stream, options)
        frames = _Frames(address, stream)
        try:
            ok = await frames.next("TLS upgrade")
        except NsqConnectionLost as exc:
            # TLS 1.3: nsqd checks our certificate after the handshake and answers a
            # missing or untrusted one with an alert here.
            alert = _ssl_cause(exc)
            if alert is None:
                raise
            raise NsqConfigError(
                f"nsqd at {address} refused the TLS connection: {alert.reason or alert} "
                "(it wants a client certificate its CA trusts: queue.nsq_tls_cert_file / "
                "queue.nsq_tls_key_file)"
            ) from exc
        if isinstance(ok, wire.ErrorFrame) or ok.data != wire.OK:
            raise NsqProtocolError(f"nsqd at {address} answered the TLS upgrade with {ok!r}")
    if not negotiated.auth_required:
        return Opened(stream, frames.decoder, negotiated)
    if options.auth_secret is None:
        raise NsqConfigError(
            f"nsqd at {address} requires AUTH (it runs with --auth-http-address): "
            "set queue.nsq_auth_secret"
        )
    if options.ssl_context is None:
        # nsqd allows it, but the secret then crosses the network in clear.
        log.warning("nsq_auth_without_tls", address=address, setting="queue.nsq_tls")
    await frames.send(wire.auth(options.auth_secret), "AUTH")
    reply = await frames.next("AUTH")
    if isinstance(reply, wire.ErrorFrame):
        raise NsqAuthError(
            reply.code,
            f"{reply.description} — nsqd refused queue.nsq_auth_secret"
            + (
                " (a secret its auth server does not know, or the auth server is unreachable)"
                if reply.code == "E_AUTH_FAILED"
                else ""
            ),
            address=address,
        )
    identity, count = wire.parse_auth_response(reply.data)
    return Opened(stream, frames.decoder, negotiated, identity=identity, permission_count=count)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError somewhere behind `exc`, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def _upgrade_tls(
    address: str, host: str, stream: trio.abc.Stream, options: ConnectionOptions
) -> trio.SSLStream[trio.abc.Stream]:
    assert options.ssl_context is not None
    tls = trio.SSLStream(stream, options.ssl_context, server_hostname=options.server_name or host)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise NsqConfigError(
                f"nsqd at {address}: its TLS certificate failed verification "
                f"({cause.verify_message}); check queue.nsq_tls_ca_file and "
                "queue.nsq_tls_server_name"
            ) from exc
        if isinstance(cause, ssl.SSLError):
            raise NsqConfigError(
                f"TLS handshake with nsqd at {address} failed: {cause.reason or cause}"
                " (client certificate? see queue.nsq_tls_cert_file)"
            ) from exc
        raise NsqConnectionLost(f"TLS handshake with nsqd at {address} failed: {exc!r}") from exc
    return tls


_MSG_TIMEOUT_INVALID: Final = re.compile(r"msg timeout \((-?\d+)\) is invalid")
# nsqd's E_BAD_BODY texts for IDENTIFY values out of range (client_v2.go); the msg
# timeout's is handled apart (`_MsgTimeoutRefused`: nsqd's limit is probed).
_IDENTIFY_LIMITS: Final[list[tuple[re.Pattern[str], str, Callable[[int], str]]]] = [
    (
        re.compile(r"heartbeat interval \((-?\d+)\) is invalid"),
        "queue.heartbeat_interval_s",
        lambda v: (
            f"{v / 1000:g} s is outside nsqd's range: 1 s to its --max-heartbeat-interval "
            f"({_MAX_HEARTBEAT_MS // 1000} s by default)"
        ),
    ),
    (
        re.compile(r"output buffer timeout \((-?\d+)\) is invalid"),
        "queue.nsq_output_buffer_timeout_ms",
        lambda v: (
            f"{v} ms is outside nsqd's range: its --min-output-buffer-timeout "
            f"({_MIN_OUTPUT_BUFFER_TIMEOUT_MS} ms by default) to --max-output-buffer-timeout "
            f"({_MAX_OUTPUT_BUFFER_TIMEOUT_MS // 1000} s by default)"
        ),
    ),
]


def explain_identify_error(
    error: wire.ErrorFrame, address: str, identify: dict[str, Any]
) -> NsqError | NsqConfigError:
    """NsqConfigError naming the key for an IDENTIFY value nsqd refused; else NsqError."""
    if error.code == "E_BAD_BODY":
        for pattern, key, explain in _IDENTIFY_LIMITS:
            match = pattern.search(error.description)
            if match:
                return NsqConfigError(
                    f"{key}: nsqd at {address} refused it: {explain(int(match[1]))} "
                    f"(nsqd answered {error.code} {error.description})"
                )
    return error.to_exception(address)


def explain_refusal(
    error: NsqError, *, command: str, topic: str, channel: str | None, identity: str | None
) -> NsqError | NsqConfigError:
    """What nsqd's answer to SUB/PUB/MPUB means for the configuration, if it is one.

    `E_INVALID cannot SUB in current state (TLS required)`: nsqd runs with
    --tls-required; `E_UNAUTHORIZED`: the auth server grants this secret no such right;
    `E_AUTH_FIRST`: nsqd wants AUTH although IDENTIFY did not say so.
    """
    where = f"topic {topic!r}" + ("" if channel is None else f" channel {channel!r}")
    if error.code == "E_INVALID" and "(TLS required)" in error.description:
        return NsqConfigError(
            f"nsqd at {error.address} requires TLS (--tls-required): set queue.nsq_tls = true "
            f"(nsqd answered {error.code} {error.description})"
        )
    if error.code == "E_UNAUTHORIZED":
        right = "subscribe" if channel is not None else "publish"
        who = f"identity {identity!r}" if identity else "queue.nsq_auth_secret"
        return NsqAuthError(
            error.code,
            f"{error.description} — the auth server grants {who} no {right} permission on {where}",
            address=error.address,
        )
    if error.code == "E_AUTH_FIRST":
        return NsqConfigError(
            f"nsqd at {error.address} requires AUTH before {command}: set queue.nsq_auth_secret"
        )
    return error
