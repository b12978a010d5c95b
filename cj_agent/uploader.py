"""Talking to the server: one shared connection, retried with gRPC's backoff.

`ServerLink.call(what, op)` runs `op(journal)` on the current connection and returns
its answer. When the server cannot be reached or answers something that retrying
can fix, the connection is dropped and re-opened after gRPC's connection backoff
(1 s, ×1.6, ±20 %, at most 120 s; reset after any success) and the same `op` is tried
again, indefinitely: every operation is idempotent, so nothing is lost or duplicated.
Only answers that say *this input* is wrong (`PERMANENT`) reach the caller, which
quarantines the files.

Credentials (UNAUTHENTICATED, PERMISSION_DENIED) and server faults (INTERNAL …) are
not the files' fault: they are logged as errors and retried the same way, so fixing
the token or the server resumes the work without touching the spool.

One task (`run`, started in the agent's nursery) owns the connection; callers wait
while it is away. All callers share one backoff schedule, so N concurrent uploads do
not hammer a server that is down N times as hard.
"""

from __future__ import annotations

import collections
import hashlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import structlog
import trio

from cj.backoff import GrpcBackoff
from cj.errors import ErrorCode
from cj.rpc import CallJournalClient, Channel, RpcError, RpcUnavailable, open_channel
from cj.rpc.client import parse_address
from cj.rpc.tls import make_client_ssl_context

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The server says the request itself is wrong: retrying cannot help.
PERMANENT = frozenset(
    {
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.RESOURCE_EXHAUSTED,
        ErrorCode.OUT_OF_RANGE,
    }
)
# Not the input's fault but not transient either: an operator must act. Retried, loudly.
CONFIGURATION = frozenset({ErrorCode.UNAUTHENTICATED, ErrorCode.PERMISSION_DENIED})

HASH_BLOCK = 1024 * 1024
UPLOAD_CHUNK = 256 * 1024  # per UploadRecording message (the contract allows 1 MiB)
MIN_UPLOAD_RATE = 100_000  # bytes/s assumed when sizing an upload's deadline

Connect = Callable[[], AbstractAsyncContextManager[Channel]]


class Abandoned(Exception):
    """The agent is stopping: the operation was not done and will be redone next start."""


