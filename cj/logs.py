"""Structured logging: events with named fields (`log.info("stored", call_uuid=...)`).

Every module takes `log = structlog.get_logger(__name__)`; `configure_logging` sets the
level and the renderer (console for humans, JSON lines for collectors) once per process.
"""

from __future__ import annotations

import logging
import sys

import structlog

from cj.config import LogFormat, LoggingConfig


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
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that is not ours to report at info.
    for noisy in ("hpack", "botocore", "boto3", "s3transfer", "urllib3", "purerpc", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
