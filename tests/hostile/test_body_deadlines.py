"""Issue 11, item 9: request bodies must keep moving, and early refusals come at once.

Against a live cj-api over raw HTTP/1.1 sockets: an upload that trickles is cut by the
minimum-rate rule (408, long before the idle timeout), and answers that need no body
(411 for a chunked upload without its size, 413 for a declared size over the limit)
arrive at once instead of after the idle timeout. Limits are configured short; no
sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import trio

from cj.codec import call_to_pb
from cj.rpc import CallJournalClient, open_channel
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN
from tests.fixtures.postgres import PostgresServer
from tests.hostile.conftest import MAX_RECORDING_BYTES, ThreadedApi, bounded_api
from tests.hostile.grpc_raw import RawGrpcPeer

IDLE_S = 30.0  # the idle rule is far away: what answers must be another rule


@pytest.fixture(scope="module")
def api(
    postgres_server: PostgresServer,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ThreadedApi]:
    with bounded_api(
        postgres_server,
        template_database,
        tmp_path_factory,
        body_idle_timeout_s=IDLE_S,
        body_rate_grace_s=0.3,
        body_min_rate_bytes_per_s=100_000,
    ) as running:
        yield running


async def _existing_call(api: ThreadedApi) -> str:
    call = make_call()
    async with open_channel(api.grpc_address, token=AGENT_TOKEN) as channel:
        await CallJournalClient(channel).add_call(call_to_pb(call, include_raw=True))
    return str(call.uuid)


async def _exchange(
    api: ThreadedApi, head: str, body: bytes = b""
) -> tuple[int, dict[str, object], float]:
    """Send a request head (and the start of a body), then read the answer: its
    status, its JSON body and how long it took after the request was sent."""
    stream = await trio.open_tcp_stream("127.0.0.1", api.rest_port)
    async with stream:
        await stream.send_all(head.encode() + b"\r\n" + body)
        started = trio.current_time()
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
        elapsed = trio.current_time() - started
    status_line, _, rest = data.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload or b"{}"), elapsed


def _put(call_uuid: str, *headers: str) -> str:
    lines = [
        f"PUT /api/v1/calls/{call_uuid}/recording HTTP/1.1",
        "Host: x",
        f"Authorization: Bearer {AGENT_TOKEN}",
        "Content-Type: audio/wav",
        "X-Content-SHA256: " + "0" * 64,
        "X-File-Name: slow.wav",
        *headers,
    ]
    return "\r\n".join(lines) + "\r\n"


async def test_an_upload_below_the_minimum_rate_is_cut_with_408(api: ThreadedApi) -> None:
    with trio.fail_after(10):
        call_uuid = await _existing_call(api)
        status, body, elapsed = await _exchange(
            api, _put(call_uuid, "Content-Length: 100000"), b"RIFF"
        )
    assert status == 408, body
    assert "too slow" in str(body)
    assert elapsed < 5  # the rate rule after its 0.3 s grace, not the 30 s idle rule
    assert api.partial_uploads() == []


async def test_a_chunked_upload_without_its_size_is_refused_at_once(api: ThreadedApi) -> None:
    with trio.fail_after(10):
        call_uuid = await _existing_call(api)
        status, body, elapsed = await _exchange(
            api, _put(call_uuid, "Transfer-Encoding: chunked"), b"4\r\nRIFF\r\n"
        )
    assert status == 411, body
    assert elapsed < 3  # was: after the idle timeout (60 s by default)


async def test_a_declared_size_over_the_limit_is_refused_at_once(api: ThreadedApi) -> None:
    with trio.fail_after(10):
        call_uuid = await _existing_call(api)
        status, body, elapsed = await _exchange(
            api, _put(call_uuid, f"Content-Length: {MAX_RECORDING_BYTES + 1}"), b"RIFF"
        )
    assert status == 413, body
    assert elapsed < 3  # was: after the idle timeout, draining a body that never came


@pytest.fixture(scope="module")
def h2_api(
    postgres_server: PostgresServer,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ThreadedApi]:
    with bounded_api(
        postgres_server,
        template_database,
        tmp_path_factory,
        rest_h2_max_concurrent_streams=8,
        rest_keep_alive_timeout_s=0.3,
    ) as running:
        yield running


async def test_rest_over_http2_is_bounded_too(h2_api: ThreadedApi) -> None:
    with trio.fail_after(10):
        async with RawGrpcPeer(h2_api.rest_port) as peer:  # HTTP/2 with prior knowledge
            stream = peer.request(
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/healthz"),
                    (":authority", "x"),
                ],
                end=True,
            )
            assert (await peer.finish(stream)).headers[":status"] == "200"
            assert peer.conn.remote_settings.max_concurrent_streams == 8
            assert peer.conn.remote_settings.max_frame_size == 16 * 1024
            await peer.until(lambda: False)  # no request open: closed at keep-alive
        assert peer.closed
