"""The `grpc-timeout` header: parsing (server) and encoding (client), without I/O.

gRPC over HTTP/2: `grpc-timeout = 1*8DIGIT unit`, unit one of H (hours), M (minutes),
S (seconds), m (milliseconds), u (microseconds), n (nanoseconds).
"""

from __future__ import annotations

import datetime
import math
import re

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_FORMAT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
MAX_DIGITS = 8
_MAX_VALUE = 10**MAX_DIGITS - 1


def parse_grpc_timeout(value: str) -> float:
    """Seconds from a `grpc-timeout` value such as `"250m"`; ValueError when malformed."""
    match = _FORMAT.match(value.strip())
    if match is None:
        shown = value if len(value) <= 32 else value[:32] + "…"
        raise ValueError(
            f"malformed grpc-timeout {shown!r}: expected 1 to 8 digits and a unit "
            "(H, M, S, m, u or n)"
        )
    digits, unit = match.groups()
    return int(digits) * _UNITS[unit]


def grpc_timeout_delta(seconds: float) -> datetime.timedelta:
    """A timedelta that purerpc encodes as a valid `grpc-timeout` close to `seconds`.

    purerpc writes whole seconds as `S` and anything else as microseconds (`u`); the
    value must fit in 8 digits, so beyond 99.999999 s we round up to whole seconds.
    Rounding up keeps the server's deadline from firing before the client's own.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"timeout must be a finite number of seconds >= 0, not {seconds!r}")
    micros = math.ceil(seconds * 1_000_000)
    if micros <= _MAX_VALUE:
        return datetime.timedelta(microseconds=max(micros, 1))
    whole = math.ceil(seconds)
    if whole > _MAX_VALUE:
        raise ValueError(f"timeout of {seconds} s is longer than gRPC can express")
    return datetime.timedelta(seconds=whole)
