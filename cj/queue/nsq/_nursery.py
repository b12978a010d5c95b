"""A nursery for the background tasks of an `open_*` async context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


async def _host(scope: trio.CancelScope, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()


@asynccontextmanager
async def background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose tasks run until the `async with` body has ended, however it ends.

    The tasks are shielded from a cancellation of the surrounding code: when the body
    is left by cancellation, the owner's cleanup (in a `finally` inside the body) can
    still use them — a consumer REQs its in-flight messages and sends CLS over its live
    connections — and they are cancelled only once the body is done. The cleanup must
    bound its own time.

    The body's own exception propagates as itself: a plain nursery would wrap it in an
    ExceptionGroup (strict exception groups), which callers of an `open_*` context
    manager should not have to unwrap.
    """
    body_error: BaseException | None = None
    shield = trio.CancelScope(shield=True)
    async with trio.open_nursery() as outer:
        tasks: trio.Nursery = await outer.start(_host, shield)
        try:
            yield tasks
        except BaseException as exc:  # re-raised below, after the nursery has closed
            body_error = exc
        finally:
            shield.cancel()
            outer.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
