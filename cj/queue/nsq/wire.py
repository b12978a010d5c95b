"""The NSQ V2 wire format, without I/O.

Rare commands (IDENTIFY, SUB, RDY, NOP) are encoded by pynsq's sans-IO `nsq.protocol`
module; the per-message ones (PUB, MPUB, FIN, REQ, TOUCH) and message frames are
encoded/decoded here with the same layout (tests/queue/test_nsq_wire.py checks the bytes
against pynsq's), because pynsq's generic builders and its Message object were most of
a consumer's per-message cost. This module also adds what pynsq leaves to its Tornado
connection class: validation with errors that name the problem, the size-prefixed
frame splitter, error-frame parsing, the IDENTIFY body and its negotiated response, and
AUTH.

Importing `nsq.protocol` executes pynsq's package `__init__`, which imports Tornado
(ioloop, iostream, httpclient) and asyncio. That is import cost only (~60 ms): no event
loop is created, nothing is scheduled and no warning is emitted, so it coexists with
Trio; we never call pynsq's Reader/Writer/Conn.

Specification: https://nsq.io/clients/tcp_protocol_spec.html
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import nsq.protocol as _pynsq

from cj.queue.nsq.errors import NsqConfigError, NsqError, NsqProtocolError

MAGIC_V2: Final[bytes] = _pynsq.MAGIC_V2
HEARTBEAT: Final[bytes] = b"_heartbeat_"
OK: Final[bytes] = b"OK"
CLOSE_WAIT: Final[bytes] = b"CLOSE_WAIT"
NOP: Final[bytes] = _pynsq.nop()
# pynsq has no encoder for CLS (its Reader closes sockets without it).
CLS: Final[bytes] = b"CLS\n"

FRAME_TYPE_RESPONSE: Final = _pynsq.FRAME_TYPE_RESPONSE
FRAME_TYPE_ERROR: Final = _pynsq.FRAME_TYPE_ERROR
FRAME_TYPE_MESSAGE: Final = _pynsq.FRAME_TYPE_MESSAGE

MESSAGE_ID_LENGTH: Final = 16
# nsqd's defaults for the server-side limits the IDENTIFY response does not report:
# --max-req-timeout (REQ delay) and --max-body-size (an MPUB body).
MAX_REQ_TIMEOUT_MS: Final = 60 * 60 * 1000
MAX_BODY_BYTES: Final = 5 * 1024 * 1024
# nsqd defaults used when it does not negotiate (an `OK` answer to IDENTIFY).
DEFAULT_MAX_RDY_COUNT: Final = 2500
# A frame this large is garbage rather than a message (nsqd's --max-msg-size is 1 MiB).
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024

_SIZE = struct.Struct(">l")
_MESSAGE = struct.Struct(">qH16s")  # timestamp, attempts, id
_NAME_RULE = "1 to 64 characters from [.a-zA-Z0-9_-], optionally ending in '#ephemeral'"


# --- names and addresses -----------------------------------------------------------


def validate_topic(name: str) -> str:
    """`name` if nsqd accepts it as a topic name, else NsqConfigError saying why."""
    if not isinstance(name, str) or not _pynsq.valid_topic_name(name):
        raise NsqConfigError(f"invalid NSQ topic name {name!r}: use {_NAME_RULE}")
    return name


def validate_channel(name: str) -> str:
    """`name` if nsqd accepts it as a channel name, else NsqConfigError saying why."""
    if not isinstance(name, str) or not _pynsq.valid_channel_name(name):
        raise NsqConfigError(f"invalid NSQ channel name {name!r}: use {_NAME_RULE}")
    return name


def parse_address(text: str, *, setting: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; NsqConfigError names `setting`."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise NsqConfigError(f"{setting}: {text!r} is not a host:port address")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- commands ------------------------------------------------------------------------


def identify_body(
    *,
    client_id: str,
    hostname: str,
    user_agent: str,
    heartbeat_interval_ms: int,
    msg_timeout_ms: int | None,
    output_buffer_timeout_ms: int | None = None,
    tls: bool = False,
) -> dict[str, Any]:
    """The IDENTIFY document; `None` keeps nsqd's default for that setting.

    Snappy, deflate and sampling are never requested (see docs: not worth it for
    ~100-byte jobs), so only TLS can change the stream after IDENTIFY.
    """
    body: dict[str, Any] = {
        "client_id": client_id,
        "hostname": hostname,
        "user_agent": user_agent,
        "feature_negotiation": True,
        "heartbeat_interval": heartbeat_interval_ms,
    }
    if msg_timeout_ms is not None:
        body["msg_timeout"] = msg_timeout_ms
    if output_buffer_timeout_ms is not None:
        body["output_buffer_timeout"] = output_buffer_timeout_ms
    if tls:
        body["tls_v1"] = True
    return body


def identify_command(body: dict[str, Any]) -> bytes:
    return bytes(_pynsq.identify(body))


def identify(
    *,
    client_id: str,
    hostname: str,
    user_agent: str,
    heartbeat_interval_ms: int,
    msg_timeout_ms: int | None,
) -> bytes:
    """IDENTIFY with feature negotiation; `msg_timeout_ms=None` keeps nsqd's default."""
    return identify_command(
        identify_body(
            client_id=client_id,
            hostname=hostname,
            user_agent=user_agent,
            heartbeat_interval_ms=heartbeat_interval_ms,
            msg_timeout_ms=msg_timeout_ms,
        )
    )


