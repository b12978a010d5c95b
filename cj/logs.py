"""Structured logging: events with named fields (`log.info("stored", call_uuid=...)`).

Every module takes `log = structlog.get_logger(__name__)`; `configure_logging` sets the
level and the renderer (console for humans, JSON lines for collectors) once per process.

Secrets: no header value belongs in a log line. Code that logs an exception it did not
raise itself uses `safe_error_text(exc)` (quoted parts cut out: h2 and others quote
header values in their messages). As a last line of defence, `redact_secrets` (in every
chain `configure_logging` builds) replaces every registered secret
(`register_secrets`, e.g. the configured tokens) and anything after `Bearer ` in every
string of an event, exception texts included.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from cj.config import LogFormat, LoggingConfig

REDACTED = "[redacted]"
_BEARER = re.compile(r"(?i)(bearer)(\s+|%20|\+)[^\s'\",;]+")
# A quoted literal, as repr() or %r writes it: 'x', "x", b'x'.
_QUOTED = re.compile(r"""\bb?(['"])(?:\\.|(?!\1).)*\1""")
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()
# Secrets shorter than this are not searched for (they would redact ordinary words).
_MIN_SECRET_LENGTH = 6


def register_secrets(values: Iterable[str]) -> None:
    """Add `values` (tokens, passwords) to what `redact_secrets` removes from logs."""
    global _secrets
    with _secrets_lock:
        _secrets = _secrets | {v for v in values if len(v) >= _MIN_SECRET_LENGTH}


def register_settings_secrets(settings: object) -> None:
    """Register every `SecretStr` in a settings tree (tokens, URLs with passwords, keys),
    and the password of any URL among them."""
    register_secrets(_secrets_in(settings, depth=0))


def _secrets_in(value: object, depth: int) -> list[str]:
    if depth > 8:
        return []
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        found = [secret]
        if "://" in secret:
            password = urlsplit(secret).password
            if password:
                found.append(password)
        return found
    children: Iterable[object] = ()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        children = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        children = value
    return [secret for child in children for secret in _secrets_in(child, depth + 1)]


def redact_text(text: str) -> str:
    """`text` with registered secrets and bearer credentials replaced by [redacted]."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secrets in every field (run it after format_exc_info,
    so tracebacks are text by then, and before the renderer)."""
    for key, value in list(event_dict.items()):
        if key == "exc_info" and value is not None and value is not True:
            continue  # still an exception object: rendered (and redacted) later
        event_dict[key] = _redact_value(value)
    return event_dict


def safe_error_text(exc: BaseException) -> str:
    """An exception as `Type: message` with quoted literals cut out (h2 quotes header
    values in its protocol errors, other libraries repr their input)."""
    message = _QUOTED.sub("'…'", str(exc))
    return redact_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


class _RedactingFormatter(logging.Formatter):
    """Wraps the final formatter: redacts the whole rendered line (tracebacks too)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self._inner.format(record))


def configure_logging(config: LoggingConfig) -> None:
    level = getattr(logging, config.level.upper())
    renderer: structlog.typing.Processor
    if config.format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: the rich default shows local variables, which may hold secrets.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            # Drop events below the level first: a debug line per request must cost
            # nothing when debug is off.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if config.format is LogFormat.JSON:
        final.append(structlog.processors.format_exc_info)  # the console renderer does its own
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*final, renderer]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(formatter))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that is not ours to report at info.
    # hpack logs every decoded header at debug: never below warning, whatever the level.
    for noisy in ("hpack", "h2", "botocore", "boto3", "s3transfer", "urllib3", "purerpc", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
