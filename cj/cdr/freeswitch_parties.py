"""Who called whom, and which way: FreeSWITCH numbers, extensions and direction (DESIGN §10).

FreeSWITCH marks every channel that came in to the switch `inbound`, a phone's A-leg
included, so the channel's direction is not the call's. This module reads the call as a
telecom engineer does, from evidence in the document, and says which field decided each
value (`Decision.path`, `Decision.reason`: `cj cdr show --explain`).

Caller number, the number presented to the other party, first usable source wins:
`origination_caller_id_number` (set on legs placed by `originate`, dialers,
click-to-call), `effective_caller_id_number` (set by the dialplan or the user directory),
on an originated leg the profile's `ani`, then the originating caller profile's
`caller_id_number` and the older fallbacks. A value without a single digit (a SIP login
such as `dan`) is no number: the next source is tried, and only when none holds a digit
is the login kept as the caller.

Caller extension, the extension or SIP login behind a local caller: `sip_auth_username`,
`user_name` (set when the PBX authenticated the phone), the caller profile's `username`
when it looks like a login (the local extension pattern, or not a phone number:
letters), else the caller number when it is a local extension. Empty when the caller is
outside (an inbound call).

Destination extension, the local user who was called: `dialed_user`, `dialed_extension`,
the B-leg (originatee) profile's `destination_number` when it is a login, else the
destination when it is a local extension (a leading `*` of a feature code dropped). Empty
on outbound calls.

Direction, first rule that applies:
1. FusionPBX's `call_direction` (inbound / outbound / local = internal);
2. a leg placed through a gateway: channel `outbound` with `sip_gateway_name` → outbound;
3. arrived from outside: channel `inbound` on the `public` context or with
   `sip_gateway_name` (the gateway it came from) → inbound;
4. bridged or originated through `sofia/gateway/…` (`app_log`, the dialplan, `last_arg`,
   the B-leg's channel name) → outbound;
5. a local caller (authenticated: `sip_authorized`, `sip_auth_username`, `user_name`,
   `user_context`; a login in the profile's `username`; or a local number) dialling a
   number that is not local → outbound;
6. both ends local → internal;
7. an outside caller dialling a local number → inbound;
8. else the channel's direction (`variables.direction`, `channel_data.direction`).
What is local is `CdrOptions.local` (`cj.cdr.locality`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cj.cdr import fields
from cj.cdr.locality import LocalNumbers
from cj.model import Direction
from cj.phone import PhoneNumber

CALL_DIRECTIONS: Mapping[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "local": Direction.INTERNAL,
}
CHANNEL_DIRECTIONS: Mapping[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
}
GATEWAY = "sofia/gateway/"
# Applications whose argument is a dial string.
_DIALLING_APPS = frozenset({"bridge", "originate", "transfer"})
_TRUE = frozenset({"true", "yes", "1", "on"})


class Document(Protocol):
    """What the FreeSWITCH reader offers: decoded values with their paths."""

    @property
    def local(self) -> LocalNumbers: ...

    def var(self, name: str) -> str | None: ...

    def profile_value(self, key: str) -> tuple[str | None, str]: ...

    def text_at(self, value: object, path: str) -> str | None: ...

    def applications(self) -> Iterator[tuple[str, str | None, str]]: ...

    def originatees(self) -> Iterator[tuple[Mapping[str, Any], str]]: ...

    def channel_direction(self) -> tuple[str | None, str]: ...

    def has_originator(self) -> bool: ...


@dataclass(frozen=True)
class Decision:
    """Where a value came from (`path`, a field of the document) and why it won."""

    path: str
    reason: str = ""

    def __str__(self) -> str:
        if self.path and self.reason:
            return f"{self.path}: {self.reason}"
        return self.path or self.reason


@dataclass(frozen=True)
class Parties:
    caller: PhoneNumber
    caller_name: str
    destination: PhoneNumber
    caller_extension: str
    destination_extension: str
    direction: Direction
    decisions: Mapping[str, Decision]


def read_parties(doc: Document) -> Parties:
    """Caller, destination, their extensions and the direction of the call."""
    decisions: dict[str, Decision] = {}
    originated = _originated(doc)
    caller_raw, decisions["caller"], name_var = _caller(doc, originated)
    caller_name, decisions["caller_name"] = _caller_name(doc, name_var)
    destination_raw, decisions["destination"] = _destination(doc)
    login, login_decision = _caller_login(doc)
    direction, decisions["direction"] = _direction(
        doc,
        (caller_raw, decisions["caller"].path),
        (destination_raw, decisions["destination"].path),
        login_decision,
        originated,
    )

    caller_extension, decisions["caller_extension"] = "", Decision("", "the caller is outside")
    if direction is not Direction.INBOUND:
        if login:
            caller_extension, decisions["caller_extension"] = login, login_decision
        elif doc.local.is_extension(caller_raw):
            caller_extension = caller_raw
            decisions["caller_extension"] = Decision(
                decisions["caller"].path, "the caller number is a local extension"
            )
        else:
            decisions["caller_extension"] = Decision("", "no login or extension in the document")
    destination_extension = ""
    decisions["destination_extension"] = Decision("", "the destination is outside")
    if direction is not Direction.OUTBOUND:
        destination_extension, decisions["destination_extension"] = _callee_login(
            doc, destination_raw, decisions["destination"].path
        )
    return Parties(
        caller=fields.phone(caller_raw, decisions["caller"].path),
        caller_name=caller_name,
        destination=fields.phone(destination_raw, decisions["destination"].path),
        caller_extension=caller_extension,
        destination_extension=destination_extension,
        direction=direction,
        decisions=decisions,
    )


# --- numbers --------------------------------------------------------------------------


def _originated(doc: Document) -> bool:
    """A leg the switch placed itself (originate, a dialer), not the B-leg of a bridge."""
    word, _ = doc.channel_direction()
    return (word or "").lower() == "outbound" and not doc.has_originator()


def _caller(doc: Document, originated: bool) -> tuple[str, Decision, str | None]:
    """(number, decision, the variable naming the caller id name that goes with it).

    Sources are read lazily, so a malformed fallback nobody needs cannot fail the document.
    """
    candidates: list[tuple[Callable[[], str | None], Decision, str | None]] = [
        (
            lambda: doc.var("origination_caller_id_number"),
            Decision(
                "variables.origination_caller_id_number",
                "the caller id this leg was originated with",
            ),
            "origination_caller_id_name",
        ),
        (
            lambda: doc.var("effective_caller_id_number"),
            Decision(
                "variables.effective_caller_id_number", "the caller id the dialplan presented"
            ),
            "effective_caller_id_name",
        ),
    ]
    if originated:
        path = doc.profile_value("ani")[1]
        candidates.append(
            (
                lambda: doc.profile_value("ani")[0],
                Decision(path, "the ANI of an originated leg"),
                None,
            )
        )
    profile_path = doc.profile_value("caller_id_number")[1]
    candidates += [
        (lambda: doc.profile_value("caller_id_number")[0], Decision(profile_path), None),
        (lambda: doc.var("caller_id_number"), Decision("variables.caller_id_number"), None),
        (
            lambda: _caller_id(doc.var("caller_id"))[1] or None,
            Decision("variables.caller_id"),
            None,
        ),
        (lambda: doc.var("sip_from_user"), Decision("variables.sip_from_user"), None),
        (lambda: doc.var("ani"), Decision("variables.ani"), None),
    ]
    login: tuple[str, Decision, str | None] | None = None
    for read, decision, name_var in candidates:
        value = read()
        if not value:
            continue
        if any("0" <= ch <= "9" for ch in value):
            return value, decision, name_var
        if login is None:
            reason = "a login without digits, and no number anywhere"
            login = (value, Decision(decision.path, reason), None)
    if login is not None:
        return login
    return "", Decision(profile_path, "no caller number in the document"), None


def _caller_name(doc: Document, name_var: str | None) -> tuple[str, Decision]:
    if name_var is not None:
        value = doc.var(name_var)
        if value:
            return value, Decision(f"variables.{name_var}", "goes with the caller number")
    for key in (
        "profile:caller_id_name",
        "var:caller_id_name",
        "caller_id",
        "var:sip_from_display",
    ):
        kind, _, name = key.partition(":")
        if kind == "profile":
            value, path = doc.profile_value(name)
        elif kind == "var":
            value, path = doc.var(name), f"variables.{name}"
        else:
            value, path = _caller_id(doc.var("caller_id"))[0] or None, "variables.caller_id"
        if value:
            return value, Decision(path)
    return "", Decision("callflow.caller_profile.caller_id_name")


def _destination(doc: Document) -> tuple[str, Decision]:
    value, path = doc.profile_value("destination_number")
    if value:
        return value, Decision(path)
    first_path = path
    for name in ("destination_number", "sip_req_user", "sip_to_user"):
        value = doc.var(name)
        if value:
            return value, Decision(f"variables.{name}")
    return "", Decision(first_path, "no destination in the document")


_CALLER_ID = re.compile(r'\s*(?:"([^"]*)"|([^"<]*?))\s*<([^<>]*)>\s*')


def _caller_id(value: str | None) -> tuple[str, str]:
    """(name, number) of the `caller_id` variable, `"Name" <number>`."""
    match = _CALLER_ID.fullmatch(value) if value else None
    if match is None:
        return "", ""
    quoted, bare, number = match.groups()
    return (quoted if quoted is not None else bare).strip(), number.strip()


# --- extensions -----------------------------------------------------------------------


def _looks_like_login(local: LocalNumbers, value: str) -> bool:
    """A local extension by the pattern, or a SIP login that is no phone number."""
    return local.is_extension(value) or any(ch.isalpha() for ch in value)


def _caller_login(doc: Document) -> tuple[str, Decision]:
    """The local user behind the caller: ("", why not) when there is none."""
    for name in ("sip_auth_username", "user_name"):
        value = doc.var(name)
        if value:
            return value, Decision(f"variables.{name}", "the phone authenticated as this user")
    value, path = doc.profile_value("username")
    if value and _looks_like_login(doc.local, value) and not _from_outside(doc)[0]:
        return value, Decision(path, "the SIP user of the calling phone")
    return "", Decision("", "no authenticated user")


def _callee_login(doc: Document, destination: str, path: str) -> tuple[str, Decision]:
    for name in ("dialed_user", "dialed_extension"):
        value = doc.var(name)
        if value:
            return value, Decision(f"variables.{name}", "the local user the call was for")
    for profile, path in doc.originatees():
        value = doc.text_at(profile.get("destination_number"), f"{path}.destination_number")
        if value and _looks_like_login(doc.local, value) and value != destination:
            return value, Decision(f"{path}.destination_number", "the user the B-leg rang")
    callee = destination.lstrip("*#")
    if doc.local.is_extension(callee):
        return callee, Decision(path, "the destination is a local extension")
    return "", Decision("", "no local user in the document")


# --- direction ------------------------------------------------------------------------


def _from_outside(doc: Document) -> tuple[bool, Decision]:
    """Whether the channel came in from outside: the public context or a gateway."""
    word, _ = doc.channel_direction()
    if (word or "").lower() != "inbound":
        return False, Decision("")
    context, path = doc.profile_value("context")
    if context is None:
        context, path = doc.var("context"), "variables.context"
    if (context or "").lower() == "public":
        return True, Decision(path, "arrived on the public context")
    gateway = doc.var("sip_gateway_name")
    if gateway:
        return True, Decision("variables.sip_gateway_name", f"arrived from gateway {gateway}")
    return False, Decision("")


def _through_gateway(doc: Document) -> Decision | None:
    word, _ = doc.channel_direction()
    gateway = doc.var("sip_gateway_name")
    if (word or "").lower() == "outbound" and gateway:
        return Decision("variables.sip_gateway_name", f"placed through gateway {gateway}")
    for app, data, path in doc.applications():
        if app in _DIALLING_APPS and data and GATEWAY in data:
            return Decision(path, f"{app} through a gateway ({_excerpt(data)})")
    if doc.var("last_app") in _DIALLING_APPS and GATEWAY in (doc.var("last_arg") or ""):
        return Decision("variables.last_arg", "bridged through a gateway")
    for profile, path in doc.originatees():
        chan = doc.text_at(profile.get("chan_name"), f"{path}.chan_name") or ""
        if chan.startswith(GATEWAY):
            return Decision(f"{path}.chan_name", "the B-leg went out through a gateway")
    return None


def _direction(
    doc: Document,
    caller_at: tuple[str, str],
    destination_at: tuple[str, str],
    login: Decision,
    originated: bool,
) -> tuple[Direction, Decision]:
    (caller, caller_path), (destination, destination_path) = caller_at, destination_at
    local = doc.local
    word = doc.var("call_direction")
    if word and word.lower() in CALL_DIRECTIONS:
        return CALL_DIRECTIONS[word.lower()], Decision(
            "variables.call_direction", f"FusionPBX says {word}"
        )
    channel, channel_path = doc.channel_direction()
    if originated or (channel or "").lower() == "outbound":
        gateway = _through_gateway(doc)
        if gateway is not None:
            return Direction.OUTBOUND, gateway
    outside, why = _from_outside(doc)
    if outside:
        return Direction.INBOUND, why
    gateway = _through_gateway(doc)
    if gateway is not None:
        return Direction.OUTBOUND, gateway
    caller_local = _local_caller(doc, caller, caller_path, login)
    callee_local = local.is_local(destination) or local.is_extension(destination.lstrip("*#"))
    if caller_local is not None and not callee_local and destination:
        return Direction.OUTBOUND, Decision(
            caller_local.path, f"{caller_local.reason}, dialling {destination}, not local"
        )
    if caller_local is not None and callee_local:
        return Direction.INTERNAL, Decision(
            caller_local.path, f"{caller_local.reason}, dialling local {destination}"
        )
    if caller_local is None and callee_local and caller:
        return Direction.INBOUND, Decision(
            destination_path, f"{caller} is not local, {destination} is local"
        )
    found = CHANNEL_DIRECTIONS.get((channel or "").lower(), Direction.UNKNOWN)
    return found, Decision(channel_path, "the channel's direction: no other evidence")


def _local_caller(doc: Document, caller: str, caller_path: str, login: Decision) -> Decision | None:
    """Why the caller is local, or None."""
    if (doc.var("sip_authorized") or "").lower() in _TRUE:
        return Decision("variables.sip_authorized", "an authenticated local user")
    if login.path:
        return Decision(login.path, "a local user")
    if doc.var("user_context"):
        return Decision("variables.user_context", "a user of the directory")
    if doc.local.is_local(caller):
        return Decision(caller_path, f"{caller} is a local number")
    return None


def _excerpt(value: str) -> str:
    return value if len(value) <= 48 else value[:48] + "…"
