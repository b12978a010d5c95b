"""FreeSWITCH mod_json_cdr documents (`<uuid>.cdr.json`, `a_<uuid>.cdr.json`).

What FreeSWITCH writes (src/switch_ivr.c, `switch_ivr_generate_json_cdr`): `variables`
(every channel variable as a string, URL-encoded unless `encode-values` is false),
`app_log.applications` (what the channel ran, arguments expanded), and `callflow`, one
entry per caller profile, newest first, each with `profile_index` ("1" = the
originating profile), `caller_profile` and `times` (microseconds). Old builds repeat the
`callflow` key instead of writing an array; `decode_document` turns that into a list.

How each Call field is read, first usable source wins:

- Strings are URL-decoded with `unquote` (%XX only: `+` stays a plus, as in `+7 903…`).
- uuid: `variables.uuid`, then the originating profile's `uuid` (never `call_uuid`,
  which on a b-leg is the a-leg's uuid).
- caller / caller name / destination: the originating caller profile's
  `caller_id_number` / `caller_id_name` / `destination_number`; then the variables of
  the same names, the `caller_id` variable (`"Name" <number>`), `sip_from_user` /
  `sip_from_display`, `ani`; `sip_req_user`, `sip_to_user` for the destination.
- times: `<x>_epoch`, `<x>_uepoch` (0 = absent), the callflow `times`
  (`created_time` earliest, `answered_time` earliest, `hangup_time` latest: FreeSWITCH
  records answer and hangup on the profile current at that moment), and last the local
  `<x>_stamp` in the PBX zone.
- duration / billsec: `duration` / `billsec`; else computed from the times.
- direction: `variables.direction` (else `channel_data.direction`) is the channel's
  direction as the switch sees it: "inbound" (the call came in to the PBX) → inbound,
  "outbound" → outbound. When both the caller and the destination are 1-5 digit
  numbers (extensions), the call is internal whatever the channel direction.
- hangup: `hangup_cause`; `sip_hangup_disposition` (recv_bye, send_bye, recv_cancel,
  send_refuse …) → `hangup_side`; SIP code from `sip_term_status`, then
  `proto_specific_hangup_cause` (`sip:486`), then `sip_invite_failure_status`.
- recording: `CdrOptions.recording_variables` in order; `a+b` joins two variables as a
  path; `record_session` is the path argument of the last `record_session` in
  `app_log`, else in the callflow dialplan applications (`${var}` expanded from the
  variables; an unresolvable reference in the file name skips the candidate), else
  `last_arg` when
  `last_app` is `record_session`. The base name is kept.
- private: `CdrOptions.privacy_variable` equal to "private" (or true/yes/1/on).
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from cj.cdr import fields
from cj.cdr.document import json_kind
from cj.cdr.errors import CdrFieldError
from cj.cdr.options import RECORD_SESSION, CdrOptions
from cj.model import Call, Direction, ModelError, parse_uuid
from cj.phone import PhoneNumber

DIRECTIONS: Mapping[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
}
PRIVATE_VALUES = frozenset({"private", "true", "yes", "1", "on"})

# `${name}` is a channel variable; `$${name}` a global we cannot see.
_REFERENCE = re.compile(r"\$(\$?)\{([^{}]*)\}")
# Stands in for an unresolvable reference; decoded documents never contain NUL.
_UNRESOLVED = "\x00"
_CALLER_ID = re.compile(r'\s*(?:"([^"]*)"|([^"<]*?))\s*<([^<>]*)>\s*')
_SIP_CAUSE = re.compile(r"sip:([0-9]{1,3})")


@dataclass(frozen=True)
class _Profile:
    path: str  # where it is in the document: "callflow[1]" or "callflow"
    entry: Mapping[str, Any]
    caller: Mapping[str, Any]
    times: Mapping[str, Any]
    index: int | None


def parse_freeswitch(document: Mapping[str, Any], options: CdrOptions) -> Call:
    """The canonical call described by a FreeSWITCH mod_json_cdr document."""
    return _Reader(document, options).call()


class _Reader:
    def __init__(self, document: Mapping[str, Any], options: CdrOptions) -> None:
        self.document = document
        self.options = options
        self.variables = _object(document.get("variables"), "variables")
        # Chronological: the originating profile first.
        self.profiles = _profiles(document)
        self.origin = self.profiles[0] if self.profiles else None

    def call(self) -> Call:
        sources: dict[str, str] = {"source": "source"}
        call_uuid = self._uuid()
        caller, sources["caller"] = self._caller_number()
        destination, sources["destination"] = self._destination()
        caller_name, sources["caller_name"] = self._caller_name()

        started_at, sources["started_at"] = self._time("start", "created_time", latest=False)
        if started_at is None:
            raise CdrFieldError("variables.start_epoch", "is missing: no start time anywhere")
        answered_at, sources["answered_at"] = self._time("answer", "answered_time", latest=False)
        ended_at, sources["ended_at"] = self._time("end", "hangup_time", latest=True)

        sources["duration_s"] = "variables.duration"
        duration = fields.count(self.var("duration"), "variables.duration")
        if duration is None:
            duration = _seconds_between(started_at, ended_at)
        sources["billsec"] = "variables.billsec"
        billsec = fields.count(self.var("billsec"), "variables.billsec")
        if billsec is None:
            billsec = _seconds_between(answered_at, ended_at)

        sip_code, sources["sip_code"] = self._sip_code()
        recording, sources["recording_name"] = self._recording()
        sources["hangup_cause"] = "variables.hangup_cause"
        sources["hangup_side"] = "variables.sip_hangup_disposition"
        privacy = (self.var(self.options.privacy_variable) or "").lower()

        return fields.build_call(
            sources,
            uuid=call_uuid,
            source=self.options.source,
            caller=caller,
            caller_name=caller_name,
            destination=destination,
            direction=self._direction(caller, destination),
            started_at=started_at,
            answered_at=answered_at,
            ended_at=ended_at,
            duration_s=duration,
            billsec=billsec,
            hangup_cause=self.var("hangup_cause") or "",
            hangup_side=self.var("sip_hangup_disposition") or "",
            sip_code=sip_code,
            private=privacy in PRIVATE_VALUES,
            recording_name=recording,
            raw=self.document,
        )

    # --- raw access ----------------------------------------------------------------

    def var(self, name: str) -> str | None:
        """A channel variable, URL-decoded and stripped; None when absent or empty."""
        return _decoded(self.variables.get(name), f"variables.{name}")

    def profile_value(self, key: str) -> tuple[str | None, str]:
        """A field of the originating caller profile, URL-decoded, and its path."""
        if self.origin is None:
            return None, f"callflow.caller_profile.{key}"
        path = f"{self.origin.path}.caller_profile.{key}"
        return _decoded(self.origin.caller.get(key), path), path

    def first(self, *sources: str) -> tuple[str, str]:
        """The first non-empty value among `sources`, read lazily so that a malformed
        fallback nobody needs cannot fail the document; ("", first path) if all empty.

        A source is `profile:<key>` (originating caller profile), `var:<name>`, or
        `caller_id:name` / `caller_id:number` (the `"Name" <number>` variable).
        """
        first_path = ""
        for source in sources:
            kind, _, key = source.partition(":")
            if kind == "profile":
                value, path = self.profile_value(key)
            elif kind == "var":
                value, path = self.var(key), f"variables.{key}"
            else:
                name, number = self._caller_id()
                value, path = (name if key == "name" else number), "variables.caller_id"
            first_path = first_path or path
            if value:
                return value, path
        return "", first_path

    # --- fields ----------------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        value, path = self.first("var:uuid", "profile:uuid")
        if not value:
            raise CdrFieldError("variables.uuid", "is missing")
        try:
            return parse_uuid(value, path)
        except ModelError as exc:
            raise CdrFieldError(path, exc.reason) from None

    def _caller_id(self) -> tuple[str, str]:
        """(name, number) from the `caller_id` variable, `"Name" <number>`."""
        value = self.var("caller_id")
        match = _CALLER_ID.fullmatch(value) if value else None
        if match is None:
            return "", ""
        quoted, bare, number = match.groups()
        return (quoted if quoted is not None else bare).strip(), number.strip()

    def _caller_number(self) -> tuple[PhoneNumber, str]:
        value, path = self.first(
            "profile:caller_id_number",
            "var:caller_id_number",
            "caller_id:number",
            "var:sip_from_user",
            "var:ani",
        )
        return fields.phone(value, path), path

    def _caller_name(self) -> tuple[str, str]:
        return self.first(
            "profile:caller_id_name",
            "var:caller_id_name",
            "caller_id:name",
            "var:sip_from_display",
        )

    def _destination(self) -> tuple[PhoneNumber, str]:
        value, path = self.first(
            "profile:destination_number",
            "var:destination_number",
            "var:sip_req_user",
            "var:sip_to_user",
        )
        return fields.phone(value, path), path

    def _direction(self, caller: PhoneNumber, destination: PhoneNumber) -> Direction:
        if fields.looks_like_extension(caller) and fields.looks_like_extension(destination):
            return Direction.INTERNAL
        word = self.var("direction")
        if word is None:
            channel = _object(self.document.get("channel_data"), "channel_data")
            word = _decoded(channel.get("direction"), "channel_data.direction")
        return DIRECTIONS.get((word or "").lower(), Direction.UNKNOWN)

    def _time(self, prefix: str, times_key: str, *, latest: bool) -> tuple[datetime | None, str]:
        path = f"variables.{prefix}_epoch"
        found = fields.epoch_seconds(self.var(f"{prefix}_epoch"), path)
        if found is not None:
            return found, path
        path = f"variables.{prefix}_uepoch"
        found = fields.epoch_microseconds(self.var(f"{prefix}_uepoch"), path)
        if found is not None:
            return found, path
        candidates: list[tuple[datetime, str]] = []
        for profile in self.profiles:
            path = f"{profile.path}.times.{times_key}"
            found = fields.epoch_microseconds(profile.times.get(times_key), path)
            if found is not None:
                candidates.append((found, path))
        if candidates:
            return max(candidates) if latest else min(candidates)
        path = f"variables.{prefix}_stamp"
        return fields.local_stamp(self.var(f"{prefix}_stamp"), path, self.options.zone), path

    def _sip_code(self) -> tuple[int | None, str]:
        path = "variables.sip_term_status"
        code = fields.sip_status(self.var("sip_term_status"), path)
        if code is not None:
            return code, path
        path = "variables.proto_specific_hangup_cause"
        match = _SIP_CAUSE.fullmatch(self.var("proto_specific_hangup_cause") or "")
        if match is not None and int(match.group(1)):
            return int(match.group(1)), path
        path = "variables.sip_invite_failure_status"
        return fields.sip_status(self.var("sip_invite_failure_status"), path), path

    def _recording(self) -> tuple[str | None, str]:
        for candidate in self.options.recording_variables:
            if candidate == RECORD_SESSION:
                value, path = self._record_session_path()
            elif "+" in candidate:
                # `record_path+record_name`: a directory and a name, joined as a path.
                path = f"variables.{candidate}"
                parts = [self.var(name) for name in candidate.split("+")]
                present = [part.rstrip("/") for part in parts if part]
                value = "/".join(present) if len(present) == len(parts) else None
            else:
                path = f"variables.{candidate}"
                value = self.var(candidate)
            if value:
                name = fields.recording_file_name(value, path)
                if name is not None:
                    return name, path
        return None, "variables.record_name"

    def _record_session_path(self) -> tuple[str | None, str]:
        argument = _last_application(
            _object(self.document.get("app_log"), "app_log").get("applications"),
            "app_log.applications",
        )
        if argument is None:
            # Newest profile first: its last record_session is the last one run.
            for profile in reversed(self.profiles):
                extension = _object(profile.entry.get("extension"), f"{profile.path}.extension")
                argument = _last_application(
                    extension.get("applications"), f"{profile.path}.extension.applications"
                )
                if argument is not None:
                    break
        if argument is None and self.var("last_app") == RECORD_SESSION:
            argument = (self.var("last_arg"), "variables.last_arg")
        if argument is None:
            return None, "app_log.applications"
        data, path = argument
        if not data:
            return None, path
        target = _first_argument(self._expand(data))
        # Only the base name is used, so a reference we cannot resolve in the directory
        # (`$${recordings_dir}/${uuid}.wav`, a global) does not matter; one in the name
        # makes the candidate unusable.
        if target is None or _UNRESOLVED in posixpath.basename(target):
            return None, path
        return target, path

    def _expand(self, data: str) -> str:
        """`data` with `${var}` replaced from the variables; what cannot be resolved
        (globals `$${…}`, unknown variables) becomes _UNRESOLVED."""

        def replace(match: re.Match[str]) -> str:
            value = None if match.group(1) else self.var(match.group(2))
            return _UNRESOLVED if value is None else value

        return _REFERENCE.sub(replace, data)


def _object(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise CdrFieldError(path, f"must be an object, got {json_kind(value)}")


def _decoded(value: object, path: str) -> str | None:
    text = fields.text(value, path)
    if not text:
        return None
    # unquote, not unquote_plus: FreeSWITCH encodes a plus as %2B and a space as %20,
    # and a literal `+` in `+7 903…` must stay a plus.
    return unquote(text).strip() or None


def _profiles(document: Mapping[str, Any]) -> list[_Profile]:
    callflow = document.get("callflow")
    if callflow is None:
        return []
    if isinstance(callflow, dict):
        entries: list[tuple[str, object]] = [("callflow", callflow)]
    elif isinstance(callflow, list):
        entries = [(f"callflow[{i}]", entry) for i, entry in enumerate(callflow)]
    else:
        raise CdrFieldError("callflow", f"must be an array or an object, got {json_kind(callflow)}")
    profiles = []
    for path, entry in entries:
        if not isinstance(entry, dict):
            raise CdrFieldError(path, f"must be an object, got {json_kind(entry)}")
        profiles.append(
            _Profile(
                path=path,
                entry=entry,
                caller=_object(entry.get("caller_profile"), f"{path}.caller_profile"),
                times=_object(entry.get("times"), f"{path}.times"),
                index=fields.integer(entry.get("profile_index"), f"{path}.profile_index"),
            )
        )
    # FreeSWITCH writes the newest profile first and numbers them from 1.
    if all(p.index is not None for p in profiles):
        return sorted(profiles, key=lambda p: p.index or 0)
    return profiles[::-1]


def _last_application(applications: object, path: str) -> tuple[str | None, str] | None:
    """(argument, path) of the last `record_session` in an application list, or None."""
    if applications is None:
        return None
    if isinstance(applications, dict):
        applications = [applications]
    if not isinstance(applications, list):
        raise CdrFieldError(path, f"must be an array, got {json_kind(applications)}")
    found = None
    for i, application in enumerate(applications):
        entry = _object(application, f"{path}[{i}]")
        if _decoded(entry.get("app_name"), f"{path}[{i}].app_name") == RECORD_SESSION:
            data_path = f"{path}[{i}].app_data"
            found = (_decoded(entry.get("app_data"), data_path), data_path)
    return found


def _first_argument(data: str) -> str | None:
    """The path in `record_session [{opts}]<path> [+<limit>]`."""
    rest = data.strip()
    while rest.startswith(("{", "[")):
        close = rest.find("}" if rest[0] == "{" else "]")
        if close < 0:
            return None
        rest = rest[close + 1 :].lstrip()
    words = rest.split()
    return words[0] if words else None


def _seconds_between(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, int((end - start).total_seconds()))
