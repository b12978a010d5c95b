"""Issue 11, item 4: what one gRPC client may hold is bounded (against a live cj-api).

Attacks with a valid token over raw HTTP/2: a message announced far bigger than the
method allows, more streams than the cap, connections that say nothing (or only the
preface), header-only calls, and an upload that trickles. Timeouts are configured
short so the tests take well under a second each; no sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator

import h2.errors  # type: ignore[import-untyped]
import pytest
import trio

from cj.codec import call_to_pb
from cj.config import ApiConfig
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, open_channel
from cj.rpc.limits import (
    MAX_REQUEST_MESSAGE_BYTES,
    MAX_UPLOAD_MESSAGE_BYTES,
    STREAM_WINDOW_BYTES,
)
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN
from tests.fixtures.postgres import PostgresServer
from tests.hostile.conftest import ThreadedApi, bounded_api
from tests.hostile.grpc_raw import RawGrpcPeer, grpc_frame

RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, OK = "8", "4", "0"
SHORT = 0.4


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
        grpc_preface_timeout_s=SHORT,
        grpc_idle_timeout_s=SHORT,
        default_deadline_s=2.0,
        body_idle_timeout_s=5.0,
        body_rate_grace_s=0.3,
        body_min_rate_bytes_per_s=100_000,
    ) as running:
        yield running


def grpc_port(api: ThreadedApi) -> int:
    assert api.endpoints is not None
    return api.endpoints.grpc_port


def test_the_defaults_are_bounded() -> None:
    config = ApiConfig()
    assert config.default_deadline_s <= 60  # was 3600 s, for every call
    assert config.grpc_max_concurrent_streams <= 1000  # was 65,536
    assert config.grpc_connection_window_bytes <= 16 * 1024 * 1024  # was 1 GiB
    assert config.grpc_idle_timeout_s <= 300
    assert MAX_UPLOAD_MESSAGE_BYTES <= 1024 * 1024 + 4096
    assert MAX_REQUEST_MESSAGE_BYTES <= 4 * 1024 * 1024


async def test_a_message_announced_too_big_is_refused_at_once(api: ThreadedApi) -> None:
    with trio.fail_after(10):
        async with RawGrpcPeer(grpc_port(api)) as peer:
            # The attack: a 32 MiB search request, sent slowly.
            big = peer.start("SearchByPhone", READER_TOKEN)
            peer.send(big, grpc_frame(b"\0" * 60_000, declared=32 * 1024 * 1024))
            refused = await peer.finish(big)
            assert refused.status == RESOURCE_EXHAUSTED
            assert "33554432" in refused.message
            # An upload chunk of 1.5 MiB: over UploadRecording's own limit.
            upload = peer.start("UploadRecording", AGENT_TOKEN)
            peer.send(upload, grpc_frame(b"\0" * 1000, declared=1536 * 1024))
            assert (await peer.finish(upload)).status == RESOURCE_EXHAUSTED
            # The connection is still good for honest calls.
            search = peer.start("SearchByPhone", READER_TOKEN)
            peer.send_message(search, pb.SearchByPhoneRequest(phone="9002800421"))
            assert (await peer.finish(search)).status == OK


async def test_streams_beyond_the_cap_are_refused_alone(api: ThreadedApi) -> None:
    cap = ApiConfig().grpc_max_concurrent_streams
    with trio.fail_after(10):
        async with RawGrpcPeer(grpc_port(api)) as peer:
            # Opened before the server's SETTINGS arrive, so h2 does not stop us.
            ids = [peer.start("SearchByPhone", READER_TOKEN) for _ in range(cap + 3)]
            await peer.until(lambda: all(peer.streams[i].reset_code for i in ids[cap:]))
            assert peer.conn.remote_settings.max_concurrent_streams == cap
            assert peer.conn.remote_settings.initial_window_size == STREAM_WINDOW_BYTES
            assert peer.conn.remote_settings.max_frame_size == 16 * 1024
            assert peer.conn.max_outbound_frame_size == 16 * 1024
            refused = [i for i in ids if peer.streams[i].reset_code is not None]
            assert refused == ids[cap:]
            assert {peer.streams[i].reset_code for i in refused} == {
                h2.errors.ErrorCodes.REFUSED_STREAM
            }
            assert peer.goaway is None  # a stream error, not the end of the connection
            # The admitted streams are answered (header-only: at the unary deadline).
            first = await peer.finish(ids[0])
            assert first.status == DEADLINE_EXCEEDED


async def test_a_header_list_over_the_limit_ends_the_connection(api: ThreadedApi) -> None:
    with trio.fail_after(5):
        async with RawGrpcPeer(grpc_port(api)) as peer:
            call = peer.start("SearchByPhone", READER_TOKEN, extra=[("x-pad", "p" * 20_000)])
            await peer.until(lambda: peer.goaway is not None)
        assert peer.goaway is not None or peer.closed  # h2 default: 64 KiB
        assert peer.streams[call].status is None


async def test_a_silent_connection_is_closed(api: ThreadedApi) -> None:
    with trio.fail_after(5):
        started = trio.current_time()
        async with RawGrpcPeer(grpc_port(api), preface=False) as peer:
            await peer.until(lambda: False)
        assert peer.closed
        assert trio.current_time() - started >= SHORT * 0.9


async def test_a_connection_without_calls_gets_goaway_and_is_closed(api: ThreadedApi) -> None:
    with trio.fail_after(5):
        async with RawGrpcPeer(grpc_port(api)) as peer:
            call = peer.start("SearchByPhone", READER_TOKEN)
            peer.send_message(call, pb.SearchByPhoneRequest(phone="9002800421"))
            assert (await peer.finish(call)).status == OK
            await peer.until(lambda: False)  # the idle time starts when the last call ends
        assert peer.goaway is not None
        assert peer.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert peer.closed


async def test_a_header_only_call_is_answered_within_seconds(api: ThreadedApi) -> None:
    with trio.fail_after(6):
        async with RawGrpcPeer(grpc_port(api)) as peer:
            started = trio.current_time()
            call = peer.start("SearchByPhone", READER_TOKEN)
            assert (await peer.finish(call)).status == DEADLINE_EXCEEDED
            assert trio.current_time() - started < 4


async def test_an_upload_slower_than_the_minimum_rate_is_cut(api: ThreadedApi) -> None:
    call = make_call()
    with trio.fail_after(10):
        async with open_channel(api.grpc_address, token=AGENT_TOKEN) as channel:
            await CallJournalClient(channel).add_call(call_to_pb(call, include_raw=True))
        async with RawGrpcPeer(grpc_port(api)) as peer:
            upload = peer.start("UploadRecording", AGENT_TOKEN)
            header = pb.UploadHeader(
                call_uuid=str(call.uuid), file_name="slow.wav", size=10_000, sha256="0" * 64
            )
            peer.send_message(upload, pb.UploadRecordingRequest(header=header), end=False)
            peer.send_message(upload, pb.UploadRecordingRequest(chunk=b"x"), end=False)
            started = trio.current_time()
            cut = await peer.finish(upload)
            assert cut.status == DEADLINE_EXCEEDED
            assert "too slow" in cut.message
            assert trio.current_time() - started < 3  # the rate rule, not the 5 s idle rule
    assert api.partial_uploads() == []