def auth(secret: str) -> bytes:
    """AUTH with the secret as its size-prefixed body (pynsq has it too, as `auth`)."""
    data = secret.encode()
    if not data:
        raise NsqConfigError("queue.nsq_auth_secret must not be empty")
    return b"AUTH\n" + _SIZE.pack(len(data)) + data


def parse_auth_response(data: bytes) -> tuple[str | None, int | None]:
    """(identity, permission_count) from nsqd's AUTH answer."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise NsqProtocolError(f"AUTH response is not JSON: {data[:80]!r}") from None
    if not isinstance(doc, dict):
        raise NsqProtocolError(f"AUTH response is not a JSON object: {data[:80]!r}")
    identity = doc.get("identity")
    return (
        identity if isinstance(identity, str) else None,
        _int(doc, "permission_count", None),
    )


def subscribe(topic: str, channel: str) -> bytes:
    # pynsq checks names with `assert` (gone under -O); validate with real errors first.
    return bytes(_pynsq.subscribe(validate_topic(topic), validate_channel(channel)))


def ready(count: int) -> bytes:
    if count < 0:
        raise ValueError(f"RDY count must not be negative, got {count}")
    return bytes(_pynsq.ready(count))


def finish(message_id: bytes) -> bytes:
    # As pynsq's `finish`, without its generic command builder (hot path: every ack).
    return b"FIN " + _check_id(message_id) + b"\n"


def requeue(message_id: bytes, delay_s: float) -> bytes:
    """REQ with the delay in whole milliseconds, clamped to [0, nsqd's default maximum].

    nsqd treats an out-of-range timeout as a fatal E_INVALID (it closes the
    connection), so an over-long delay is shortened rather than sent.
    """
    return b"REQ %s %d\n" % (_check_id(message_id), requeue_delay_ms(delay_s))


def requeue_delay_ms(delay_s: float) -> int:
    if math.isnan(delay_s) or delay_s <= 0:
        return 0
    return min(MAX_REQ_TIMEOUT_MS, round(delay_s * 1000))


def touch(message_id: bytes) -> bytes:
    return b"TOUCH " + _check_id(message_id) + b"\n"


def pub(topic: str, body: bytes) -> bytes:
    # pynsq omits the size prefix of an empty body, which desynchronises the stream.
    if not body:
        raise ValueError("an NSQ message body must not be empty")
    return b"PUB %s\n%s%s" % (_topic_bytes(topic), _SIZE.pack(len(body)), body)


_TOPIC_BYTES: dict[str, bytes] = {}


def _topic_bytes(topic: str) -> bytes:
    """The validated topic, encoded (cached: publishers send the same one every time)."""
    found = _TOPIC_BYTES.get(topic)
    if found is None:
        found = validate_topic(topic).encode()
        if len(_TOPIC_BYTES) < 1024:
            _TOPIC_BYTES[topic] = found
    return found


def mpub(topic: str, bodies: Sequence[bytes]) -> bytes:
    if not bodies:
        raise ValueError("MPUB needs at least one message")
    # The layout of pynsq's `mpub`, built with one join instead of its struct per call.
    if not all(bodies):
        raise ValueError("an NSQ message body must not be empty")
    pack = _SIZE.pack
    sizes = [pack(len(body)) for body in bodies]
    total = 4 + 4 * len(bodies) + sum(map(len, bodies))
    parts = [b"MPUB %s\n%s%s" % (_topic_bytes(topic), pack(total), pack(len(bodies)))]
    for size, body in zip(sizes, bodies, strict=True):
        parts += (size, body)
    return b"".join(parts)


def mpub_batches(
    bodies: Sequence[bytes], max_body_bytes: int = MAX_BODY_BYTES
) -> Iterator[list[bytes]]:
    """Split `bodies` into MPUB batches whose encoded body fits `max_body_bytes`."""
    batch: list[bytes] = []
    size = 4  # the message count
    for body in bodies:
        need = 4 + len(body)
        if batch and size + need > max_body_bytes:
            yield batch
            batch, size = [], 4
        batch.append(body)
        size += need
    if batch:
        yield batch


def _check_id(message_id: bytes) -> bytes:
    # nsqd answers a wrong-length id with a fatal E_INVALID: catch our own bug here.
    if len(message_id) != MESSAGE_ID_LENGTH:
        raise ValueError(f"an NSQ message id is 16 bytes, got {message_id!r}")
    return message_id


# --- frames --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """FrameTypeResponse: `OK`, `CLOSE_WAIT`, `_heartbeat_` or a JSON document."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """FrameTypeError: `E_CODE description`."""

    code: str
    description: str

    def to_exception(self, address: str | None = None) -> NsqError:
        return NsqError(self.code, self.description, address=address)


@dataclass(frozen=True, slots=True)
class MessageFrame:
    """FrameTypeMessage: one delivery of a message."""

    id: bytes
    attempts: int
    timestamp_ns: int
    body: bytes


Frame = ResponseFrame | ErrorFrame | MessageFrame


def parse_error(data: bytes) -> ErrorFrame:
    text = data.decode("utf-8", errors="replace")
    code, _, description = text.partition(" ")
    return ErrorFrame(code=code, description=description)


class FrameDecoder:
    """Splits the byte stream from nsqd into frames: `feed` bytes, iterate `frames()`.

    Each frame is `[size: int32][frame type: int32][data]`, size counting type + data.
    """

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self._max = max_frame_bytes

    def feed(self, data: bytes | bytearray) -> None:
        if self._offset and self._offset * 2 >= len(self._buffer):
            # Compact only when the consumed prefix dominates: amortised O(1) per byte.
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as frames."""
        return len(self._buffer) - self._offset

    def frames(self) -> Iterator[Frame]:
        """Every complete frame fed so far; raises NsqProtocolError on garbage."""
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self) -> Frame | None:
        buffer = self._buffer
        offset = self._offset
        if len(buffer) - offset < 4:
            return None
        (size,) = _SIZE.unpack_from(buffer, offset)
        if size < 4 or size > self._max:
            raise NsqProtocolError(f"invalid NSQ frame size {size}")
        end = offset + 4 + size
        if len(buffer) < end:
            return None
        (frame_type,) = _SIZE.unpack_from(buffer, offset + 4)
        self._offset = end
        if frame_type == FRAME_TYPE_MESSAGE:
            if size < 4 + 26:
                raise NsqProtocolError(f"NSQ message frame too short ({size - 4} bytes)")
            # [timestamp int64][attempts uint16][id 16 bytes][body], as pynsq's
            # decode_message but unsigned (the spec's uint16) and without its Message.
            timestamp, attempts, message_id = _MESSAGE.unpack_from(buffer, offset + 8)
            return MessageFrame(message_id, attempts, timestamp, bytes(buffer[offset + 34 : end]))
        data = bytes(buffer[offset + 8 : end])
        if frame_type == FRAME_TYPE_RESPONSE:
            return ResponseFrame(data)
        if frame_type == FRAME_TYPE_ERROR:
            return parse_error(data)
        raise NsqProtocolError(f"unknown NSQ frame type {frame_type}")


