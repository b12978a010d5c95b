"""Calls sent in batches: many CDRs ready at once travel in one AddCalls stream.

Every CDR task still awaits its own call (`await batcher.add(message)`): it returns
once the server stored the call, or raises RpcError when the server rejected that one
call (INVALID_ARGUMENT naming the field; the task quarantines its CDR), or Abandoned
when the agent stops first. Under a trickle a batch holds one call and costs what one
AddCall did; with a backlog (a server that was away, a busy PBX) hundreds travel
together, which is many times cheaper for the agent and above all for the server.

A failed stream is retried whole by the server link (with its backoff): AddCalls is
an idempotent upsert, so calls sent twice are stored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
import trio

from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from cj_agent.uploader import Abandoned, ServerLink

log = structlog.get_logger(__name__)

MAX_BATCH = 200  # calls per AddCalls stream (the server reports up to 1,000 rejections)


@dataclass(eq=False)
class _Waiter:
    message: pb.Call
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class CallBatcher:
    """Collects calls from concurrent tasks and sends them with AddCalls."""

    def __init__(self, link: ServerLink, *, max_batch: int = MAX_BATCH) -> None:
        self._link = link
        self._max_batch = max_batch
        self._queue: list[_Waiter] = []
        self._wakeup = trio.Event()
        self.batches = 0  # streams sent (for tests and statistics)

    async def add(self, message: pb.Call) -> None:
        """Store one call on the server (see the module documentation)."""
        waiter = _Waiter(message)
        self._queue.append(waiter)
        self._wakeup.set()
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what is queued, a batch at a time, until cancelled."""
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            # Let the tasks made ready by the same event add their calls first.
            await trio.lowlevel.checkpoint()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                await self._send(batch)

    async def _send(self, batch: list[_Waiter]) -> None:
        messages = [waiter.message for waiter in batch]
        try:
            reply = await self._link.call("AddCalls", lambda journal: journal.add_calls(messages))
        except (RpcError, Abandoned) as exc:
            # Permanent for the whole stream, or the agent is stopping: every caller
            # learns it (and quarantines, or leaves its CDR for the next start).
            for waiter in batch:
                waiter.error = exc
                waiter.done.set()
            return
        self.batches += 1
        rejected = {rejection.index: rejection for rejection in reply.rejections}
        for index, waiter in enumerate(batch):
            rejection = rejected.get(index)
            if rejection is not None:
                waiter.error = RpcError(
                    _rejection_code(rejection.code),
                    rejection.reason,
                    field=rejection.field or None,
                    method="AddCalls",
                )
            waiter.done.set()
        if len(batch) > 1:
            log.debug("calls_sent_in_batch", calls=len(batch), rejected=len(rejected))


def _rejection_code(name: str) -> ErrorCode:
    """A rejection's code (PERMISSION_DENIED: another source's call); servers before
    the code was sent only rejected invalid calls."""
    try:
        return ErrorCode(name)
    except ValueError:
        return ErrorCode.INVALID_ARGUMENT
