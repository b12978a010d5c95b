"""A protocol-faithful NSQ test peer. It is NOT a broker.

It speaks the nsqd TCP protocol V2 as https://nsq.io/clients/tcp_protocol_spec.html
describes it (and as nsqd 1.3 behaves where the spec is terse), so that the Trio NSQ
client in `cj.queue.nsq` can be tested on 127.0.0.1 without an nsqd binary. Real nsqd
(and nsqlookupd) are exercised in docker compose; this peer only needs to be strict
where a client can go wrong:

- the `  V2` magic (anything else: `E_BAD_PROTOCOL` and close), size-prefixed
  response / error / message frames, `E_*` error codes, fatal errors closing the
  connection and the non-fatal `E_FIN_FAILED`, `E_REQ_FAILED`, `E_TOUCH_FAILED`;
- IDENTIFY (size-prefixed JSON; the negotiated JSON answer when
  `feature_negotiation`, else `OK`; heartbeat_interval and msg_timeout ranges checked),
  SUB, RDY (never more in flight to a client than its RDY count), FIN, REQ (with its
  delay, on a Trio timer, so MockClock drives it), TOUCH (restarts the message timeout,
  capped at max_msg_timeout from delivery), NOP, CLS (`CLOSE_WAIT`, RDY forced to 0),
  PUB and MPUB (`OK`);
- `_heartbeat_` every negotiated interval, and the connection closed when nothing was
  read from the client for two intervals (two unanswered heartbeats);
- redelivery of a message not FINished within msg_timeout, `attempts` incremented on
  every delivery, messages spread over the subscribed clients of a channel, messages
  published before any channel exists kept for the first one;
- TLS (`tls_context`): `tls_v1` in IDENTIFY answered in clear, then the TLS handshake
  on the same socket and `OK` through it; `tls_required` refuses every other command
  before the upgrade with nsqd's `E_INVALID cannot SUB in current state (TLS required)`;
- AUTH (`auth`, a table of secrets standing in for nsqd's --auth-http-address server):
  `auth_required` in the IDENTIFY answer, AUTH only in the initial state, `E_AUTH_FAILED`
  for a secret the server refuses (or while `auth_available` is false),
  `E_UNAUTHORIZED AUTH no authorizations found`, `E_AUTH_FIRST` before AUTH, and
  SUB/PUB/MPUB checked against the grant's topic/channel regexes and permissions the
  way nsqd's `Authorization.IsAllowed` does (a publish matches with channel "");
- IDENTIFY limits: heartbeat 1 s..max_heartbeat_interval, output_buffer_timeout
  min..max, output_buffer_size 64..max, msg_timeout 1 s..max_msg_timeout, with nsqd's
  error texts, and the negotiated values in the answer;
- fault injection: drop connections, refuse publishes with an error code, lose a
  publish's answer.

Not implemented: snappy, deflate, DPUB, sampling, disk queues, output buffering (the
peer writes at once, so latency measured against it is not nsqd's). Message ids are 16
ASCII hex digits like nsqd's.
"""

from __future__ import annotations

import heapq
import itertools
import json
import ssl
import time
from collections import deque
from collections.abc import Callable

import trio

from tests.queue.nsq_peer_state import (
    _INT32,
    FRAME_ERROR,
    FRAME_MESSAGE,
    FRAME_RESPONSE,
    MAGIC,
    AuthGrant,
    ClientError,
    InFlight,
    PeerChannel,
    PeerMessage,
    PeerTopic,
    frame,
    valid_name,
)

__all__ = [
    "FRAME_ERROR",
    "FRAME_MESSAGE",
    "FRAME_RESPONSE",
    "MAGIC",
    "AuthGrant",
    "ClientError",
    "InFlight",
    "NsqTestPeer",
    "PeerChannel",
    "PeerClient",
    "PeerMessage",
    "PeerTopic",
    "frame",
    "valid_name",
]


