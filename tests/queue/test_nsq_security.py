"""NSQ AUTH and TLS: the Trio client against the test peer's auth table and TLS upgrade."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
import trustme

from cj.queue.nsq import NsqConfigError, open_nsq_consumer, open_nsq_publisher
from cj.queue.nsq.errors import NsqAuthError
from cj.queue.nsq.handshake import tls_context
from tests.queue.nsq_peer import AuthGrant
from tests.queue.test_nsq_client import CHANNEL, TOPIC, config, job, start_peer, subscriber

SECRET = "encoder-secret-0123456789"
FULL = AuthGrant(
    identity="encoder@example",
    authorizations=((r"^cj-encode$", (r".*",), ("subscribe", "publish")),),
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A CA, nsqd's certificate for 127.0.0.1, a client certificate, a stranger's CA."""
    directory = tmp_path_factory.mktemp("nsq-pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "nsqd.test")
    client = ca.issue_cert("cj-encoder")
    paths: dict[str, Any] = {"ca_obj": ca, "server": server}
    for name, blob in (
        ("ca", ca.cert_pem),
        ("other_ca", trustme.CA().cert_pem),
        ("client_key", client.private_key_pem),
    ):
        paths[name] = directory / f"{name}.pem"
        blob.write_to_path(str(paths[name]))
    paths["client_cert"] = directory / "client_cert.pem"
    with paths["client_cert"].open("wb") as chain:
        for pem in client.cert_chain_pems:
            chain.write(pem.bytes())
    yield paths


def server_context(pki: dict[str, Any], *, client_certs: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki["server"].configure_cert(context)
    if client_certs:  # nsqd --tls-client-auth-policy=require-verify
        pki["ca_obj"].configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- AUTH ------------------------------------------------------------------------------


async def test_auth_with_the_secret_publishes_and_consumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, auth={SECRET: FULL})
            cfg = config(peer.address, nsq_auth_secret=SECRET)
            async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
                await publisher.publish(job(1))
                await publisher.publish_many([job(2), job(3)])
                for n in (1, 2, 3):
                    delivery = await consumer.receive()
                    assert delivery.job == job(n)
                    await delivery.ack()
                seen = subscriber(peer)
                assert seen.commands[:4] == [b"IDENTIFY", b"AUTH", b"SUB", b"RDY"]
                assert seen.grant == FULL
            nursery.cancel_scope.cancel()
    assert peer.auth_secrets_seen == [SECRET, SECRET]
    assert peer.errors_sent == []
    subscribed = [e for e in logs if e["event"] == "nsq_subscribed"]
    assert subscribed[0]["auth_identity"] == "encoder@example"
    authenticated = [
        (e["identity"], e["permission_count"]) for e in logs if e["event"] == "nsq_authenticated"
    ]
    assert authenticated == [("encoder@example", 1)] * 2  # the publisher's and the consumer's
    assert [e["setting"] for e in logs if e["event"] == "nsq_auth_without_tls"] == [
        "queue.nsq_tls"
    ] * 2


async def test_auth_required_without_a_secret_stops_naming_the_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, auth={SECRET: FULL})
            cfg = config(peer.address)
            async with open_nsq_consumer(cfg) as consumer:
                with pytest.raises(NsqConfigError, match=r"requires AUTH.*queue.nsq_auth_secret"):
                    await consumer.receive()
                await trio.sleep(60)  # no reconnect loop
            async with open_nsq_publisher(cfg) as publisher:
                with pytest.raises(NsqConfigError, match=r"queue.nsq_auth_secret"):
                    await publisher.publish(job(1))
            assert peer.connections == 2
            nursery.cancel_scope.cancel()


async def test_a_refused_secret_stops_with_e_auth_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, auth={SECRET: FULL, "no-rights": AuthGrant("x", ())})
            async with open_nsq_consumer(config(peer.address, nsq_auth_secret="wrong")) as c:
                with pytest.raises(NsqAuthError, match=r"E_AUTH_FAILED.*queue\.nsq_auth_secret"):
                    await c.receive()
            cfg = config(peer.address, nsq_auth_secret="no-rights")
            async with open_nsq_publisher(cfg) as publisher:
                with pytest.raises(NsqAuthError, match="AUTH no authorizations found") as err:
                    await publisher.publish(job(1))
            assert err.value.code == "E_UNAUTHORIZED"
            await trio.sleep(60)
            assert peer.errors_sent == ["E_AUTH_FAILED", "E_UNAUTHORIZED"]
            assert peer.published == 0
            nursery.cancel_scope.cancel()


async def test_refusals_name_the_topic_and_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The grant covers other topics and channels only; nsqd matches them as regexes.
    grant = AuthGrant(
        identity="reporting",
        authorizations=(
            (r"^cj-encode$", (r"^audit$",), ("subscribe",)),
            (r"^other$", (r".*",), ("publish",)),
        ),
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, auth={SECRET: grant})
            cfg = config(peer.address, nsq_auth_secret=SECRET)
            async with open_nsq_consumer(cfg) as consumer:
                with pytest.raises(NsqAuthError) as refused:
                    await consumer.receive()
            assert refused.value.code == "E_UNAUTHORIZED"
            assert str(refused.value).endswith(
                f'AUTH failed for SUB on "{TOPIC}" "{CHANNEL}" — the auth server grants '
                f"identity 'reporting' no subscribe permission on topic '{TOPIC}' "
                f"channel '{CHANNEL}'"
            )
            async with open_nsq_publisher(cfg) as publisher:
                with pytest.raises(NsqAuthError, match=f"no publish permission on topic '{TOPIC}'"):
                    await publisher.publish_many([job(1)])
            assert peer.errors_sent == ["E_UNAUTHORIZED", "E_UNAUTHORIZED"]
            nursery.cancel_scope.cancel()


