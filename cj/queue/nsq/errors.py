"""The NSQ client's errors, all under `cj.queue.base.QueueError`.

Socket and HTTP exceptions are translated where the I/O happens (`connection`,
`lookupd`), once, into these.
"""

from __future__ import annotations

from cj.queue.base import QueueError, QueueUnavailable


class NsqConfigError(QueueError, ValueError):
    """A topic, channel, address or setting that NSQ would refuse; names what is wrong."""


class NsqError(QueueError):
    """nsqd answered with an error frame (`E_INVALID`, `E_BAD_TOPIC`, …).

    `code` is the error code as nsqd sent it, `description` the rest of the frame.
    """

    def __init__(self, code: str, description: str, *, address: str | None = None) -> None:
        where = f" from {address}" if address else ""
        super().__init__(f"nsqd{where} answered {code}: {description}".rstrip(": "))
        self.code = code
        self.description = description
        self.address = address


class NsqAuthError(NsqError):
    """nsqd (its auth server) refused our AUTH secret or a topic/channel to it.

    Retrying with the same secret cannot help; the message names what was refused.
    """


class NsqConnectionLost(QueueUnavailable):
    """The connection to nsqd closed or failed; reconnecting may help."""


class NsqProtocolError(NsqConnectionLost):
    """nsqd (or something pretending to be it) sent bytes that are not NSQ V2 frames.

    The connection cannot be trusted after that, so it is treated as lost.
    """
