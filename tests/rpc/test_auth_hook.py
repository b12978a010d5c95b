"""`on_auth_failure`: every call refused for its credentials is reported, with the
method and the client's address, before the client gets its answer (for the audit of
refused downloads)."""

from __future__ import annotations

import pytest
import trio

from cj.errors import ErrorCode
from cj.rpc import AuthFailure, CallJournalClient, RpcError, open_channel

from .conftest import AGENT_TOKEN, running_server


async def test_refused_calls_are_reported_with_method_and_peer() -> None:
    seen: list[AuthFailure] = []
    with trio.fail_after(10):
        async with running_server(on_auth_failure=seen.append) as srv:
            for token, code in (
                (None, ErrorCode.UNAUTHENTICATED),
                ("not-a-token-at-all-0123456789", ErrorCode.UNAUTHENTICATED),
                (AGENT_TOKEN, ErrorCode.PERMISSION_DENIED),  # an agent may not read
            ):
                async with open_channel(srv.address, token=token) as channel:
                    with pytest.raises(RpcError) as error:
                        await CallJournalClient(channel).get_call("c-1", timeout_s=5)
                assert error.value.code is code
    assert [f.error.code for f in seen] == [
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.PERMISSION_DENIED,
    ]
    assert {f.method for f in seen} == {"/calljournal.v1.CallJournal/GetCall"}
    assert all(f.peer.startswith("127.0.0.1:") for f in seen)


async def test_a_failing_hook_does_not_change_the_answer() -> None:
    def broken(failure: AuthFailure) -> None:
        raise RuntimeError("audit database down")

    with trio.fail_after(10):
        async with (
            running_server(on_auth_failure=broken) as srv,
            open_channel(srv.address, token=None) as channel,
        ):
            with pytest.raises(RpcError) as error:
                await CallJournalClient(channel).get_call("c-1", timeout_s=5)
    assert error.value.code is ErrorCode.UNAUTHENTICATED
