"""nsqd discovery through nsqlookupd's HTTP `/lookup?topic=…`.

nsqlookupd 1.x answers `{"channels": […], "producers": […]}`; releases before 1.0
wrapped it as `{"status_code": 200, "status_txt": "OK", "data": {…}}` (unless asked
for `application/vnd.nsq; version=1.0`). Both shapes are read. A producer is reached
at `broadcast_address:tcp_port`. An unknown topic (404 / TOPIC_NOT_FOUND) means no
producers yet, which is an answer, not a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import httpx
import structlog
import trio

from cj.queue.base import QueueUnavailable
from cj.queue.nsq import wire

log = structlog.get_logger(__name__)

# Asks pre-1.0 nsqlookupd for the unwrapped shape; 1.x ignores it.
_ACCEPT: Final = "application/vnd.nsq; version=1.0"


class LookupdError(QueueUnavailable):
    """An nsqlookupd could not be asked or gave an unreadable answer."""


def lookup_url(lookupd: str) -> str:
    """The `/lookup` URL for a configured lookupd ("host:port" or an http(s) URL)."""
    text = lookupd.strip().rstrip("/")
    if text.startswith(("http://", "https://")):
        return f"{text}/lookup"
    wire.parse_address(text, setting="queue.lookupd_http_addresses")  # names a bad entry
    return f"http://{text}/lookup"


def parse_lookup_response(status: int, body: bytes) -> set[str]:
    """nsqd TCP addresses ("host:port") in a /lookup answer; LookupdError if unreadable."""
    try:
        doc: Any = json.loads(body) if body else None
    except ValueError:
        raise LookupdError(f"nsqlookupd answered {status} with non-JSON {body[:80]!r}") from None
    if _topic_not_found(doc):
        return set()
    if status != 200 or not isinstance(doc, dict):
        raise LookupdError(f"nsqlookupd answered {status}: {body[:120]!r}")
    if "status_code" in doc and "data" in doc:  # pre-1.0 envelope
        if doc["status_code"] != 200 or not isinstance(doc["data"], dict):
            raise LookupdError(f"nsqlookupd answered status_code {doc['status_code']!r}")
        doc = doc["data"]
    producers = doc.get("producers")
    if not isinstance(producers, list):
        raise LookupdError(f"nsqlookupd answer has no producers list: {body[:120]!r}")
    addresses: set[str] = set()
    for producer in producers:
        try:
            host = producer["broadcast_address"]
            port = int(producer["tcp_port"])
        except (KeyError, TypeError, ValueError):
            raise LookupdError(f"unreadable producer in nsqlookupd answer: {producer!r}") from None
        if not isinstance(host, str) or not host or not 0 < port < 65536:
            raise LookupdError(f"unreadable producer in nsqlookupd answer: {producer!r}")
        addresses.add(wire.format_address(host, port))
    return addresses


def _topic_not_found(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    return "TOPIC_NOT_FOUND" in (doc.get("message"), doc.get("status_txt"))


async def lookup(client: httpx.AsyncClient, lookupd: str, topic: str) -> set[str]:
    """Ask one nsqlookupd which nsqd instances have `topic`."""
    url = lookup_url(lookupd)
    try:
        response = await client.get(url, params={"topic": topic}, headers={"Accept": _ACCEPT})
    except httpx.HTTPError as exc:
        raise LookupdError(f"nsqlookupd {url} unreachable: {exc!r}") from exc
    return parse_lookup_response(response.status_code, response.content)


async def discover(
    client: httpx.AsyncClient, lookupds: Iterable[str], topic: str
) -> set[str] | None:
    """The union of every nsqlookupd's producers, or None if none of them answered.

    Asking all of them (concurrently) rather than one per poll means one lookupd being
    down neither hides producers nor makes them look vanished.
    """
    answers: list[set[str]] = []

    async def ask(lookupd: str) -> None:
        try:
            answers.append(await lookup(client, lookupd, topic))
        except LookupdError as exc:
            log.warning("nsqlookupd_failed", lookupd=lookupd, error=str(exc))

    async with trio.open_nursery() as nursery:
        for lookupd in lookupds:
            nursery.start_soon(ask, lookupd)
    if not answers:
        return None
    return set().union(*answers)


def check_lookupds(lookupds: Iterable[str]) -> None:
    """NsqConfigError naming the first unusable entry of queue.lookupd_http_addresses."""
    for lookupd in lookupds:
        lookup_url(lookupd)
