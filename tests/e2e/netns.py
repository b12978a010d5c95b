"""Separate "hosts" for end-to-end tests: Linux network namespaces (`ip netns`).

Each host is a namespace with its own loopback and one veth link to the test's own
namespace: the daemon inside reaches the test's side at `gateway`, and is reached at
`address`. Only the network is separate (the filesystem is shared, so spools still
work). Needs root and `ip`; `separate_hosts` yields None where they are missing or
refused (a container without CAP_NET_ADMIN), and the test falls back to loopback.

    with separate_hosts(3) as hosts:
        argv = hosts[0].wrap([sys.executable, "-m", "cj_agent"]) if hosts else [...]
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str  # inside the namespace
    gateway: str  # the test's end of the link

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's namespace (`ip netns exec` keeps the pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def separate_hosts(count: int) -> Iterator[list[Host] | None]:
    """`count` namespaces linked to ours (None when unavailable); removed at the end."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    rng = random.Random()
    tag = f"{rng.randrange(16**4):04x}"
    # A random 10.x.y.0/24 block, split into /30 links: unlikely to meet another test's.
    block = f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}"
    made: list[str] = []
    hosts: list[Host] = []
    try:
        for n in range(count):
            namespace, outside, inside = f"cj{tag}h{n}", f"cj{tag}o{n}", f"cj{tag}i{n}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            gateway, address = f"{block}.{4 * n + 1}", f"{block}.{4 * n + 2}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("addr", "add", f"{gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            inner = ("netns", "exec", namespace, "ip")
            _ip(*inner, "addr", "add", f"{address}/30", "dev", inside)
            _ip(*inner, "link", "set", inside, "up")
            _ip(*inner, "link", "set", "lo", "up")
            hosts.append(Host(namespace, address, gateway))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        for namespace in made:
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("netns", "del", namespace)
        made = []
        hosts = []
    try:
        yield hosts or None
    finally:
        for namespace in made:  # deleting a namespace deletes its veth pair
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("netns", "del", namespace)
