"""Listening sockets that several cj-api worker processes share (SO_REUSEPORT).

Each worker binds its own listening socket to the same address with SO_REUSEPORT; the
kernel spreads new connections over the workers' sockets (and stops sending any to a
worker whose socket closed: a dead or draining worker). The supervisor binds the ports
first, with SO_REUSEPORT but without listening: that reserves them (another program
cannot take them meanwhile), turns port 0 into a real port the workers are told, and
finds a port in use before any worker starts. A bound socket that does not listen gets
no connections.

SO_REUSEPORT only shares a port between sockets of the same user: another user's
program cannot join the group, but a second cj-api of the same user on the same ports
would (the operator's to avoid, as with any two services on one port).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

import trio

__all__ = ["PortInUseError", "open_reuse_port_listeners", "reserve_ports"]

BACKLOG = 4096


class PortInUseError(OSError):
    """Another program (or a socket without SO_REUSEPORT) holds the port."""


def _addresses(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    seen: list[tuple[int, tuple[object, ...]]] = []
    for family, _type, _proto, _name, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, address) not in seen:
            seen.append((family, tuple(address)))
    if not seen:
        raise OSError(f"{host!r} has no IPv4 or IPv6 address to listen on")
    return seen


def _bind(family: int, address: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(exc.errno, f"{_show(address)} is in use") from None
        raise
    return sock


def _show(address: tuple[object, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def reserve_ports(host: str, ports: Sequence[int]) -> tuple[list[socket.socket], list[int]]:
    """Bind (without listening) every address of `host` on each of `ports`.

    Returns the sockets (keep them open while the workers run; close them after) and the
    ports, 0s replaced by the ones the kernel chose. Raises `PortInUseError` naming the
    address when one is taken.
    """
    reserved: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for port in ports:
            actual = port
            for family, address in _addresses(host, port):
                sock = _bind(family, (address[0], actual, *address[2:]))
                reserved.append(sock)
                actual = int(sock.getsockname()[1])
            chosen.append(actual)
    except BaseException:
        for sock in reserved:
            sock.close()
        raise
    return reserved, chosen


async def open_reuse_port_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """`trio.open_tcp_listeners(port, host=host)`, with SO_REUSEPORT on every socket."""
    listeners: list[trio.SocketListener] = []
    try:
        for family, address in _addresses(host, port):
            sock = _bind(family, address)
            sock.listen(BACKLOG)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners
