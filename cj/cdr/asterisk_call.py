"""Legs of one Asterisk call to one `Call` (docs/asterisk.md, "One call, many lines").

The linkedid rule: the lines sharing a linkedid (files without one: a uniqueid) are one
call, whose uuid is uuid5(source, linkedid), so reading a line twice changes nothing.
Legs are ordered by start time, then `sequence`, then file order:

- started_at = the earliest start; ended_at = the latest end;
- answered = some leg's disposition is ANSWERED; the *answering leg* is the answered leg
  with the most billsec (a Local/ half or a ring group's fork has 0; the bridged leg
  has the talk time) and gives answered_at, billsec and destination_extension;
- duration_s = the leg's duration for one leg, else the longest leg's duration or
  latest end − earliest start, whichever is more;
- the disposition is the strongest of all legs (ANSWERED > BUSY > NO ANSWER >
  CONGESTION > FAILED, Asterisk's own precedence) and gives hangup_cause;
- caller = the first leg's clid number (else src), caller_name its clid name;
  destination = the first leg's dst that holds digits (else its dst: `s`);
- caller_extension / destination_extension: the peer of a local channel
  (`SIP/1001-0000000a` → 1001, `PJSIP/dan-0000001f` → dan);
- every leg is kept in raw["legs"].

Direction (DESIGN §10): inbound when the first channel is a trunk or a leg's dcontext
is an inbound context; else outbound when a leg's dstchannel, or a Dial target in its
lastdata, is a trunk, or a local caller dialled a number that is not local; else
internal when the caller is local and so is the callee, or the "callee" is the PBX
itself (an IVR, voicemail, a feature code: a dst such as `s`, `*97`); else unknown.

Recording and privacy: the userfield convention `rec=<file>;tag=private` (keys are
configurable), else the file of a MixMonitor or Record application in lastdata, kept
as the path written (the agent maps it below its recordings directory);
MixMonitor's `r(<file>)`/`t(<file>)` become `recording_legs` (caller, callee); else,
with `recordings_by_uniqueid` (the default), the lookup `uniqueid:<uniqueid>` of the
first leg (the caller's channel, where FreePBX runs MixMonitor): a call with no file
found has no recording.
"""

from __future__ import annotations

import posixpath
import re
import uuid as uuid_module
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cj.cdr import fields
from cj.cdr.asterisk import AsteriskLeg
from cj.cdr.errors import CdrFieldError
from cj.cdr.options import CdrOptions
from cj.model import Call, Direction
from cj.phone import PhoneNumber

LOOKUP_PREFIX = "uniqueid:"  # cj_agent.recordings.LOOKUP_PREFIX (the agent's contract)
NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_URL, "https://calljournal.invalid/asterisk")
MAX_LEGS_KEPT = 200  # raw["legs"]; raw must stay under 1 MiB

DISPOSITIONS: dict[str, tuple[int, str]] = {
    # disposition: (precedence, hangup cause in the Q.850 names FreeSWITCH uses)
    "ANSWERED": (5, "NORMAL_CLEARING"),
    "BUSY": (4, "USER_BUSY"),
    "NO ANSWER": (3, "NO_ANSWER"),
    "CONGESTION": (2, "NORMAL_CIRCUIT_CONGESTION"),
    "FAILED": (1, "NORMAL_TEMPORARY_FAILURE"),
}
_CHANNEL = re.compile(r"(?P<tech>[A-Za-z0-9_]+)/(?P<peer>.+?)(?:-[0-9a-fA-F]{1,8}(?:;[12])?)?")
_CLID = re.compile(r'\s*(?:"(?P<quoted>.*)"|(?P<bare>[^<]*?))\s*<(?P<number>[^<>]*)>\s*')
_PUBLIC_NUMBER = re.compile(r"\+?[0-9]{3,}")
# In MixMonitor's options (its second argument), `r(file)` and `t(file)`.
_UNIQUEID_LOOKUP = re.compile(r"[A-Za-z0-9._-]{1,128}")  # what a lookup may name
_MIXMONITOR_LEG = re.compile(r"([rt])\(([^()]*)\)")


def call_uuid(source: str, key: str) -> uuid_module.UUID:
    """The deterministic uuid of the call `key` (linkedid/uniqueid) from `source`."""
    return uuid_module.uuid5(NAMESPACE, f"{source}\x00{key}")


@dataclass(frozen=True)
class _Leg:
    leg: AsteriskLeg
    index: int
    start: datetime
    answer: datetime | None
    end: datetime | None
    duration: int
    billsec: int
    disposition: str

    def get(self, name: str) -> str:
        return self.leg.get(name).strip()