class PeerClient:
    """One client connection as the peer sees it."""

    def __init__(self, peer: NsqTestPeer, stream: trio.SocketStream, number: int) -> None:
        self.peer = peer
        self.stream = stream
        self.number = number
        self.client_id = ""
        self.hostname = ""
        self.user_agent = ""
        self.identify: dict[str, object] | None = None
        self.state = "init"  # init → subscribed → closing
        self.heartbeat_s = peer.heartbeat_interval_s
        self.msg_timeout_s = peer.msg_timeout_s
        self.ready_count = 0
        self.in_flight = 0
        self.channel: PeerChannel | None = None
        self.commands: list[bytes] = []
        self.heartbeats_sent = 0
        self.nops = 0
        self.closed = False
        self.tls = False
        self.grant: AuthGrant | None = None
        self.output_buffer_timeout_ms = peer.output_buffer_timeout_ms
        self.output_buffer_size = 16384
        self._write_lock = trio.Lock()
        self._outbox_send, self._outbox = trio.open_memory_channel[bytes](float("inf"))
        self._reconfigured = trio.Event()
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<PeerClient #{self.number} {self.client_id!r} {self.state}>"

    @property
    def ready_for_messages(self) -> bool:
        return (
            self.state == "subscribed"
            and not self.closed
            and self.ready_count > 0
            and self.in_flight < self.ready_count
        )

    def send(self, data: bytes) -> None:
        if not self.closed:
            try:
                self._outbox_send.send_nowait(data)
            except trio.ClosedResourceError:
                pass  # hanging up: the frame is lost, as it would be on a dying socket

    def channel_changed(self) -> None:
        if self.channel is not None:
            self.channel.pump()

    def abort(self) -> None:
        """Drop the connection at once, as a crash or a network failure would."""
        self.closed = True
        self._scope.cancel()

    async def _write_loop(self) -> None:
        async for data in self._outbox:
            await self.peer._thawed.wait()
            async with self._write_lock:
                await self.stream.send_all(b"".join([data, *self._queued()]))

    def _queued(self) -> list[bytes]:
        chunks = []
        while True:  # batch whatever is queued into one write
            try:
                chunks.append(self._outbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return chunks

    async def upgrade_tls(self, answer: bytes, context: ssl.SSLContext, reader: _Reader) -> None:
        """Send the IDENTIFY answer in clear, then switch the socket to TLS, as nsqd does."""
        async with self._write_lock:
            await self.stream.send_all(b"".join([*self._queued(), answer]))
            tls = trio.SSLStream(self.stream, context, server_side=True)
            with trio.fail_after(5):  # nsqd's UpgradeTLS deadline
                await tls.do_handshake()
            self.stream = tls  # type: ignore[assignment]
            reader._stream = tls  # type: ignore[assignment]
            self.tls = True
            await tls.send_all(frame(FRAME_RESPONSE, b"OK"))

    async def _heartbeat_loop(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._heartbeats()

    async def _heartbeats(self) -> None:
        while True:
            interval = self.heartbeat_s
            if interval <= 0:
                await self._reconfigured.wait()
                self._reconfigured = trio.Event()
                continue
            with trio.move_on_after(interval) as tick:
                await self._reconfigured.wait()  # IDENTIFY restarts the ticker
            if tick.cancelled_caught:
                self.heartbeats_sent += 1
                self.send(frame(FRAME_RESPONSE, b"_heartbeat_"))
            else:
                self._reconfigured = trio.Event()


class _Reader:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self) -> bool:
        data = await self._stream.receive_some(65536)
        if not data:
            return False
        self._buffer += data
        return True

    async def readline(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if not await self._fill():
                return None

    async def readexactly(self, n: int) -> bytes | None:
        while len(self._buffer) < n:
            if not await self._fill():
                return None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class NsqTestPeer:
    """The peer. `port = await nursery.start(peer.serve)`; `peer.address` is host:port.

    Defaults are nsqd's. Timing settings are in seconds.
    """

    def __init__(
        self,
        *,
        msg_timeout_s: float = 60.0,
        max_msg_timeout_s: float = 900.0,
        heartbeat_interval_s: float = 30.0,
        max_heartbeat_interval_s: float = 60.0,
        max_rdy_count: int = 2500,
        max_req_timeout_s: float = 3600.0,
        max_msg_size: int = 1024 * 1024,
        max_body_size: int = 5 * 1024 * 1024,
        output_buffer_timeout_ms: int = 250,
        min_output_buffer_timeout_ms: int = 25,
        max_output_buffer_timeout_ms: int = 30_000,
        max_output_buffer_size: int = 64 * 1024,
        tls_context: ssl.SSLContext | None = None,
        tls_required: bool = False,
        auth: dict[str, AuthGrant] | None = None,
        version: str = "1.3.0-testpeer",
    ) -> None:
        self.msg_timeout_s = msg_timeout_s
        self.max_msg_timeout_s = max_msg_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_heartbeat_interval_s = max_heartbeat_interval_s
        self.max_rdy_count = max_rdy_count
        self.max_req_timeout_s = max_req_timeout_s
        self.max_msg_size = max_msg_size
        self.max_body_size = max_body_size
        self.output_buffer_timeout_ms = output_buffer_timeout_ms
        self.min_output_buffer_timeout_ms = min_output_buffer_timeout_ms
        self.max_output_buffer_timeout_ms = max_output_buffer_timeout_ms
        self.max_output_buffer_size = max_output_buffer_size
        if tls_required and tls_context is None:
            raise ValueError("tls_required needs a tls_context (nsqd: --tls-cert/--tls-key)")
        self.tls_context = tls_context
        self.tls_required = tls_required
        # Secret → grant: the peer's stand-in for nsqd's --auth-http-address server.
        self.auth = auth
        self.auth_available = True  # False: the auth server is unreachable
        self.auth_secrets_seen: list[str] = []
        self._thawed = trio.Event()
        self._thawed.set()
        self.version = version
        self.port = 0
        self.topics: dict[str, PeerTopic] = {}
        self.clients: list[PeerClient] = []
        self.connections = 0
        self.published = 0
        self.bad_magic = 0
        self.errors_sent: list[str] = []
        self._ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timers_changed = trio.Event()
        self._changed = trio.Event()
        self._publish_faults: deque[tuple[str, str]] = deque()
        self._lose_answers: deque[bool] = deque()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- running ------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (port 0: any), report the port, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timer_loop)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    # --- inspection and fault injection ------------------------------------------------

    def channel(self, topic: str, channel: str) -> PeerChannel:
        """The channel (created, like nsqd's, on first use)."""
        peer_topic = self._topic(topic)
        existing = peer_topic.channels.get(channel)
        if existing is not None:
            return existing
        created = peer_topic.channels[channel] = PeerChannel(channel, topic, self)
        while peer_topic.pending:
            created.queue.append(peer_topic.pending.popleft())
        created.pump()
        return created

    def put(self, topic: str, body: bytes) -> bytes:
        """Publish `body` as if some other client had; returns the message id."""
        return self._publish(topic, [body])[0]

    def fail_publishes(self, code: str = "E_PUB_FAILED", *, count: int = 1) -> None:
        """Refuse the next `count` PUB/MPUB with a fatal `code` (nothing is stored)."""
        for _ in range(count):
            self._publish_faults.append((code, "injected by the test peer"))

    def lose_publish_answers(self, *, count: int = 1, store: bool = False) -> None:
        """Close the connection on the next `count` PUB/MPUB instead of answering.

        With `store` the messages are kept first (the OK is lost, not the publish).
        """
        for _ in range(count):
            self._lose_answers.append(store)

    @property
    def freeze(self) -> bool:
        """True: like nsqd under SIGSTOP, read nothing, send nothing (sockets stay open)."""
        return not self._thawed.is_set()

    @freeze.setter
    def freeze(self, frozen: bool) -> None:
        if frozen and self._thawed.is_set():
            self._thawed = trio.Event()
        elif not frozen:
            self._thawed.set()

    def drop_clients(self, predicate: Callable[[PeerClient], bool] | None = None) -> int:
        """Abort the matching connections (all by default); returns how many."""
        dropped = [c for c in self.clients if not c.closed and (predicate is None or predicate(c))]
        for client in dropped:
            client.abort()
        return len(dropped)

    def subscribers(self, topic: str, channel: str) -> list[PeerClient]:
        found = self.topics.get(topic)
        if found is None or channel not in found.channels:
            return []
        return [c for c in found.channels[channel].clients if not c.closed]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; re-checked after every state change."""
        while not predicate():
            await self._changed.wait()

    # --- internals ------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _topic(self, name: str) -> PeerTopic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = PeerTopic(name)
        return topic

    def _publish(self, topic_name: str, bodies: list[bytes]) -> list[bytes]:
        topic = self._topic(topic_name)
        ids = []
        for body in bodies:
            message_id = f"{next(self._ids):016x}".encode()
            ids.append(message_id)
            stamp = time.time_ns()
            self.published += 1
            if not topic.channels:
                topic.pending.append(PeerMessage(message_id, body, stamp))
            for channel in topic.channels.values():  # every channel gets a copy
                channel.queue.append(PeerMessage(message_id, body, stamp))
        for channel in topic.channels.values():
            channel.pump()
        self._notify()
        return ids

    def _schedule(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), action))
        self._timers_changed.set()

    async def _timer_loop(self) -> None:
        while True:
            now = trio.current_time()
            while self._timers and self._timers[0][0] <= now:
                _, _, action = heapq.heappop(self._timers)
                action()
            self._timers_changed = trio.Event()
            if self._timers:
                with trio.move_on_at(self._timers[0][0]):
                    await self._timers_changed.wait()
            else:
                await self._timers_changed.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        reader = _Reader(stream)
        try:
            magic = await reader.readexactly(4)
            if magic != MAGIC:
                self.bad_magic += 1
                # nsqd answers an unknown protocol magic with E_BAD_PROTOCOL and closes.
                await stream.send_all(frame(FRAME_ERROR, b"E_BAD_PROTOCOL"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            magic = None
        if magic != MAGIC:
            await trio.aclose_forcefully(stream)
            return
        client = PeerClient(self, stream, next(self._numbers))
        self.clients.append(client)
        self._notify()
        try:
            with client._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client._write_loop)
                    heartbeats = trio.CancelScope()
                    nursery.start_soon(client._heartbeat_loop, heartbeats)
                    await self._command_loop(client, reader)
                    # Hang up, but let queued frames (an error's, say) out first: the
                    # writer ends once the closed outbox is empty.
                    client.closed = True
                    heartbeats.cancel()
                    client._outbox_send.close()
                    nursery.cancel_scope.deadline = trio.current_time() + 5
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away mid-write or mid-read
        finally:
            client.closed = True
            self.clients.remove(client)
            if client.channel is not None:
                client.channel.clients.remove(client)
                # In-flight messages stay in flight until msg_timeout, as in nsqd.
            await trio.aclose_forcefully(stream)
            self._notify()

    async def _command_loop(self, client: PeerClient, reader: _Reader) -> None:
        while True:
            # nsqd's read deadline: two heartbeat intervals of silence and it hangs up.
            # nsqd starts its heartbeat ticker a moment before it sets the deadline, so
            # the second heartbeat goes out before the hang-up; the millisecond keeps
            # that order under a MockClock, where both would fall on the same instant.
            hb = client.heartbeat_s
            deadline = 2 * hb + 0.001 if hb > 0 else float("inf")
            await self._thawed.wait()
            with trio.move_on_after(deadline):
                line = await reader.readline()
                if line is None:
                    return
                if line.endswith(b"\r"):
                    line = line[:-1]
                params = line.split(b" ")
                client.commands.append(params[0])
                try:
                    answer = await self._execute(client, reader, params)
                except ClientError as error:
                    self.errors_sent.append(error.code)
                    client.send(frame(FRAME_ERROR, error.frame_data))
                    self._notify()
                    if error.fatal:
                        return
                    continue
                except _Disconnect:
                    return
                if answer is not None:
                    client.send(frame(FRAME_RESPONSE, answer))
                self._notify()
                continue
            return  # read deadline passed

    async def _read_body(
        self, reader: _Reader, *, code: str, verb: str, noun: str, limit: int
    ) -> bytes:
        """A size-prefixed body, checked the way nsqd checks it."""
        size_bytes = await reader.readexactly(4)
        if size_bytes is None:
            raise _Disconnect
        (size,) = _INT32.unpack(size_bytes)
        if size <= 0:
            label = "message body" if noun == "message" else "body"
            raise ClientError(code, f"{verb} invalid {label} size {size}")
        if size > limit:
            raise ClientError(code, f"{verb} {noun} too big {size} > {limit}")
        body = await reader.readexactly(size)
        if body is None:
            raise _Disconnect
        return body

    async def _execute(
        self, client: PeerClient, reader: _Reader, params: list[bytes]
    ) -> bytes | None:
        command = params[0]
        if command == b"IDENTIFY":
            return await self._identify(client, reader)
        if self.tls_required and not client.tls:
            name = command.decode(errors="replace")
            raise ClientError("E_INVALID", f"cannot {name} in current state (TLS required)")
        if command == b"AUTH":
            return await self._auth(client, reader, params)
        if command == b"SUB":
            return self._sub(client, params)
        if command == b"RDY":
            self._rdy(client, params)
            return None
        if command in (b"FIN", b"REQ", b"TOUCH"):
            self._settle(client, command.decode(), params)
            return None
        if command == b"CLS":
            if client.state != "subscribed":
                raise ClientError("E_INVALID", "cannot CLS in current state")
            client.ready_count = 0
            client.state = "closing"
            return b"CLOSE_WAIT"
        if command == b"NOP":
            client.nops += 1
            return None
        if command in (b"PUB", b"MPUB"):
            return await self._pub(client, reader, command.decode(), params)
        raise ClientError("E_INVALID", f"invalid command {command.decode(errors='replace')}")

    async def _identify(self, client: PeerClient, reader: _Reader) -> bytes | None:
        if client.state != "init":
            raise ClientError("E_INVALID", "cannot IDENTIFY in current state")
        body = await self._read_body(
            reader, code="E_BAD_BODY", verb="IDENTIFY", noun="body", limit=self.max_body_size
        )
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            raise ClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from None
        heartbeat = int(data.get("heartbeat_interval", 0))
        max_heartbeat = int(self.max_heartbeat_interval_s * 1000)
        if heartbeat == -1:
            client.heartbeat_s = 0
        elif heartbeat == 0:
            pass
        elif 1000 <= heartbeat <= max_heartbeat:
            client.heartbeat_s = heartbeat / 1000
        else:
            raise ClientError("E_BAD_BODY", f"IDENTIFY heartbeat interval ({heartbeat}) is invalid")
        self._output_buffer(client, data)
        sample_rate = int(data.get("sample_rate", 0))
        if not 0 <= sample_rate <= 99:
            raise ClientError("E_BAD_BODY", f"IDENTIFY sample rate ({sample_rate}) is invalid")
        msg_timeout = int(data.get("msg_timeout", 0))
        if msg_timeout != 0:
            if not 1000 <= msg_timeout <= int(self.max_msg_timeout_s * 1000):
                raise ClientError("E_BAD_BODY", f"IDENTIFY msg timeout ({msg_timeout}) is invalid")
            client.msg_timeout_s = msg_timeout / 1000
        client.identify = data
        client.client_id = str(data.get("client_id", ""))
        client.hostname = str(data.get("hostname", ""))
        client.user_agent = str(data.get("user_agent", ""))
        client._reconfigured.set()
        if not data.get("feature_negotiation"):
            return b"OK"
        tls = self.tls_context is not None and bool(data.get("tls_v1"))
        answer = json.dumps(
            {
                "max_rdy_count": self.max_rdy_count,
                "version": self.version,
                "max_msg_timeout": int(self.max_msg_timeout_s * 1000),
                "msg_timeout": int(client.msg_timeout_s * 1000),
                "tls_v1": tls,
                "deflate": False,
                "deflate_level": 6,
                "max_deflate_level": 6,
                "snappy": False,
                "sample_rate": sample_rate,
                "auth_required": self.auth is not None,
                "output_buffer_size": client.output_buffer_size,
                "output_buffer_timeout": client.output_buffer_timeout_ms,
            }
        ).encode()
        if not tls:
            return answer
        assert self.tls_context is not None
        try:
            await client.upgrade_tls(frame(FRAME_RESPONSE, answer), self.tls_context, reader)
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            raise ClientError("E_IDENTIFY_FAILED", f"IDENTIFY failed {exc!r}") from exc
        return None

    def _output_buffer(self, client: PeerClient, data: dict[str, object]) -> None:
        """nsqd's SetOutputBuffer: -1 disables, 0 keeps the default, else in range."""
        timeout = int(data.get("output_buffer_timeout", 0))  # type: ignore[call-overload]
        if timeout == -1:
            client.output_buffer_timeout_ms = 0
        elif timeout != 0:
            if (
                not self.min_output_buffer_timeout_ms
                <= timeout
                <= (self.max_output_buffer_timeout_ms)
            ):
                raise ClientError(
                    "E_BAD_BODY", f"IDENTIFY output buffer timeout ({timeout}) is invalid"
                )
            client.output_buffer_timeout_ms = timeout
        size = int(data.get("output_buffer_size", 0))  # type: ignore[call-overload]
        if size == -1:
            client.output_buffer_size, client.output_buffer_timeout_ms = 1, 0
        elif size != 0:
            if not 64 <= size <= self.max_output_buffer_size:
                raise ClientError("E_BAD_BODY", f"IDENTIFY output buffer size ({size}) is invalid")
            client.output_buffer_size = size

    async def _auth(self, client: PeerClient, reader: _Reader, params: list[bytes]) -> bytes:
        if client.state != "init":
            raise ClientError("E_INVALID", "cannot AUTH in current state")
        if len(params) != 1:
            raise ClientError("E_INVALID", "AUTH invalid number of parameters")
        body = await self._read_body(
            reader, code="E_BAD_BODY", verb="AUTH", noun="body", limit=self.max_body_size
        )
        if client.grant is not None:
            raise ClientError("E_INVALID", "AUTH already set")
        if self.auth is None:
            raise ClientError("E_AUTH_DISABLED", "AUTH disabled")
        secret = body.decode(errors="replace")
        self.auth_secrets_seen.append(secret)
        grant = self.auth.get(secret) if self.auth_available else None
        if grant is None:
            # nsqd hides the auth server's reason (refused secret, server down).
            raise ClientError("E_AUTH_FAILED", "AUTH failed")
        if not grant.authorizations:
            raise ClientError("E_UNAUTHORIZED", "AUTH no authorizations found")
        client.grant = grant
        return json.dumps(
            {
                "identity": grant.identity,
                "identity_url": grant.identity_url,
                "permission_count": len(grant.authorizations),
            }
        ).encode()

    def _check_auth(self, client: PeerClient, command: str, topic: str, channel: str) -> None:
        """nsqd's CheckAuth (Go's %q quoting of the names)."""
        if self.auth is None:
            return
        if client.grant is None:
            raise ClientError("E_AUTH_FIRST", f"AUTH required before {command}")
        if not client.grant.is_allowed(topic, channel):
            raise ClientError(
                "E_UNAUTHORIZED",
                f"AUTH failed for {command} on {json.dumps(topic)} {json.dumps(channel)}",
            )

    def _sub(self, client: PeerClient, params: list[bytes]) -> bytes:
        if client.state != "init":
            raise ClientError("E_INVALID", "cannot SUB in current state")
        if client.heartbeat_s <= 0:
            raise ClientError("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise ClientError("E_INVALID", "SUB insufficient number of parameters")
        topic, channel = params[1].decode(errors="replace"), params[2].decode(errors="replace")
        if not valid_name(topic):
            raise ClientError("E_BAD_TOPIC", f'SUB topic name "{topic}" is not valid')
        if not valid_name(channel):
            raise ClientError("E_BAD_CHANNEL", f'SUB channel name "{channel}" is not valid')
        self._check_auth(client, "SUB", topic, channel)
        peer_channel = self.channel(topic, channel)
        peer_channel.clients.append(client)
        client.channel = peer_channel
        client.state = "subscribed"
        return b"OK"

    def _rdy(self, client: PeerClient, params: list[bytes]) -> None:
        if client.state == "closing":
            return  # nsqd ignores RDY after CLS
        if client.state != "subscribed":
            raise ClientError("E_INVALID", "cannot RDY in current state")
        count = 1
        if len(params) > 1:
            if not params[1].isdigit():
                raise ClientError(
                    "E_INVALID", f"RDY could not parse count {params[1].decode(errors='replace')}"
                )
            count = int(params[1])
        if not 0 <= count <= self.max_rdy_count:
            raise ClientError("E_INVALID", f"RDY count {count} out of range 0-{self.max_rdy_count}")
        client.ready_count = count
        client.channel_changed()

    def _settle(self, client: PeerClient, verb: str, params: list[bytes]) -> None:
        if client.state not in ("subscribed", "closing"):
            raise ClientError("E_INVALID", f"cannot {verb} in current state")
        if len(params) < (3 if verb == "REQ" else 2):
            raise ClientError("E_INVALID", f"{verb} insufficient number of params")
        message_id = params[1]
        if len(message_id) != 16:
            raise ClientError("E_INVALID", "Invalid Message ID")
        delay_ms = 0
        if verb == "REQ":
            text = params[2]
            if not text.lstrip(b"-").isdigit():
                raise ClientError(
                    "E_INVALID", f"REQ could not parse timeout {text.decode(errors='replace')}"
                )
            delay_ms = int(text)
            max_ms = int(self.max_req_timeout_s * 1000)
            if not 0 <= delay_ms <= max_ms:
                raise ClientError("E_INVALID", f"REQ timeout {delay_ms} out of range 0-{max_ms}")
        assert client.channel is not None
        channel = client.channel
        entry = channel.take(client, message_id, verb)
        now = trio.current_time()
        if verb == "TOUCH":
            entry.generation += 1
            entry.deadline = min(
                now + client.msg_timeout_s, entry.delivered_at + self.max_msg_timeout_s
            )
            self._schedule(entry.deadline, channel._timeout_action(entry))
            return
        del channel.in_flight[message_id]
        client.in_flight -= 1
        if verb == "FIN":
            channel.finished += 1
            channel.finished_ids.append(message_id)
        else:
            channel.requeued += 1
            if delay_ms == 0:
                channel.queue.append(entry.message)
            else:
                channel.deferred += 1

                def undefer(message: PeerMessage = entry.message) -> None:
                    channel.deferred -= 1
                    channel.put(message)

                self._schedule(now + delay_ms / 1000, undefer)
        channel.pump()

    async def _pub(
        self, client: PeerClient, reader: _Reader, verb: str, params: list[bytes]
    ) -> bytes:
        if len(params) < 2:
            raise ClientError("E_INVALID", f"{verb} insufficient number of parameters")
        topic = params[1].decode(errors="replace")
        if not valid_name(topic):
            raise ClientError("E_BAD_TOPIC", f'{verb} topic name "{topic}" is not valid')
        if verb == "PUB":
            body = await self._read_body(
                reader, code="E_BAD_MESSAGE", verb="PUB", noun="message", limit=self.max_msg_size
            )
            self._check_auth(client, "PUB", topic, "")  # nsqd: after reading the body
            bodies = [body]
        else:
            self._check_auth(client, "MPUB", topic, "")  # nsqd: before reading the body
            body = await self._read_body(
                reader, code="E_BAD_BODY", verb="MPUB", noun="body", limit=self.max_body_size
            )
            bodies = self._split_mpub(body)
        if self._publish_faults:
            code, description = self._publish_faults.popleft()
            raise ClientError(code, f"{verb} failed {description}")
        if self._lose_answers:
            if self._lose_answers.popleft():
                self._publish(topic, bodies)
            raise _Disconnect
        self._publish(topic, bodies)
        return b"OK"

    def _split_mpub(self, body: bytes) -> list[bytes]:
        if len(body) < 4:
            raise ClientError("E_BAD_BODY", "MPUB failed to read message count")
        (count,) = _INT32.unpack_from(body)
        if count <= 0:
            raise ClientError("E_BAD_BODY", f"MPUB invalid message count {count}")
        offset, bodies = 4, []
        for i in range(count):
            if offset + 4 > len(body):
                raise ClientError("E_BAD_MESSAGE", f"MPUB failed to read message({i}) body size")
            (size,) = _INT32.unpack_from(body, offset)
            offset += 4
            if size <= 0:
                raise ClientError("E_BAD_MESSAGE", f"MPUB invalid message({i}) body size {size}")
            if size > self.max_msg_size:
                raise ClientError(
                    "E_BAD_MESSAGE", f"MPUB message too big {size} > {self.max_msg_size}"
                )
            if offset + size > len(body):
                raise ClientError("E_BAD_MESSAGE", "MPUB failed to read message body")
            bodies.append(body[offset : offset + size])
            offset += size
        return bodies


class _Disconnect(Exception):
    """Hang up without answering (client went away, or an injected fault)."""
