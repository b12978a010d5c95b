"""The service's error type, shared by the gRPC and the REST API.

Business code raises `ServiceError` with an `ErrorCode`; each transport maps the code
once, where the response is written: `code.grpc_status` for gRPC (the numeric canonical
status code), `code.http_status` for REST, whose body is
`{"error": error.to_dict()}`. A message is written for the client: it names the field at
fault and never carries secrets or internal details.

Codes follow gRPC's canonical ones, plus `GONE`: a resource that existed and was
removed on purpose (a recording purged after its retention period). gRPC has no such
code, so it is sent as NOT_FOUND (with the trailer `cj-error-code: GONE`) and as 410 on
REST.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """What went wrong, as a client can act on it (the REST body's `code`)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # the request is wrong; `field` says where
    NOT_FOUND = "NOT_FOUND"
    GONE = "GONE"  # existed, removed on purpose (purged recording)
    ALREADY_EXISTS = "ALREADY_EXISTS"  # a different version of it exists
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # the system is not in the needed state
    ABORTED = "ABORTED"  # concurrency conflict; retry the whole operation
    PERMISSION_DENIED = "PERMISSION_DENIED"  # authenticated, but not allowed
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no valid credentials
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # too large, or a quota ran out
    OUT_OF_RANGE = "OUT_OF_RANGE"  # e.g. a byte offset past the end of a file
    UNAVAILABLE = "UNAVAILABLE"  # transient: retry with backoff
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"  # the client gave up
    UNIMPLEMENTED = "UNIMPLEMENTED"
    DATA_LOSS = "DATA_LOSS"  # stored bytes do not match their checksum
    UNKNOWN = "UNKNOWN"  # a peer sent a status we do not know
    INTERNAL = "INTERNAL"  # our bug; details are in the server's log only

    @property
    def grpc_status(self) -> int:
        """The gRPC canonical status code (0-16) this error is sent as."""
        return _STATUS[self][0]

    @property
    def http_status(self) -> int:
        """The HTTP status this error is sent as on REST."""
        return _STATUS[self][1]

    @classmethod
    def from_grpc_status(cls, status: int) -> ErrorCode:
        """The code for a gRPC status received from a peer (UNKNOWN for unknown ones).

        NOT_FOUND maps to NOT_FOUND: GONE travels in the `cj-error-code` trailer.
        """
        return _BY_GRPC.get(status, cls.UNKNOWN)


# code: (gRPC canonical status, HTTP status). 499 is the de facto "client closed request".
_STATUS: dict[ErrorCode, tuple[int, int]] = {
    ErrorCode.CANCELLED: (1, 499),
    ErrorCode.UNKNOWN: (2, 500),
    ErrorCode.INVALID_ARGUMENT: (3, 400),
    ErrorCode.DEADLINE_EXCEEDED: (4, 504),
    ErrorCode.NOT_FOUND: (5, 404),
    ErrorCode.GONE: (5, 410),
    ErrorCode.ALREADY_EXISTS: (6, 409),
    ErrorCode.PERMISSION_DENIED: (7, 403),
    ErrorCode.RESOURCE_EXHAUSTED: (8, 413),
    ErrorCode.FAILED_PRECONDITION: (9, 409),
    ErrorCode.ABORTED: (10, 409),
    ErrorCode.OUT_OF_RANGE: (11, 416),
    ErrorCode.UNIMPLEMENTED: (12, 501),
    ErrorCode.INTERNAL: (13, 500),
    ErrorCode.UNAVAILABLE: (14, 503),
    ErrorCode.DATA_LOSS: (15, 500),
    ErrorCode.UNAUTHENTICATED: (16, 401),
}
# GONE shares NOT_FOUND's gRPC status; the reverse map keeps the canonical one.
_BY_GRPC: dict[int, ErrorCode] = {
    grpc: code for code, (grpc, _) in _STATUS.items() if code is not ErrorCode.GONE
}


class ServiceError(Exception):
    """A failure to report to the client with `code` and `message`.

    `field` names the request field at fault (`"call.started_at"`, `"limit"`), when one
    is; `str(error)` is then `"field: message"`, which is also the gRPC status message.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.code = ErrorCode(code)
        self.message = message
        self.field = field
        # When to try again (a limit, a transient state): REST `Retry-After` (and 429
        # for RESOURCE_EXHAUSTED), gRPC trailer `retry-after`, in whole seconds.
        self.retry_after_s = retry_after_s
        super().__init__(self.describe())

    @property
    def retry_after_header(self) -> str | None:
        """`retry_after_s` as whole seconds (at least 1), or None."""
        if self.retry_after_s is None:
            return None
        return str(max(1, math.ceil(self.retry_after_s)))

    def describe(self) -> str:
        """The message as sent to clients: `"field: message"` or `"message"`."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        field = f", field={self.field!r}" if self.field else ""
        return f"ServiceError({self.code.value}, {self.message!r}{field})"

    def to_dict(self) -> dict[str, Any]:
        """The REST error body's inner object: `{"code", "message"[, "field"]}`."""
        body: dict[str, Any] = {"code": self.code.value, "message": self.describe()}
        if self.field:
            body["field"] = self.field
        return body

    # --- convenience constructors, one per code a handler raises ------------------------

    @classmethod
    def invalid(cls, field: str, message: str) -> ServiceError:
        """INVALID_ARGUMENT naming the request field at fault."""
        return cls(ErrorCode.INVALID_ARGUMENT, message, field=field)

    @classmethod
    def not_found(cls, message: str) -> ServiceError:
        return cls(ErrorCode.NOT_FOUND, message)

    @classmethod
    def gone(cls, message: str) -> ServiceError:
        """The resource existed and was removed on purpose (gRPC NOT_FOUND, HTTP 410)."""
        return cls(ErrorCode.GONE, message)

    @classmethod
    def already_exists(cls, message: str) -> ServiceError:
        return cls(ErrorCode.ALREADY_EXISTS, message)

    @classmethod
    def failed_precondition(cls, message: str, *, field: str | None = None) -> ServiceError:
        return cls(ErrorCode.FAILED_PRECONDITION, message, field=field)

    @classmethod
    def aborted(cls, message: str) -> ServiceError:
        return cls(ErrorCode.ABORTED, message)

    @classmethod
    def permission_denied(cls, message: str, *, field: str | None = None) -> ServiceError:
        return cls(ErrorCode.PERMISSION_DENIED, message, field=field)

    @classmethod
    def unauthenticated(cls, message: str) -> ServiceError:
        return cls(ErrorCode.UNAUTHENTICATED, message)

    @classmethod
    def resource_exhausted(
        cls, message: str, *, field: str | None = None, retry_after_s: float | None = None
    ) -> ServiceError:
        return cls(ErrorCode.RESOURCE_EXHAUSTED, message, field=field, retry_after_s=retry_after_s)

    @classmethod
    def out_of_range(cls, field: str, message: str) -> ServiceError:
        return cls(ErrorCode.OUT_OF_RANGE, message, field=field)

    @classmethod
    def unavailable(cls, message: str, *, retry_after_s: float | None = None) -> ServiceError:
        """A transient failure (database, storage, queue down): the client should retry."""
        return cls(ErrorCode.UNAVAILABLE, message, retry_after_s=retry_after_s)

    @classmethod
    def data_loss(cls, message: str) -> ServiceError:
        return cls(ErrorCode.DATA_LOSS, message)

    @classmethod
    def unimplemented(cls, message: str) -> ServiceError:
        return cls(ErrorCode.UNIMPLEMENTED, message)

    @classmethod
    def internal(cls, message: str = "internal error") -> ServiceError:
        """Our own fault, with a message safe for clients (log the details separately)."""
        return cls(ErrorCode.INTERNAL, message)


def single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (Trio's nurseries
    wrap what a task raised): what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
