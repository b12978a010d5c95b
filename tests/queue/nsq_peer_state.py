"""The NSQ test peer's channels, topics and messages, and its frame/error helpers.

Split from `nsq_peer` (connections and commands); see there for what the peer is.
"""

from __future__ import annotations

import re
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from tests.queue.nsq_peer import NsqTestPeer, PeerClient

FRAME_RESPONSE = 0
FRAME_ERROR = 1
FRAME_MESSAGE = 2
MAGIC = b"  V2"

_NAME = re.compile(r"^[.a-zA-Z0-9_-]+(#ephemeral)?$")
_INT32 = struct.Struct(">l")
_MESSAGE_HEADER = struct.Struct(">qH")


def valid_name(name: str) -> bool:
    """Topic/channel name rule from the spec: [.a-zA-Z0-9_-], 1..64, optional #ephemeral."""
    return 0 < len(name) <= 64 and _NAME.match(name) is not None


def frame(frame_type: int, data: bytes) -> bytes:
    """[size][frame type][data], size counting the type and the data."""
    return _INT32.pack(len(data) + 4) + _INT32.pack(frame_type) + data


class ClientError(Exception):
    """An `E_*` answer. `fatal` ones close the connection after the error frame."""

    def __init__(self, code: str, description: str, *, fatal: bool = True) -> None:
        super().__init__(f"{code} {description}")
        self.code = code
        self.fatal = fatal

    @property
    def frame_data(self) -> bytes:
        return str(self).encode()


@dataclass(frozen=True)
class AuthGrant:
    """What nsqd's auth server answers for a secret: who it is and what it may do.

    `authorizations` are (topic regex, channel regexes, permissions) with permissions
    from {"subscribe", "publish"}, as in the auth server's JSON.
    """

    identity: str
    authorizations: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    identity_url: str = ""

    def is_allowed(self, topic: str, channel: str) -> bool:
        """nsqd's State.IsAllowed: any authorization allowing it (Go regexp: search)."""
        for topic_re, channels, permissions in self.authorizations:
            needed = "subscribe" if channel else "publish"
            if needed not in permissions or re.search(topic_re, topic) is None:
                continue
            if any(re.search(c, channel) is not None for c in channels):
                return True
        return False


@dataclass(eq=False)
class PeerMessage:
    id: bytes
    body: bytes
    timestamp_ns: int
    attempts: int = 0

    def encode(self) -> bytes:
        return _MESSAGE_HEADER.pack(self.timestamp_ns, self.attempts) + self.id + self.body


@dataclass(eq=False)
class InFlight:
    message: PeerMessage
    client: PeerClient
    delivered_at: float
    deadline: float
    generation: int = 0


@dataclass(eq=False)
class PeerChannel:
    name: str
    topic: str
    peer: NsqTestPeer
    queue: deque[PeerMessage] = field(default_factory=deque)
    in_flight: dict[bytes, InFlight] = field(default_factory=dict)
    clients: list[PeerClient] = field(default_factory=list)
    deferred: int = 0
    delivered: int = 0
    finished: int = 0
    requeued: int = 0
    timed_out: int = 0
    finished_ids: list[bytes] = field(default_factory=list)
    _turn: int = 0

    @property
    def depth(self) -> int:
        """Messages waiting to be delivered (deferred ones included)."""
        return len(self.queue) + self.deferred

    def put(self, message: PeerMessage) -> None:
        self.queue.append(message)
        self.pump()

    def pump(self) -> None:
        """Deliver queued messages to ready clients, round-robin, within their RDY."""
        while self.queue:
            client = self._next_ready()
            if client is None:
                break
            message = self.queue.popleft()
            message.attempts += 1
            now = trio.current_time()
            entry = InFlight(message, client, now, now + client.msg_timeout_s)
            self.in_flight[message.id] = entry
            client.in_flight += 1
            self.delivered += 1
            self.peer._schedule(entry.deadline, self._timeout_action(entry))
            client.send(frame(FRAME_MESSAGE, message.encode()))
        self.peer._notify()

    def _next_ready(self) -> PeerClient | None:
        for _ in range(len(self.clients)):
            client = self.clients[self._turn % len(self.clients)]
            self._turn += 1
            if client.ready_for_messages:
                return client
        return None

    def _timeout_action(self, entry: InFlight) -> Callable[[], None]:
        generation = entry.generation

        def expire() -> None:
            current = self.in_flight.get(entry.message.id)
            if current is not entry or entry.generation != generation:
                return  # settled or touched since
            del self.in_flight[entry.message.id]
            entry.client.in_flight -= 1
            self.timed_out += 1
            # "a message that is in-flight and times out behaves identically to an
            # explicit REQ" (with no delay).
            self.put(entry.message)
            entry.client.channel_changed()

        return expire

    def take(self, client: PeerClient, message_id: bytes, verb: str) -> InFlight:
        entry = self.in_flight.get(message_id)
        code = {"FIN": "E_FIN_FAILED", "REQ": "E_REQ_FAILED", "TOUCH": "E_TOUCH_FAILED"}[verb]
        if entry is None:
            raise ClientError(
                code, f"{verb} {message_id.decode()} failed ID not in flight", fatal=False
            )
        if entry.client is not client:
            raise ClientError(
                code,
                f"{verb} {message_id.decode()} failed client does not own message",
                fatal=False,
            )
        return entry


@dataclass(eq=False)
class PeerTopic:
    name: str
    channels: dict[str, PeerChannel] = field(default_factory=dict)
    # Published before any channel existed: nsqd keeps them for the first channel.
    pending: deque[PeerMessage] = field(default_factory=deque)