class ServerLink:
    """The agent's connection to cj-api; see the module documentation."""

    def __init__(
        self,
        connect: Connect,
        *,
        backoff: GrpcBackoff | None = None,
        address: str = "",
        concurrency: int = 4,
    ) -> None:
        self._connect = connect
        # Requests in flight at once, whatever kind (uploads, AddCall, CheckCalls).
        self._limiter = trio.CapacityLimiter(concurrency)
        self._backoff = backoff or GrpcBackoff()
        self.address = address
        self._channel: Channel | None = None
        self._healthy = False  # the current channel has not failed yet
        self._wanted = trio.Event()  # someone needs a connection
        self._broken = trio.Event()  # the current channel failed
        self._changed = trio.Event()  # channel up, or stopping
        self._stopped = False
        self.connected = False
        self.last_error: str | None = None
        self.attempts = 0  # connection attempts since start
        self.failures = 0  # failed attempts and failed operations since start
        # For /metrics: operations answered, and refused or failed ones by status code.
        self.succeeded: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[tuple[str, str]] = collections.Counter()
        self.last_success: float | None = None  # time.time() of the last answer

    @classmethod
    def for_config(
        cls,
        address: str,
        *,
        token: str | None,
        tls: bool,
        tls_ca_file: Path | None,
        request_timeout_s: float,
        concurrency: int = 4,
    ) -> ServerLink:
        """A link to `address` as the agent configuration describes it.

        ValueError names what is wrong with the address or the TLS CA file.
        """
        parse_address(address)  # refuse a malformed address now, not at the first call
        context: ssl.SSLContext | None = make_client_ssl_context(tls_ca_file) if tls else None
        connect = partial(
            open_channel,
            address,
            ssl_context=context,
            token=token,
            default_timeout_s=request_timeout_s,
            connect_timeout_s=min(10.0, request_timeout_s),
        )
        return cls(connect, address=address, concurrency=concurrency)

    # --- the owner task ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a connection open while someone needs one; reconnect with backoff."""
        task_status.started()
        while True:
            await self._wanted.wait()
            self.attempts += 1
            try:
                async with self._connect() as channel:
                    self._up(channel)
                    await self._broken.wait()
            except RpcUnavailable as exc:
                self._failed(exc)
            finally:
                self._channel = None
                self._healthy = False
                self.connected = False
            delay = self._backoff.next_delay()
            log.info("server_retry_scheduled", server=self.address, delay_s=round(delay, 3))
            await trio.sleep(delay)

    def _up(self, channel: Channel) -> None:
        self._channel = channel
        self._healthy = True
        self._broken = trio.Event()
        self.connected = True
        if self.last_error is not None:
            log.info("server_connected", server=self.address)
        self._notify()

    def _failed(self, exc: RpcError) -> None:
        self.failures += 1
        self.last_error = str(exc)
        if exc.code in CONFIGURATION:
            log.error("server_refused_credentials", server=self.address, error=str(exc))
        elif exc.retryable:
            log.warning("server_unavailable", server=self.address, error=str(exc))
        else:
            log.error("server_error_retrying", server=self.address, error=str(exc))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def stop(self) -> None:
        """The agent is stopping: callers still waiting for a connection get Abandoned."""
        self._stopped = True
        self._notify()

    # --- callers -------------------------------------------------------------------------

    async def call(self, what: str, op: Callable[[CallJournalClient], Awaitable[T]]) -> T:
        """`op` on the server, retried until it succeeds or fails permanently.

        At most `concurrency` operations run at once; the others wait their turn.

        Raises RpcError with a code in PERMANENT, or Abandoned once `stop()` was called
        and no connection is available.
        """
        while True:
            channel = await self._acquire()
            try:
                async with self._limiter:
                    result = await op(CallJournalClient(channel))
            except RpcError as exc:
                self.errors[(what, exc.code.value)] += 1
                if exc.code in PERMANENT:
                    raise
                if channel is self._channel and self._healthy:
                    self._healthy = False
                    self._failed(exc)
                    log.info("operation_will_be_retried", operation=what)
                    self._broken.set()
                continue
            self._backoff.reset()
            self.last_error = None
            self.succeeded[what] += 1
            self.last_success = time.time()
            return result

    async def _acquire(self) -> Channel:
        while True:
            channel = self._channel
            if channel is not None and self._healthy:
                if not channel.closed:
                    return channel
                self._healthy = False
                self._broken.set()
            if self._stopped:  # work that needs to wait for the server is not started
                raise Abandoned("the agent is stopping")
            self._wanted.set()
            await self._changed.wait()


@dataclass(frozen=True)
class FileDigest:
    """A file's size and SHA-256 as read, and the mtime it had (to tell later changes)."""

    size: int
    sha256: str
    mtime_ns: int


def hash_file(path: Path) -> FileDigest:
    """Size and SHA-256 of the file at `path`, in constant memory (run in a thread)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        before = file.seek(0, 2)
        file.seek(0)
        size = 0
        while block := file.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
        stat = path.stat()
    if size != before or stat.st_size != size:
        raise FileChangedError(f"{path.name} changed while it was read")
    return FileDigest(size=size, sha256=digest.hexdigest(), mtime_ns=stat.st_mtime_ns)


class FileChangedError(OSError):
    """A file changed while the agent read it (it is still being written)."""


async def read_chunks(path: Path, chunk_size: int = UPLOAD_CHUNK) -> AsyncIterator[bytes]:
    """The bytes of `path`, `chunk_size` at a time, read in a worker thread."""
    with path.open("rb") as file:
        while chunk := await trio.to_thread.run_sync(file.read, chunk_size):
            yield chunk


def upload_timeout(config_timeout_s: float, size: int) -> float:
    """An upload's deadline: the request timeout plus time for the bytes at a slow rate."""
    return config_timeout_s + size / MIN_UPLOAD_RATE
