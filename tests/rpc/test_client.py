"""Client-side behaviour that needs no particular server logic, and the access helpers."""

from __future__ import annotations

import socket

import pytest
import trio

from cj.config import Role
from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, RpcError, RpcUnavailable, current_principal, open_channel
from cj.rpc.access import NO_POLICY, required_role, requires
from cj.rpc.client import parse_address

from .conftest import AGENT_TOKEN, method, running_server
from .servicer import JournalServicer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_refused_is_unavailable() -> None:
    port = _free_port()  # bound then released: nothing listens there
    with trio.fail_after(10), pytest.raises(RpcUnavailable, match="cannot connect") as caught:
        async with open_channel(f"127.0.0.1:{port}"):
            pass
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:7", ("::1", 7)), ("api:1", ("api", 1))],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "host", ":50051", "host:", "host:0", "host:65536", "h:x"])
def test_parse_address_rejects_bad_input(address: str) -> None:
    with pytest.raises(ValueError, match="not host:port"):
        parse_address(address)


async def test_bad_timeout_and_method_are_errors_before_sending() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, open_channel(srv.address, token=AGENT_TOKEN) as ch:
            with pytest.raises(ValueError, match="timeout_s must be > 0"):
                await ch.unary_unary(
                    method("AddCall"), pb.AddCallRequest(), pb.AddCallResponse, timeout_s=0
                )
            with pytest.raises(ValueError, match=r"is not '/package\.Service/Method'"):
                await ch.unary_unary("AddCall", pb.AddCallRequest(), pb.AddCallResponse)


async def test_channel_default_timeout_applies() -> None:
    with trio.fail_after(10):
        async with (
            running_server() as srv,
            open_channel(srv.address, token=AGENT_TOKEN, default_timeout_s=0.2) as ch,
        ):
            with pytest.raises(RpcError) as caught:
                await CallJournalClient(ch).add_call(pb.Call(uuid="hang"))
    assert caught.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert "0.2 s" in caught.value.message


async def test_call_outliving_its_channel_ends_with_unavailable() -> None:
    with trio.fail_after(10):
        async with running_server() as srv, trio.open_nursery() as nursery:
            failures: list[RpcError] = []
            async with open_channel(srv.address, token=AGENT_TOKEN) as ch:

                async def orphan() -> None:
                    try:
                        await CallJournalClient(ch).add_call(pb.Call(uuid="hang"), timeout_s=9)
                    except RpcUnavailable as error:
                        failures.append(error)

                nursery.start_soon(orphan)
                await srv.servicer.entered.wait()
            # Leaving the block closed the connection under the running call.
    assert "channel was closed" in failures[0].message


def test_requires_marks_the_method_and_keeps_its_identity() -> None:
    assert required_role(JournalServicer.AddCall) is Role.AGENT
    assert required_role(JournalServicer().GetCall) is Role.READER  # bound methods too
    assert JournalServicer.AddCall.__name__ == "AddCall"
    assert required_role(lambda message: message) is NO_POLICY
    with pytest.raises(ValueError):
        requires("nobody")  # type: ignore[arg-type]


def test_current_principal_outside_an_rpc_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside an RPC"):
        current_principal()
