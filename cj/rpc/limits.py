"""What one gRPC client may hold on the server: message sizes, streams, windows, time.

Pure data, no I/O. `GrpcLimits` is what `GrpcServer` enforces (cj-api builds it from
`ApiConfig`); the message-size constants are part of the contract (`protos/…` says
chunks are at most 1 MiB).

How the bounds add up: the server returns HTTP/2 flow-control credit for a message only
when the handler takes it, so a connection never holds more than
`connection_window_bytes` of request data that no handler has taken, however many
streams it opens; a single stream never more than `stream_window_bytes`. A message
whose declared length is over its method's limit is refused (RESOURCE_EXHAUSTED) from
its 5-byte prefix, before its bytes are buffered; what still arrives for it is
acknowledged and dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cj.bodyrate import BodyLimits

__all__ = [
    "MAX_REQUEST_MESSAGE_BYTES",
    "MAX_UPLOAD_MESSAGE_BYTES",
    "GrpcLimits",
    "message_limit",
]

# One UploadRecording message: a chunk of at most 1 MiB plus its protobuf framing (or the
# header, which is small).
MAX_UPLOAD_MESSAGE_BYTES = 1024 * 1024 + 1024
# Any other request message: a call with a raw CDR of up to 1 MiB (cj.codec.MAX_RAW_JSON)
# and its fields, a check of 1,000 uuids, a search.
MAX_REQUEST_MESSAGE_BYTES = 2 * 1024 * 1024
# Methods whose messages are upload chunks (the rest get MAX_REQUEST_MESSAGE_BYTES).
_UPLOAD_METHODS = frozenset({"UploadRecording"})
# A message is complete, and its credit returned, only once all its bytes arrived: a
# stream's window must hold the largest message and its 5-byte gRPC prefix.
_GRPC_PREFIX_BYTES = 5
STREAM_WINDOW_BYTES = MAX_REQUEST_MESSAGE_BYTES + 64 * 1024
_H2_DEFAULT_WINDOW = 65_535


def message_limit(path: str) -> int:
    """The largest request message accepted for the method at `path` (`/pkg.Svc/Method`)."""
    method = path.rsplit("/", 1)[-1]
    return MAX_UPLOAD_MESSAGE_BYTES if method in _UPLOAD_METHODS else MAX_REQUEST_MESSAGE_BYTES


@dataclass(frozen=True)
class GrpcLimits:
    """Bounds on what one connection may hold (see the module doc)."""

    # SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it gets RST_STREAM REFUSED_STREAM.
    max_concurrent_streams: int = 100
    # Request bytes one connection may have in flight that no handler took yet.
    connection_window_bytes: int = 8 * 1024 * 1024
    # The same for one stream (at least the largest message plus its prefix).
    stream_window_bytes: int = STREAM_WINDOW_BYTES
    # SETTINGS_MAX_FRAME_SIZE: HTTP/2's default, so no frame is bigger than 16 KiB.
    max_frame_bytes: int = 16 * 1024
    # SETTINGS_MAX_HEADER_LIST_SIZE (purerpc's value).
    max_header_list_bytes: int = 8192
    # A connection that sends nothing (not even the HTTP/2 preface) for this long is closed.
    preface_timeout_s: float = 10.0
    # A connection with no call open for this long gets GOAWAY and is closed.
    idle_timeout_s: float = 120.0
    # Deadline of a call whose client sent no grpc-timeout: unary requests...
    unary_deadline_s: float = 30.0
    # ... and calls that stream answers (downloads), once their request arrived.
    stream_deadline_s: float = 3600.0
    # Client streams (uploads, AddCalls): rate, idle time and total time of the request.
    body: BodyLimits = field(default_factory=BodyLimits)

    def __post_init__(self) -> None:
        for name in ("max_concurrent_streams", "max_header_list_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        needed = max(MAX_UPLOAD_MESSAGE_BYTES, MAX_REQUEST_MESSAGE_BYTES) + _GRPC_PREFIX_BYTES
        if self.stream_window_bytes < needed:
            raise ValueError(
                f"stream_window_bytes must hold the largest message ({needed} bytes), "
                f"not {self.stream_window_bytes}"
            )
        if not self.stream_window_bytes <= self.connection_window_bytes <= 2**31 - 1:
            raise ValueError(
                "connection_window_bytes must be between stream_window_bytes "
                f"({self.stream_window_bytes}) and 2^31-1, not {self.connection_window_bytes}"
            )
        if not 16384 <= self.max_frame_bytes <= 2**24 - 1:
            raise ValueError(f"max_frame_bytes must be 16384..2^24-1, not {self.max_frame_bytes}")
        timeouts = ("preface_timeout_s", "idle_timeout_s", "unary_deadline_s", "stream_deadline_s")
        for name in timeouts:
            value = getattr(self, name)
            if not value > 0 or math.isnan(value):
                raise ValueError(f"{name} must be > 0, not {value}")

    @property
    def connection_window_increment(self) -> int:
        """What to add to HTTP/2's initial 65,535-byte connection window."""
        return max(0, self.connection_window_bytes - _H2_DEFAULT_WINDOW)
