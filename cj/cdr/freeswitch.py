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
- caller, caller name, destination, caller/destination extension and direction: see
  `cj.cdr.freeswitch_parties` (the number presented, the login beside it, the call's
  direction from evidence rather than the channel's).
- times: `<x>_epoch`, `<x>_uepoch` (0 = absent), the callflow `times`
  (`created_time` earliest, `answered_time` earliest, `hangup_time` latest: FreeSWITCH
  records answer and hangup on the profile current at that moment), and last the local
  `<x>_stamp` in the PBX zone.
- duration / billsec: `duration` / `billsec`; else computed from the times.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from cj.cdr import fields
from cj.cdr.document import json_kind
from cj.cdr.errors import CdrFieldError
from cj.cdr.freeswitch_parties import read_parties
from cj.cdr.locality import LocalNumbers
from cj.cdr.options import RECORD_SESSION, CdrOptions
from cj.model import Call, ModelError, parse_uuid

PRIVATE_VALUES = frozenset({"private", "true", "yes", "1", "on"})

# `${name}` is a channel variable; `$${name}` a global we cannot see.
_REFERENCE = re.compile(r"\$(\$?)\{([^{}]*)\}")
# Stands in for an unresolvable reference; decoded documents never contain NUL.
_UNRESOLVED = "\x00"
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
    return _Reader(document, options).call()[0]


def explain_freeswitch(
    document: Mapping[str, Any], options: CdrOptions, *, url_encoded: bool = True
) -> tuple[Call, dict[str, str]]:
    """The call and, per Call field, the document field that decided it and why.

    `url_encoded=False` reads the variables as they are (mod_cdr_csv lines)."""
    return _Reader(document, options, url_encoded=url_encoded).call()


class _Reader:
    def __init__(
        self, document: Mapping[str, Any], options: CdrOptions, *, url_encoded: bool = True
    ) -> None:
        self.document = document
        self.options = options
        self.url_encoded = url_encoded
        # Decoded variables: the rules ask for the same ones several times.
        self._vars: dict[str, str | None] = {}
        self.variables = _object(document.get("variables"), "variables")
        # Chronological: the originating profile first.
        self.profiles = _profiles(document)
        self.origin = self.profiles[0] if self.profiles else None

    @property
    def local(self) -> LocalNumbers:
        return self.options.local

    def call(self) -> tuple[Call, dict[str, str]]:
        sources: dict[str, str] = {"source": "source"}
        call_uuid, sources["uuid"] = self._uuid()
        parties = read_parties(self)
        reasons = {name: str(decision) for name, decision in parties.decisions.items()}
        for name, decision in parties.decisions.items():
            sources[name] = decision.path

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
        sources["private"] = f"variables.{self.options.privacy_variable}"

        call = fields.build_call(
            sources,
            uuid=call_uuid,
            source=self.options.source,
            caller=parties.caller,
            caller_name=parties.caller_name,
            caller_extension=parties.caller_extension,
            destination=parties.destination,
            destination_extension=parties.destination_extension,
            direction=parties.direction,
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
        return call, {**sources, **reasons}

    # --- raw access ----------------------------------------------------------------

    def var(self, name: str) -> str | None:
        """A channel variable, URL-decoded and stripped; None when absent or empty."""
        try:
            return self._vars[name]
        except KeyError:
            value = _decoded(self.variables.get(name), f"variables.{name}", self.url_encoded)
            self._vars[name] = value
            return value

    def profile_value(self, key: str) -> tuple[str | None, str]:
        """A field of the originating caller profile, URL-decoded, and its path."""
        if self.origin is None:
            return None, f"callflow.caller_profile.{key}"
        path = f"{self.origin.path}.caller_profile.{key}"
        return _decoded(self.origin.caller.get(key), path), path

    def text_at(self, value: object, path: str) -> str | None:
        """Any value of the document, URL-decoded and stripped like the variables."""
        return _decoded(value, path)

    def channel_direction(self) -> tuple[str | None, str]:
        """The channel's direction word ("inbound"/"outbound") and where it was found."""
        word = self.var("direction")
        if word is not None:
            return word, "variables.direction"
        channel = _object(self.document.get("channel_data"), "channel_data")
        return _decoded(channel.get("direction"), "channel_data.direction"), (
            "channel_data.direction"
        )

    def has_originator(self) -> bool:
        """Whether this leg was placed by another channel (the B-leg of a bridge)."""
        if self.var("originator") or self.var("originating_leg_uuid"):
            return True
        return any("originator" in profile.caller for profile in self.profiles)

    def applications(self) -> Iterator[tuple[str, str | None, str]]:
        """(name, argument, path) of every application in `app_log` and the dialplan."""
        lists: list[tuple[object, str]] = [
            (
                _object(self.document.get("app_log"), "app_log").get("applications"),
                "app_log.applications",
            ),
        ]
        for profile in self.profiles:
            extension = _object(profile.entry.get("extension"), f"{profile.path}.extension")
            lists.append((extension.get("applications"), f"{profile.path}.extension.applications"))
        for applications, path in lists:
            for i, entry in enumerate(_application_list(applications, path)):
                name = _decoded(entry.get("app_name"), f"{path}[{i}].app_name") or ""
                data_path = f"{path}[{i}].app_data"
                yield name, _decoded(entry.get("app_data"), data_path), data_path

    def originatees(self) -> Iterator[tuple[Mapping[str, Any], str]]:
        """The B-leg caller profiles the originating profiles list, with their paths."""
        for profile in self.profiles:
            path = f"{profile.path}.caller_profile.originatee"
            originatee = _object(profile.caller.get("originatee"), path)
            entries = originatee.get("originatee_caller_profiles")
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list):
                continue
            for i, entry in enumerate(entries):
                if isinstance(entry, dict):
                    yield entry, f"{path}.originatee_caller_profiles[{i}]"

    # --- fields ----------------------------------------------------------------------

    def _uuid(self) -> tuple[uuid.UUID, str]:
        value, path = self.var("uuid"), "variables.uuid"
        if not value:
            value, path = self.profile_value("uuid")
        if not value:
            raise CdrFieldError("variables.uuid", "is missing")
        try:
            return parse_uuid(value, path), path
        except ModelError as exc:
            raise CdrFieldError(path, exc.reason) from None

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


def _decoded(value: object, path: str, url_encoded: bool = True) -> str | None:
    text = fields.text(value, path)
    if not text:
        return None
    if not url_encoded:
        return text
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
    found = None
    for i, entry in enumerate(_application_list(applications, path)):
        if _decoded(entry.get("app_name"), f"{path}[{i}].app_name") == RECORD_SESSION:
            data_path = f"{path}[{i}].app_data"
            found = (_decoded(entry.get("app_data"), data_path), data_path)
    return found


def _application_list(applications: object, path: str) -> list[Mapping[str, Any]]:
    if applications is None:
        return []
    if isinstance(applications, dict):
        applications = [applications]
    if not isinstance(applications, list):
        raise CdrFieldError(path, f"must be an array, got {json_kind(applications)}")
    return [_object(entry, f"{path}[{i}]") for i, entry in enumerate(applications)]


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