async def test_auth_server_outage_after_start_is_retried_not_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, auth={SECRET: FULL})
            cfg = config(peer.address, nsq_auth_secret=SECRET)
            async with open_nsq_consumer(cfg) as consumer:
                await consumer.wait_subscribed()
                peer.auth_available = False
                peer.drop_clients()
                await peer.wait_until(lambda: peer.errors_sent.count("E_AUTH_FAILED") >= 2)
                peer.auth_available = True
                await consumer.wait_subscribed()
                peer.put(TOPIC, job(7).to_bytes())
                delivery = await consumer.receive()
                assert delivery.job == job(7)
                await delivery.ack()
            nursery.cancel_scope.cancel()


# --- TLS -------------------------------------------------------------------------------


async def test_tls_with_client_certificate_and_auth(pki: dict[str, Any]) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(
                nursery,
                tls_context=server_context(pki, client_certs=True),
                tls_required=True,
                auth={SECRET: FULL},
            )
            cfg = config(
                peer.address,
                nsq_tls=True,
                nsq_tls_ca_file=pki["ca"],
                nsq_tls_cert_file=pki["client_cert"],
                nsq_tls_key_file=pki["client_key"],
                nsq_auth_secret=SECRET,
            )
            async with open_nsq_publisher(cfg) as publisher, open_nsq_consumer(cfg) as consumer:
                await publisher.publish_many([job(n) for n in range(50)])
                for n in range(50):
                    delivery = await consumer.receive()
                    assert delivery.job == job(n)
                    await delivery.ack()
                seen = subscriber(peer)
                assert seen.tls
                assert seen.identify is not None and seen.identify["tls_v1"] is True
                assert seen.commands[:3] == [b"IDENTIFY", b"AUTH", b"SUB"]
                assert peer.auth_secrets_seen == [SECRET, SECRET]  # sent through TLS
                channel = peer.channel(TOPIC, CHANNEL)
                await peer.wait_until(lambda: channel.finished == 50)
            nursery.cancel_scope.cancel()
    assert peer.errors_sent == []


async def test_a_missing_client_certificate_is_a_config_error(pki: dict[str, Any]) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, tls_context=server_context(pki, client_certs=True))
            cfg = config(peer.address, nsq_tls=True, nsq_tls_ca_file=pki["ca"])
            async with open_nsq_publisher(cfg) as publisher:
                with pytest.raises(NsqConfigError, match=r"refused the TLS.*nsq_tls_cert_file"):
                    await publisher.publish(job(1))
            assert peer.connections == 1 and peer.published == 0
            nursery.cancel_scope.cancel()


async def test_tls_required_but_not_configured_names_the_key(pki: dict[str, Any]) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, tls_context=server_context(pki), tls_required=True)
            async with open_nsq_consumer(config(peer.address)) as consumer:
                with pytest.raises(NsqConfigError, match=r"requires TLS.*queue.nsq_tls = true"):
                    await consumer.receive()
            async with open_nsq_publisher(config(peer.address)) as publisher:
                with pytest.raises(NsqConfigError, match=r"cannot PUB in current state \(TLS"):
                    await publisher.publish(job(1))
            assert peer.errors_sent == ["E_INVALID", "E_INVALID"]
            nursery.cancel_scope.cancel()


async def test_tls_verification_is_on_by_default(pki: dict[str, Any]) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery, tls_context=server_context(pki))
            stranger = config(peer.address, nsq_tls=True, nsq_tls_ca_file=pki["other_ca"])
            async with open_nsq_publisher(stranger) as publisher:
                with pytest.raises(NsqConfigError, match=r"failed verification.*nsq_tls_ca_file"):
                    await publisher.publish(job(1))
            wrong_name = config(
                peer.address,
                nsq_tls=True,
                nsq_tls_ca_file=pki["ca"],
                nsq_tls_server_name="nsqd.elsewhere",
            )
            async with open_nsq_consumer(wrong_name) as consumer:
                with pytest.raises(NsqConfigError, match=r"nsq_tls_server_name"):
                    await consumer.receive()
            assert peer.published == 0
            nursery.cancel_scope.cancel()


async def test_tls_configured_against_an_nsqd_without_tls(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            peer = await start_peer(nursery)
            async with open_nsq_publisher(config(peer.address, nsq_tls=True)) as publisher:
                with pytest.raises(NsqConfigError, match="did not agree to TLS"):
                    await publisher.publish(job(1))
            nursery.cancel_scope.cancel()


def test_tls_and_auth_settings_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nsq_tls_cert_file and queue\.nsq_tls_key_file"):
        config("127.0.0.1:4150", nsq_tls=True, nsq_tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(ValueError, match=r"queue.nsq_tls_\* settings need queue.nsq_tls = true"):
        config("127.0.0.1:4150", nsq_tls_ca_file=tmp_path / "ca.pem")
    missing_ca = config("127.0.0.1:4150", nsq_tls=True, nsq_tls_ca_file=tmp_path / "no.pem")
    with pytest.raises(NsqConfigError, match=r"nsq_tls_ca_file .*cannot load"):
        tls_context(missing_ca)
    secret = config("127.0.0.1:4150", nsq_auth_secret=SECRET).nsq_auth_secret
    assert secret is not None and SECRET not in repr(secret)
