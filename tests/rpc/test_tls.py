"""TLS: our server offers ALPN h2, so both grpcio and our client can call it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
import trio
import trustme

from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import (
    CallJournalClient,
    RpcUnavailable,
    make_client_ssl_context,
    make_server_ssl_context,
    open_channel,
)

from .conftest import AGENT_TOKEN, running_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A throwaway CA and a server certificate for 127.0.0.1, as PEM files."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
        "other_ca": directory / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    with paths["cert"].open("wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    trustme.CA().cert_pem.write_to_path(str(paths["other_ca"]))
    yield paths


def test_server_selects_h2_by_alpn(pki: dict[str, Path]) -> None:
    """An in-memory handshake: the server picks h2 among what a browser-like client offers."""
    client_context = make_client_ssl_context(pki["ca"])
    client_context.set_alpn_protocols(["http/1.1", "h2"])
    server_context = make_server_ssl_context(pki["cert"], pki["key"])
    wires = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(wires[0], wires[1], server_hostname="127.0.0.1")
    server = server_context.wrap_bio(wires[2], wires[3], server_side=True)
    for _ in range(10):  # shuttle bytes until both sides are done
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        wires[2].write(wires[1].read())
        wires[0].write(wires[3].read())
    assert server.selected_alpn_protocol() == "h2"
    assert client.selected_alpn_protocol() == "h2"


def test_bad_files_are_named_in_the_error(pki: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=r"missing\.pem"):
        make_server_ssl_context(missing, pki["key"])
    with pytest.raises(ValueError, match=r"server\.pem"):
        make_server_ssl_context(pki["cert"], pki["cert"])  # a certificate is not a key
    with pytest.raises(ValueError, match=r"missing\.pem"):
        make_client_ssl_context(missing)


async def test_our_client_over_tls(pki: dict[str, Path]) -> None:
    server_context = make_server_ssl_context(pki["cert"], pki["key"])
    with trio.fail_after(10):
        async with (
            running_server(ssl_context=server_context) as srv,
            open_channel(
                srv.address, ssl_context=make_client_ssl_context(pki["ca"]), token=AGENT_TOKEN
            ) as ch,
        ):
            reply = await CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5)
    assert reply.outcome == pb.UPSERT_OUTCOME_INSERTED


async def test_untrusted_server_is_unavailable_to_the_client(pki: dict[str, Path]) -> None:
    server_context = make_server_ssl_context(pki["cert"], pki["key"])
    with trio.fail_after(10):
        async with running_server(ssl_context=server_context) as srv:
            with pytest.raises(RpcUnavailable) as caught:
                async with open_channel(
                    srv.address, ssl_context=make_client_ssl_context(pki["other_ca"])
                ):
                    pass
    assert caught.value.code is ErrorCode.UNAVAILABLE
    assert "certificate" in caught.value.message.lower()


async def test_plaintext_client_cannot_talk_to_a_tls_server(pki: dict[str, Path]) -> None:
    server_context = make_server_ssl_context(pki["cert"], pki["key"])
    with trio.fail_after(10):
        async with running_server(ssl_context=server_context) as srv:
            async with open_channel(srv.address, token=AGENT_TOKEN) as ch:
                with pytest.raises(RpcUnavailable):
                    await CallJournalClient(ch).add_call(pb.Call(uuid="c-1"), timeout_s=5)
            # The server shrugged it off and still serves TLS clients.
            async with open_channel(
                srv.address, ssl_context=make_client_ssl_context(pki["ca"]), token=AGENT_TOKEN
            ) as ch:
                assert (
                    await CallJournalClient(ch).add_call(pb.Call(uuid="c-2"), timeout_s=5)
                ).outcome


async def test_grpcio_client_over_tls(
    pki: dict[str, Path], grpcio_stubs: tuple[ModuleType, ModuleType]
) -> None:
    pb2, pb2_grpc = grpcio_stubs
    server_context = make_server_ssl_context(pki["cert"], pki["key"])

    def call(port: int) -> object:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            stub = pb2_grpc.CallJournalStub(channel)
            return stub.AddCall(
                pb2.AddCallRequest(call=pb2.Call(uuid="c-1")),
                metadata=[("authorization", f"Bearer {AGENT_TOKEN}")],
                timeout=5,
            ).outcome

    with trio.fail_after(20):
        async with running_server(ssl_context=server_context) as srv:
            outcome = await trio.to_thread.run_sync(call, srv.port)
    assert outcome == pb2.UPSERT_OUTCOME_INSERTED
