"""Request bodies in the REST app: backpressure and the idle timeout, without sockets
(ASGI messages come from a memory channel; time from the autojump clock)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from werkzeug.exceptions import RequestTimeout

from cj.auth import Authenticator
from cj.config import AuthConfig
from cj_api.metrics import ApiMetrics
from cj_api.rest import create_rest_app
from cj_api.rest_streaming import (
    BODY_BUFFER_BYTES,
    BackpressureConnection,
    BufferedBody,
    IdleTimeoutChunks,
)

HALF = BODY_BUFFER_BYTES // 2 + 1


def connection_and_request() -> tuple[BackpressureConnection, Any]:
    app = create_rest_app(
        None,  # type: ignore[arg-type]  # no route is called
        Authenticator(AuthConfig()),
        ApiMetrics(),
        max_recording_bytes=10 * BODY_BUFFER_BYTES,
    )
    scope: Any = {
        "type": "http",
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(3 * HALF).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    connection = BackpressureConnection(app, scope)

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent here")

    return connection, connection._create_request_from_scope(send)


async def test_receiving_pauses_while_the_handler_has_not_taken_the_body() -> None:
    with trio.fail_after(10):
        connection, request = connection_and_request()
        assert isinstance(request.body, BufferedBody)
        to_app, from_client = trio.open_memory_channel[Any](math.inf)
        for _ in range(3):
            to_app.send_nowait({"type": "http.request", "body": b"x" * HALF, "more_body": True})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.handle_messages, nursery, request, from_client.receive)
            await trio.testing.wait_all_tasks_blocked()
            # Two chunks are over the buffer: the third waits in the channel (in the
            # server, in the socket), not in our memory.
            assert request.body.received == 2 * HALF
            assert from_client.statistics().current_buffer_used == 1
            assert len(await request.body.__anext__()) == 2 * HALF
            await trio.testing.wait_all_tasks_blocked()
            assert request.body.received == 3 * HALF
            assert from_client.statistics().current_buffer_used == 0
            to_app.send_nowait({"type": "http.request", "body": b"", "more_body": False})
            await trio.testing.wait_all_tasks_blocked()
            assert request.body.complete
            assert len(await request.body.__anext__()) == HALF
            with pytest.raises(StopAsyncIteration):
                await request.body.__anext__()
            # The client leaves before an answer: the request's work is cancelled.
            to_app.send_nowait({"type": "http.disconnect"})
        assert nursery.cancel_scope.cancel_called


async def test_a_silent_body_times_out(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        body = BufferedBody(None, None)
        body.append(b"first")
        chunks = IdleTimeoutChunks(body, 30.0)
        assert await chunks.__anext__() == b"first"
        began = trio.current_time()
        with pytest.raises(RequestTimeout, match="30 s"):
            await chunks.__anext__()
        assert trio.current_time() - began == pytest.approx(30.0)


async def test_a_slow_but_steady_body_does_not_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        body = BufferedBody(None, None)
        received = []

        async def trickle() -> None:
            for index in range(10):
                await trio.sleep(20.0)  # each gap under the 30 s idle timeout
                body.append(bytes([index]))
            body.set_complete()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            async for chunk in IdleTimeoutChunks(body, 30.0):
                received.append(chunk)
        assert b"".join(received) == bytes(range(10))