def call_from_legs(
    legs: Sequence[AsteriskLeg], options: CdrOptions, *, format_name: str = "asterisk"
) -> Call:
    """The one call these legs (sharing a key) make; CdrFieldError naming the leg's field."""
    if not legs:
        raise CdrFieldError("legs", "a call needs at least one CDR line")
    read = sorted(
        (_read_leg(leg, index, options, multi=len(legs) > 1) for index, leg in enumerate(legs)),
        key=lambda leg: (leg.start, _sequence(leg), leg.index),
    )
    first = read[0]
    started_at = first.start
    ends = [leg.end for leg in read if leg.end is not None]
    ended_at = max(ends) if ends else None
    answered = [leg for leg in read if leg.disposition == "ANSWERED"]
    answering = (
        max(answered, key=lambda leg: (leg.billsec, leg.end or leg.start)) if answered else None
    )
    answered_at = None
    billsec = 0
    if answering is not None:
        answered_at = answering.answer or answering.start
        billsec = answering.billsec
    if ended_at is not None and answered_at is not None and ended_at < answered_at:
        ended_at = answered_at
    if len(read) == 1:
        duration = first.duration
    else:
        duration = max(leg.duration for leg in read)
        if ended_at is not None:
            duration = max(duration, int((ended_at - started_at).total_seconds()))
    duration = max(duration, billsec)
    strongest = max(read, key=lambda leg: DISPOSITIONS.get(leg.disposition, (0, ""))[0])
    hangup_cause = DISPOSITIONS.get(strongest.disposition, (0, strongest.disposition))[1]

    local = options.local
    caller_name, caller_number = split_clid(first.get("clid"))
    caller_number = caller_number or first.get("src")
    if caller_name == caller_number:
        caller_name = ""
    destination = next((leg.get("dst") for leg in read if _has_digits(leg.get("dst"))), "")
    destination = destination or first.get("dst")
    caller_extension = _local_peer(first.get("channel"), first, options)
    callee_leg = answering or first
    destination_extension = _local_peer(
        callee_leg.get("dstchannel"), callee_leg, options, callee=True
    )
    if not destination_extension and answering is None and local.is_extension(destination):
        destination_extension = destination
    direction = _direction(read, caller_extension, caller_number, destination, options)
    recording_name, recording_legs, private = _recording(read, answering, options)
    kept = [leg.leg.raw for leg in read[:MAX_LEGS_KEPT]]
    raw: dict[str, Any] = {"format": format_name, "linkedid": legs[0].key, "legs": kept}
    if len(read) > MAX_LEGS_KEPT:
        raw["legs_not_kept"] = len(read) - MAX_LEGS_KEPT
    return fields.build_call(
        {"started_at": "start", "answered_at": "answer", "ended_at": "end"},
        uuid=call_uuid(options.source, legs[0].key),
        source=options.source,
        caller=_phone(caller_number, "clid"),
        caller_name=caller_name[:256],
        caller_extension=caller_extension,
        destination=_phone(destination, "dst"),
        destination_extension=destination_extension,
        direction=direction,
        started_at=started_at,
        answered_at=answered_at,
        ended_at=ended_at,
        duration_s=duration,
        billsec=billsec,
        hangup_cause=hangup_cause,
        private=private,
        recording_name=recording_name,
        recording_legs=recording_legs,
        raw=raw,
    )


def check_leg(leg: AsteriskLeg, options: CdrOptions) -> AsteriskLeg:
    """`leg` if its times and counts can be read, else CdrFieldError naming the field:
    a bad line is refused alone, not with the call it belongs to."""
    _read_leg(leg, 0, options, multi=False)
    return leg


def split_clid(clid: str) -> tuple[str, str]:
    """(name, number) of a callerid `"Name" <1001>`; `1001` alone is a number."""
    match = _CLID.fullmatch(clid)
    if match is None:
        text = clid.strip().strip('"')
        return ("", text) if _has_digits(text) or not text else (text, "")
    name = match.group("quoted") if match.group("quoted") is not None else match.group("bare")
    return name.replace('""', '"').strip(), match.group("number").strip()


def channel_peer(channel: str) -> tuple[str, str]:
    """(technology, peer) of a channel name: `SIP/1001-0000000a` → (SIP, 1001)."""
    match = _CHANNEL.fullmatch(channel.strip())
    if match is None:
        return "", ""
    return match.group("tech"), match.group("peer")


def _read_leg(leg: AsteriskLeg, index: int, options: CdrOptions, *, multi: bool) -> _Leg:
    zone = options.zone
    prefix = f"legs[{index}]." if multi else ""
    start = fields.local_stamp(leg.get("start"), prefix + "start", zone)
    if start is None:
        raise CdrFieldError(prefix + "start", "is missing: no start time")
    answer = fields.local_stamp(leg.get("answer"), prefix + "answer", zone)
    end = fields.local_stamp(leg.get("end"), prefix + "end", zone)
    if answer is not None and answer < start:
        answer = start  # a clock step between two stamps of one line
    if end is not None and end < start:
        end = start
    duration = fields.count(leg.get("duration"), prefix + "duration") or 0
    billsec = fields.count(leg.get("billsec"), prefix + "billsec") or 0
    disposition = leg.get("disposition").strip().upper()
    return _Leg(leg, index, start, answer, end, max(duration, billsec), billsec, disposition)


def _sequence(leg: _Leg) -> int:
    value = leg.get("sequence")
    return int(value) if value.isdigit() else 0


