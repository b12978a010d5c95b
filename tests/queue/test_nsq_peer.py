"""The NSQ test peer itself, checked with raw bytes written from the spec.

If the peer were wrong in the same way as the client, the client tests would pass for
nothing; these talk to it without any of the client's code.
"""

from __future__ import annotations

import json
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from tests.queue.nsq_peer import AuthGrant, NsqTestPeer


class Raw:
    """Bytes-level NSQ client for poking at the peer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, peer: NsqTestPeer, magic: bytes = b"  V2") -> Raw:
        raw = cls(await trio.open_tcp_stream("127.0.0.1", peer.port))
        peer_raws = _RAWS.setdefault(id(peer), [])
        peer_raws.append(raw)
        await raw.stream.send_all(magic)
        return raw

    async def send(self, line: bytes, body: bytes | None = None) -> None:
        data = line + b"\n"
        if body is not None:
            data += struct.pack(">l", len(body)) + body
        await self.stream.send_all(data)

    async def frame(self) -> tuple[int, bytes] | None:
        """(frame type, data), or None once the peer has closed the connection."""
        while True:
            if len(self.buffer) >= 4:
                (size,) = struct.unpack_from(">l", self.buffer)
                if len(self.buffer) >= 4 + size:
                    (kind,) = struct.unpack_from(">l", self.buffer, 4)
                    data = bytes(self.buffer[8 : 4 + size])
                    del self.buffer[: 4 + size]
                    return kind, data
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk

    async def expect(self, kind: int, data: bytes | None = None) -> bytes:
        got = await self.frame()
        assert got is not None, "connection closed"
        assert got[0] == kind, got
        if data is not None:
            assert got[1] == data
        return got[1]

    async def message(self) -> tuple[int, bytes, bytes]:
        """(attempts, id, body) of the next message, skipping heartbeats (answered)."""
        while True:
            got = await self.frame()
            assert got is not None, "connection closed"
            if got == (0, b"_heartbeat_"):
                await self.send(b"NOP")
                continue
            assert got[0] == 2, got
            (attempts,) = struct.unpack_from(">H", got[1], 8)
            return attempts, got[1][10:26], got[1][26:]

    async def identify(self, **fields: object) -> bytes:
        await self.send(b"IDENTIFY", json.dumps(fields).encode())
        return await self.expect(0)

    async def subscribe(self, heartbeat_ms: int = 10_000, msg_timeout_ms: int = 5_000) -> None:
        await self.identify(heartbeat_interval=heartbeat_ms, msg_timeout=msg_timeout_ms)
        await self.send(b"SUB jobs work")
        await self.expect(0, b"OK")


# Raw connections per peer, closed with it (an unclosed socket's finalizer could close
# a reused file descriptor under a later test).
_RAWS: dict[int, list[Raw]] = {}


@pytest.fixture
async def peer() -> AsyncIterator[NsqTestPeer]:
    peer = NsqTestPeer()
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.serve)
        yield peer
        for raw in _RAWS.pop(id(peer), []):
            await raw.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_bad_magic_is_refused(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        raw = await Raw.connect(peer, magic=b"  V1")
        assert await raw.frame() == (1, b"E_BAD_PROTOCOL")
        assert await raw.frame() is None


async def test_identify_negotiates_or_says_ok(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        raw = await Raw.connect(peer)
        answer = json.loads(await raw.identify(feature_negotiation=True, msg_timeout=2000))
        assert answer["msg_timeout"] == 2000
        assert answer["max_rdy_count"] == 2500
        assert answer["tls_v1"] is False and answer["auth_required"] is False
        plain = await Raw.connect(peer)
        assert await plain.identify(client_id="x") == b"OK"


async def test_fatal_errors_close_and_name_the_problem(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        raw = await Raw.connect(peer)
        await raw.send(b"IDENTIFY", b'{"heartbeat_interval": 500}')
        assert await raw.frame() == (1, b"E_BAD_BODY IDENTIFY heartbeat interval (500) is invalid")
        assert await raw.frame() is None
        raw = await Raw.connect(peer)
        await raw.send(b"SUB bad/topic work")
        assert await raw.frame() == (1, b'E_BAD_TOPIC SUB topic name "bad/topic" is not valid')
        assert await raw.frame() is None
        raw = await Raw.connect(peer)
        await raw.send(b"PUB jobs", b"")
        assert await raw.frame() == (1, b"E_BAD_MESSAGE PUB invalid message body size 0")
        raw = await Raw.connect(peer)
        await raw.send(b"FROB")
        assert await raw.frame() == (1, b"E_INVALID invalid command FROB")


async def test_rdy_bounds_in_flight_and_fin_frees_a_slot(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        raw = await Raw.connect(peer)
        await raw.subscribe()
        publisher = await Raw.connect(peer)
        for i in range(5):
            await publisher.send(b"PUB jobs", f"m{i}".encode())
            await publisher.expect(0, b"OK")
        await raw.send(b"RDY 2")
        first = [await raw.message() for _ in range(2)]
        assert [body for _, _, body in first] == [b"m0", b"m1"]
        channel = peer.channel("jobs", "work")
        await trio.sleep(3)  # well under msg_timeout: nothing more may come
        assert (len(channel.in_flight), channel.depth) == (2, 3)
        await raw.send(b"FIN " + first[0][1])
        attempts, _, body = await raw.message()
        assert (attempts, body) == (1, b"m2")
        await raw.send(b"FIN " + b"f" * 16)  # not in flight: non-fatal
        assert await raw.frame() == (
            1,
            b"E_FIN_FAILED FIN ffffffffffffffff failed ID not in flight",
        )
        await raw.send(b"CLS")
        assert await raw.expect(0) == b"CLOSE_WAIT"
        await raw.send(b"FIN " + first[1][1])  # still allowed while closing
        await raw.send(b"NOP")
        await peer.wait_until(lambda: channel.finished == 2)


async def test_timeout_redelivers_and_req_delay_is_honoured(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        raw = await Raw.connect(peer)
        await raw.subscribe(msg_timeout_ms=2000)
        peer.put("jobs", b"job")
        await raw.send(b"RDY 1")
        start = trio.current_time()
        attempts, message_id, _ = await raw.message()
        assert attempts == 1
        again = await raw.message()  # no FIN: back after msg_timeout
        assert again[0] == 2 and again[1] == message_id
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.01)
        await raw.send(b"REQ " + message_id + b" 7000")
        requeued_at = trio.current_time()
        third = await raw.message()
        assert third[0] == 3
        assert trio.current_time() - requeued_at == pytest.approx(7.0, abs=0.01)
        await raw.send(b"TOUCH " + message_id)
        await raw.send(b"REQ " + message_id + b" 9999999")
        assert await raw.frame() == (1, b"E_INVALID REQ timeout 9999999 out of range 0-3600000")


async def test_unanswered_heartbeats_get_the_client_dropped(
    peer: NsqTestPeer, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        raw = await Raw.connect(peer)
        await raw.identify(heartbeat_interval=1000)
        start = trio.current_time()
        assert await raw.frame() == (0, b"_heartbeat_")
        assert await raw.frame() == (0, b"_heartbeat_")
        assert await raw.frame() is None
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.01)


async def test_messages_published_before_a_channel_wait_for_it(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        publisher = await Raw.connect(peer)
        body = struct.pack(">l", 2) + struct.pack(">l", 1) + b"a" + struct.pack(">l", 1) + b"b"
        await publisher.send(b"MPUB jobs", body)
        await publisher.expect(0, b"OK")
        raw = await Raw.connect(peer)
        await raw.subscribe()
        await raw.send(b"RDY 5")
        assert [(await raw.message())[2] for _ in range(2)] == [b"a", b"b"]


# --- AUTH, TLS and IDENTIFY limits, as nsqd 1.3 (protocol_v2.go, client_v2.go) ----------

GRANT = AuthGrant(
    identity="enc",
    identity_url="https://auth.test/enc",
    authorizations=((r"^jobs$", (r"^work$", r"^$"), ("subscribe", "publish")),),
)


async def start(nursery: trio.Nursery, **options: Any) -> NsqTestPeer:
    peer = NsqTestPeer(**options)
    await nursery.start(peer.serve)
    return peer


async def test_auth_state_rules_and_error_texts() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            peer = await start(nursery, auth={"good": GRANT})
            raw = await Raw.connect(peer)
            answer = json.loads(await raw.identify(feature_negotiation=True))
            assert answer["auth_required"] is True
            await raw.send(b"SUB jobs work")
            assert await raw.frame() == (1, b"E_AUTH_FIRST AUTH required before SUB")
            assert await raw.frame() is None
            raw = await Raw.connect(peer)
            await raw.send(b"AUTH", b"bad")
            assert await raw.frame() == (1, b"E_AUTH_FAILED AUTH failed")
            raw = await Raw.connect(peer)
            await raw.send(b"AUTH", b"good")
            assert json.loads(await raw.expect(0)) == {
                "identity": "enc",
                "identity_url": "https://auth.test/enc",
                "permission_count": 1,
            }
            await raw.send(b"PUB jobs", b"x")
            await raw.expect(0, b"OK")
            await raw.send(b"AUTH", b"good")
            assert await raw.frame() == (1, b"E_INVALID AUTH already set")
            raw = await Raw.connect(peer)
            await raw.send(b"AUTH", b"good")
            await raw.expect(0)
            await raw.send(b"PUB other", b"x")
            assert await raw.frame() == (1, b'E_UNAUTHORIZED AUTH failed for PUB on "other" ""')
            raw = await Raw.connect(peer)
            await raw.send(b"AUTH", b"good")
            await raw.expect(0)
            await raw.subscribe()
            await raw.send(b"AUTH", b"good")
            assert await raw.frame() == (1, b"E_INVALID cannot AUTH in current state")
            for r in [*_RAWS.pop(id(peer), [])]:
                await r.stream.aclose()
            nursery.cancel_scope.cancel()


async def test_auth_disabled(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        raw = await Raw.connect(peer)
        await raw.send(b"AUTH", b"anything")
        assert await raw.frame() == (1, b"E_AUTH_DISABLED AUTH disabled")


async def test_tls_required_then_upgraded(tmp_path: Any) -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            peer = await start(nursery, tls_context=server, tls_required=True)
            raw = await Raw.connect(peer)
            await raw.send(b"PUB jobs", b"x")
            assert await raw.frame() == (1, b"E_INVALID cannot PUB in current state (TLS required)")
            raw = await Raw.connect(peer)
            answer = json.loads(await raw.identify(feature_negotiation=True, tls_v1=True))
            assert answer["tls_v1"] is True
            assert not raw.buffer  # nothing in clear after the answer
            tls = trio.SSLStream(raw.stream, client, server_hostname="127.0.0.1")
            await tls.do_handshake()
            raw.stream = tls  # type: ignore[assignment]
            await raw.expect(0, b"OK")
            await raw.send(b"PUB jobs", b"x")
            await raw.expect(0, b"OK")
            assert peer.published == 1
            await tls.aclose()
            for r in _RAWS.pop(id(peer), []):
                await trio.aclose_forcefully(r.stream)
            nursery.cancel_scope.cancel()


async def test_identify_output_buffer_bounds(peer: NsqTestPeer) -> None:
    with trio.fail_after(5):
        raw = await Raw.connect(peer)
        answer = json.loads(
            await raw.identify(
                feature_negotiation=True, output_buffer_timeout=25, output_buffer_size=4096
            )
        )
        assert (answer["output_buffer_timeout"], answer["output_buffer_size"]) == (25, 4096)
        raw = await Raw.connect(peer)
        await raw.send(b"IDENTIFY", b'{"output_buffer_timeout": 10}')
        assert await raw.frame() == (
            1,
            b"E_BAD_BODY IDENTIFY output buffer timeout (10) is invalid",
        )
        raw = await Raw.connect(peer)
        await raw.send(b"IDENTIFY", b'{"output_buffer_size": 32}')
        assert await raw.frame() == (1, b"E_BAD_BODY IDENTIFY output buffer size (32) is invalid")
        raw = await Raw.connect(peer)
        await raw.send(b"IDENTIFY", b'{"msg_timeout": 900001}')
        assert await raw.frame() == (1, b"E_BAD_BODY IDENTIFY msg timeout (900001) is invalid")
