"""sd_notify over a real AF_UNIX datagram socket, the watchdog, and the unit file."""

from __future__ import annotations

import configparser
import os
import socket
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import trio

from cj_agent.systemd import Notifier, run_watchdog, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_notifications_reach_the_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("watching 1 source")
    assert notifier.watchdog()
    assert notifier.status("3 calls\nuploaded")  # a newline would start a new field
    assert notifier.stopping()
    notifier.close()
    assert received(sock) == [
        "READY=1\nSTATUS=watching 1 source",
        "WATCHDOG=1",
        "STATUS=3 calls uploaded",
        "STOPPING=1",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"cj-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(100) == b"READY=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_a_vanished_socket_does_not_stop_the_agent(tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == expected


async def test_watchdog_pings_at_its_interval(
    receiver: tuple[socket.socket, str], autojump_clock: trio.testing.MockClock
) -> None:
    sock, path = receiver
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_watchdog, notifier, 30.0, lambda: "fine")
            await trio.sleep(95)  # virtual time: pings at 0, 30, 60 and 90 s
            nursery.cancel_scope.cancel()
    notifier.close()
    assert received(sock) == ["WATCHDOG=1\nSTATUS=fine"] * 4


def test_the_unit_file_is_shipped_and_hardened() -> None:
    text = resources.files("cj_agent").joinpath("systemd/cj-agent.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(text)
    assert set(unit.sections()) >= {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["WatchdogSec"] == "60"
    assert service["User"] == "cj-agent"
    assert service["ExecStart"].split()[0].endswith("cj-agent")
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    writable = service["ReadWritePaths"].split()
    assert "/var/spool/cj-agent" in writable and "/var/lib/cj-agent" in writable
    assert service["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
