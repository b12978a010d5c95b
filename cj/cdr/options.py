"""What a CDR parser needs to know about the PBX that wrote the document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cj.cdr.asterisk_options import DEFAULT_ASTERISK_OPTIONS, AsteriskOptions
from cj.cdr.errors import CdrError
from cj.cdr.locality import DEFAULT_LOCAL_NUMBERS, LocalNumbers
from cj.config import CdrFormat

if TYPE_CHECKING:
    from cj.config import AgentSourceConfig

# Tried in order; the same defaults as `AgentSourceConfig.recording_variables`.
# `a+b` joins the values of two variables as a path; `record_session` is the argument of
# the last `record_session` application the channel ran.
DEFAULT_RECORDING_VARIABLES: tuple[str, ...] = (
    "cj_record_name",
    "record_name",
    "record_path+record_name",
    "record_session",
)
DEFAULT_PRIVACY_VARIABLE = "cj_record_tag"
RECORD_SESSION = "record_session"


@dataclass(frozen=True)
class CdrOptions:
    """How to read one PBX's CDRs.

    timezone: the PBX's IANA zone, used for local time stamps (`stti`, `*_stamp`) when a
        document carries no epoch.
    format: force a format, or AUTO to detect it per document.
    recording_variables: FreeSWITCH variables naming the recording, tried in order.
    privacy_variable: FreeSWITCH variable whose value `private` marks the recording private.
    source: the PBX/agent name copied into `Call.source`.
    local: which numbers are the PBX's own (extensions, DIDs): decides direction.
    asterisk: how to read Asterisk CDRs (trunks, contexts, cdr_custom columns, userfield).
    csv_template: the mod_cdr_csv template of freeswitch_csv lines.

    Invalid options raise `CdrError` naming the option.
    """

    timezone: str = "UTC"
    format: CdrFormat = CdrFormat.AUTO
    recording_variables: tuple[str, ...] = DEFAULT_RECORDING_VARIABLES
    privacy_variable: str = DEFAULT_PRIVACY_VARIABLE
    source: str = ""
    local: LocalNumbers = DEFAULT_LOCAL_NUMBERS
    asterisk: AsteriskOptions = DEFAULT_ASTERISK_OPTIONS
    csv_template: str = "example"  # freeswitch_csv: mod_cdr_csv's template (name or text)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, str):
            raise CdrError("timezone", "must be an IANA time zone name")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # ZoneInfo raises KeyError, ValueError (absolute/relative paths, NUL) or
            # OSError (a directory such as "Europe") for names that are not zones.
            raise CdrError("timezone", f"unknown time zone {self.timezone[:64]!r}") from None
        object.__setattr__(self, "zone", zone)
        try:
            object.__setattr__(self, "format", CdrFormat(self.format))
        except ValueError:
            choices = ", ".join(f.value for f in CdrFormat)
            raise CdrError("format", f"must be one of {choices}, got {self.format!r}") from None
        variables = tuple(self.recording_variables)
        for name in variables:
            if not isinstance(name, str) or not name or any(not part for part in name.split("+")):
                raise CdrError("recording_variables", f"{name!r} is not a variable name")
        object.__setattr__(self, "recording_variables", variables)
        if not isinstance(self.privacy_variable, str) or not self.privacy_variable:
            raise CdrError("privacy_variable", "must be a variable name")
        if not isinstance(self.source, str):
            raise CdrError("source", "must be text")

    @classmethod
    def for_source(cls, source: AgentSourceConfig) -> CdrOptions:
        """The options an agent uses for one configured PBX output."""
        return cls(
            timezone=source.timezone,
            format=source.format,
            recording_variables=source.recording_variables,
            privacy_variable=source.privacy_variable,
            source=source.name,
            local=LocalNumbers(source.local_extensions, tuple(source.local_numbers)),
            asterisk=AsteriskOptions(
                trunk_channels=source.trunk_channels,
                inbound_contexts=source.inbound_contexts,
                csv_columns=tuple(source.csv_columns),
                userfield_recording_key=source.userfield_recording_key,
                userfield_privacy_key=source.userfield_privacy_key,
                recordings_by_uniqueid=source.recordings_by_uniqueid,
            ),
            csv_template=source.csv_template,
        )
