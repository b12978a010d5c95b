"""A nursery for the background tasks of an `open_*` async context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose tasks are cancelled when the `async with` body ends.

    The body's own exception propagates as itself: a plain nursery would wrap it in an
    ExceptionGroup (strict exception groups), which callers of an `open_*` context
    manager should not have to unwrap.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:  # re-raised below, after the nursery has closed
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
