"""systemd integration: `sd_notify` over `$NOTIFY_SOCKET`, and the watchdog.

The protocol (sd_notify(3)): datagrams of `KEY=VALUE` lines sent to the AF_UNIX
socket named by `$NOTIFY_SOCKET`; a leading `@` means the abstract namespace. With
`Type=notify` systemd waits for `READY=1`; `STOPPING=1` announces a shutdown;
`STATUS=…` is shown by `systemctl status`; with `WatchdogSec=` systemd sets
`$WATCHDOG_USEC` (and `$WATCHDOG_PID`) and restarts the service unless `WATCHDOG=1`
arrives within that time, so we send it at half of it.

Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op. A failure to send is
logged once and never stops the agent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import structlog
import trio

log = structlog.get_logger(__name__)


class Notifier:
    """Sends notifications to systemd; `Notifier.from_environment()` builds one."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._warned = False
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """From `$NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace."""
        value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        if not value.startswith(("/", "@")):
            log.warning("notify_socket_ignored", reason="neither a path nor @abstract")
            return cls(None)
        return cls("\0" + value[1:] if value.startswith("@") else value)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; True when it was sent."""
        if self._socket is None or self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            self._socket.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status(text: str | None) -> tuple[str, ...]:
    return () if text is None else (f"STATUS={text}",)


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings: half of `$WATCHDOG_USEC`, or None when the
    watchdog is off or meant for another process (`$WATCHDOG_PID`)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2


async def run_watchdog(
    notifier: Notifier,
    interval_s: float,
    status: Callable[[], str] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ping the watchdog (and refresh STATUS=) every `interval_s` until cancelled.

    The pings come from the event loop itself, so a loop that is blocked or
    deadlocked stops them and systemd restarts the agent.
    """
    task_status.started()
    while True:
        if status is None:
            notifier.watchdog()
        else:
            notifier.notify("WATCHDOG=1", f"STATUS={status()}")
        await trio.sleep(interval_s)