# --- IDENTIFY response ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What nsqd agreed to in answer to IDENTIFY (defaults if it answered a plain OK)."""

    max_rdy_count: int = DEFAULT_MAX_RDY_COUNT
    msg_timeout_ms: int | None = None
    max_msg_timeout_ms: int | None = None
    version: str = ""
    auth_required: bool = False
    tls_v1: bool = False
    output_buffer_timeout_ms: int | None = None
    output_buffer_size: int | None = None


def parse_identify_response(data: bytes, *, tls_requested: bool = False) -> Negotiated:
    """The negotiated features; NsqProtocolError if nsqd enabled one we did not ask for."""
    if data == OK:
        return Negotiated()  # nsqd without feature negotiation
    try:
        doc = json.loads(data)
    except ValueError:
        raise NsqProtocolError(f"IDENTIFY response is neither OK nor JSON: {data[:80]!r}") from None
    if not isinstance(doc, dict):
        raise NsqProtocolError(f"IDENTIFY response is not a JSON object: {data[:80]!r}")
    for feature in ("snappy", "deflate") if tls_requested else ("tls_v1", "snappy", "deflate"):
        # The stream would switch encoding right after this frame; we cannot follow.
        if doc.get(feature):
            raise NsqProtocolError(f"nsqd enabled {feature}, which was not requested")
    return Negotiated(
        max_rdy_count=_int(doc, "max_rdy_count", DEFAULT_MAX_RDY_COUNT),
        msg_timeout_ms=_int(doc, "msg_timeout", None),
        max_msg_timeout_ms=_int(doc, "max_msg_timeout", None),
        version=str(doc.get("version", "")),
        auth_required=bool(doc.get("auth_required", False)),
        tls_v1=bool(doc.get("tls_v1", False)),
        output_buffer_timeout_ms=_int(doc, "output_buffer_timeout", None),
        output_buffer_size=_int(doc, "output_buffer_size", None),
    )


def _int(doc: dict[str, Any], key: str, default: int | None) -> Any:
    value = doc.get(key, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise NsqProtocolError(f"IDENTIFY response field {key!r} is not an integer: {value!r}")
    return value