def _has_digits(value: str) -> bool:
    return any(ch.isdigit() for ch in value)


def _phone(value: str, field: str) -> PhoneNumber:
    return fields.phone(value[:256], field)


def _is_trunk(channel: str, options: CdrOptions) -> bool:
    return bool(channel) and options.asterisk.trunk.search(channel) is not None


def _local_peer(channel: str, leg: _Leg, options: CdrOptions, *, callee: bool = False) -> str:
    """The extension or login behind a channel, when the channel is a local phone."""
    tech, peer = channel_peer(channel)
    if not tech or tech.lower() == "local" or _is_trunk(channel, options):
        return ""
    if any(ch in peer for ch in "@:/") or len(peer) > 64:
        return ""
    if options.local.is_extension(peer):
        return peer
    if callee:
        # A login (`PJSIP/client1`) the PBX routed a local number to.
        dst = leg.get("dst")
        return peer if peer == dst or options.local.is_local(dst) else ""
    _, clid_number = split_clid(leg.get("clid"))
    return peer if peer in (leg.get("src"), clid_number) else ""


def _direction(
    legs: Sequence[_Leg],
    caller_extension: str,
    caller_number: str,
    destination: str,
    options: CdrOptions,
) -> Direction:
    first = legs[0]
    inbound = options.asterisk.inbound
    if _is_trunk(first.get("channel"), options) or any(
        inbound.search(leg.get("dcontext")) for leg in legs
    ):
        return Direction.INBOUND
    local = options.local
    caller_local = bool(caller_extension) or local.is_local(caller_number)
    for leg in legs:
        if _is_trunk(leg.get("dstchannel"), options):
            return Direction.OUTBOUND
        if leg.get("lastapp").lower() == "dial":
            targets = leg.get("lastdata").split(",", 1)[0].split("&")
            if any(_is_trunk(target, options) for target in targets):
                return Direction.OUTBOUND
    public = _PUBLIC_NUMBER.fullmatch(destination) is not None
    if caller_local and public and not local.is_local(destination):
        return Direction.OUTBOUND
    if caller_local and (not public or local.is_local(destination) or _callee_local(legs, options)):
        # A local callee, or the PBX itself (an IVR, voicemail, a feature code: `s`, *97).
        return Direction.INTERNAL
    return Direction.UNKNOWN


def _callee_local(legs: Sequence[_Leg], options: CdrOptions) -> bool:
    return any(_local_peer(leg.get("dstchannel"), leg, options, callee=True) for leg in legs)


def _recording(
    legs: Sequence[_Leg], answering: _Leg | None, options: CdrOptions
) -> tuple[str | None, tuple[str, str] | None, bool]:
    settings = options.asterisk
    ordered = ([answering] if answering is not None else []) + list(legs)
    private = False
    name: str | None = None
    for leg in ordered:
        values = parse_userfield(leg.get("userfield"))
        tag = values.get(settings.userfield_privacy_key, "").lower()
        if tag in ("private", "true", "yes", "1", "on"):
            private = True
        if name is None and values.get(settings.userfield_recording_key):
            name = fields.recording_path(values[settings.userfield_recording_key], "userfield")
    if name is not None:
        return name, None, private
    for leg in ordered:
        app = leg.get("lastapp").lower()
        if app not in ("mixmonitor", "record"):
            continue
        data = leg.get("lastdata")
        target = data.split(",", 1)[0].strip()
        if app == "record" and ":" in target and "." not in posixpath.basename(target):
            target = target.replace(":", ".")  # Record(name:format), the old syntax
        if "%" in target:  # Record()'s %d counter: the real name is unknown
            continue
        found = fields.recording_path(target, "lastdata") if target else None
        mix_options = data.split(",", 2)[1] if "," in data else ""
        split = dict(_MIXMONITOR_LEG.findall(mix_options)) if app == "mixmonitor" else {}
        pair: tuple[str, str] | None = None
        if split.get("r") and split.get("t"):
            rx = fields.recording_path(split["r"], "lastdata")
            tx = fields.recording_path(split["t"], "lastdata")
            if rx and tx:
                # r() is what the channel (the caller) sent, t() what it was sent.
                pair = (rx, tx)
                found = found or rx
        if found is not None:
            return found, pair, private
    uniqueid = legs[0].get("uniqueid") if legs else ""
    if settings.recordings_by_uniqueid and _UNIQUEID_LOOKUP.fullmatch(uniqueid):
        # FreePBX/IssabelPBX name no file in the CDR; MixMonitor runs on the caller's
        # channel, whose uniqueid ends the file name (cj_agent/recordings.py).
        return f"{LOOKUP_PREFIX}{uniqueid}", None, private
    return None, None, private


def parse_userfield(value: str) -> dict[str, str]:
    """`rec=x.wav;tag=private` → {"rec": "x.wav", "tag": "private"} (keys lowercased)."""
    result: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, item = part.partition("=")
        if sep:
            result[key.strip().lower()] = item.strip()
    return result
