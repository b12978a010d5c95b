"""Issue 11, item 5: no token in any log line or error text.

The known leak: gRPC metadata `authorization: "Bearer <token> "` (a trailing space)
made h2 raise a protocol error quoting the header, and cj-api logged it in full
(`grpc connection failed`). Here every way we know to get a header into an error is
tried against a live cj-api with the log captured raw (before any redaction), and then
the output of the whole hostile suite so far is searched for every configured token
(the conftest repeats that search at the end of the session). The file name sorts it
last in this directory.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import structlog
import trio
from pydantic import SecretStr

from cj.config import LogFormat, LoggingConfig
from cj.logs import configure_logging, redact_text, register_secrets, safe_error_text
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN
from tests.hostile.conftest import CONFIGURED_TOKENS, ThreadedApi, token_leaks
from tests.hostile.grpc_raw import RawGrpcPeer


def _text(events: list[dict[str, Any]]) -> str:
    return "\n".join(repr(event) for event in events)


async def test_headers_with_tokens_never_reach_the_log(hostile_api: ThreadedApi) -> None:
    assert hostile_api.endpoints is not None
    with structlog.testing.capture_logs() as events, trio.fail_after(15):
        # The case: a trailing space makes the header invalid HTTP/2.
        for value in (
            f"Bearer {READER_TOKEN} ",
            f" Bearer {AGENT_TOKEN}",
            f"Bearer\t{READER_TOKEN}",
        ):
            async with RawGrpcPeer(hostile_api.endpoints.grpc_port) as peer:
                sid = peer.start("SearchByPhone", None, extra=[("authorization", value)])
                state = peer.streams[sid]
                await peer.until(lambda: peer.goaway is not None or state.done)  # noqa: B023
                if peer.streams[sid].done:
                    assert peer.streams[sid].status == "16"  # UNAUTHENTICATED
                    assert READER_TOKEN not in repr(peer.streams[sid].headers)
        # The same on the REST port over HTTP/2 (prior knowledge) and HTTP/1.1.
        async with RawGrpcPeer(hostile_api.rest_port) as peer:
            stream = peer.request(
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/api/v1/calls?phone=1"),
                    (":authority", "x"),
                    ("authorization", f"Bearer {READER_TOKEN} "),
                ],
                end=True,
            )
            await peer.until(lambda: peer.streams[stream].done or peer.goaway is not None)
        async with httpx.AsyncClient(base_url=hostile_api.rest_url) as client:
            for header in (f"Bearer {READER_TOKEN}x", f"Basic {READER_TOKEN}", READER_TOKEN):
                answer = await client.get("/api/v1/calls", headers={"Authorization": header})
                assert answer.status_code == 401
                assert READER_TOKEN not in answer.text
    assert any(event["event"] == "grpc connection failed" for event in events)
    captured = _text(events)
    for token in CONFIGURED_TOKENS:
        assert token not in captured
    assert token_leaks() == []


def test_the_redaction_processor_is_the_last_line_of_defence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "s3cr3t-token-of-a-test-0123"
    register_secrets([secret])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(LoggingConfig(level="info", format=LogFormat.JSON))
    try:
        log = structlog.get_logger("tests.redaction")
        log.info("careless", header=f"Bearer {secret}", nested={"a": [secret]})
        try:
            raise ValueError(f"bad header {secret!r}")
        except ValueError:
            log.exception("failed")
        logging.getLogger("hypercorn.error").warning("h2 said %r", f"Bearer {secret} ")
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.count("[redacted]") >= 4
    assert secret not in err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["header"] == "Bearer [redacted]"


def test_error_texts_lose_their_quoted_parts() -> None:
    exc = ValueError(f"Received header value surrounded by whitespace {b'Bearer abc '!r}")
    assert safe_error_text(exc) == "ValueError: Received header value surrounded by whitespace '…'"
    assert redact_text("authorization: bearer a.b-c") == "authorization: bearer [redacted]"
    assert "hunter2hunter2" not in repr(SecretStr("hunter2hunter2"))
