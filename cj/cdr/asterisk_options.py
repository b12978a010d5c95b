"""How to read one Asterisk's CDRs: trunks, inbound contexts, cdr_custom columns, userfield.

Part of `CdrOptions` (`CdrOptions.asterisk`); built from `AgentSourceConfig` by
`CdrOptions.for_source`. Invalid values raise `CdrError` naming the option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cj.cdr.errors import CdrError
from cj.config.schema import DEFAULT_INBOUND_CONTEXTS, DEFAULT_TRUNK_CHANNELS

# The stock cdr_custom.conf.sample mapping:
#   Master.csv => ${CSV_QUOTE(${CDR(clid)})},${CSV_QUOTE(${CDR(src)})},…,${CDR(sequence)}
STOCK_CUSTOM_COLUMNS: tuple[str, ...] = (
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "accountcode",
    "uniqueid",
    "userfield",
    "sequence",
)
_CDR_VARIABLE = re.compile(r"CDR\(([A-Za-z_]+)")


def columns_from_mapping(mapping: str) -> tuple[str, ...]:
    """The columns of a cdr_custom.conf mapping line (`${CSV_QUOTE(${CDR(clid)})},…`).

    Text after `=>` is split on the commas between `${…}` items; each item names the
    CDR variable it prints.
    """
    body = mapping.split("=>", 1)[-1]
    names = tuple(match.group(1).lower() for match in _CDR_VARIABLE.finditer(body))
    if not names:
        raise CdrError("csv_columns", "the mapping names no ${CDR(...)} variable")
    return names


@dataclass(frozen=True)
class AsteriskOptions:
    """trunk_channels / inbound_contexts: regular expressions (searched) for a channel to
    the outside world and for a dcontext of calls arriving from outside; csv_columns:
    the cdr_custom columns in order; the userfield keys naming the recording and the
    privacy tag (`rec=<file>;tag=private`); recordings_by_uniqueid: a call whose CDR
    names no recording file gets the lookup `uniqueid:<uniqueid>`."""

    trunk_channels: str = DEFAULT_TRUNK_CHANNELS
    inbound_contexts: str = DEFAULT_INBOUND_CONTEXTS
    csv_columns: tuple[str, ...] = STOCK_CUSTOM_COLUMNS
    userfield_recording_key: str = "rec"
    userfield_privacy_key: str = "tag"
    # A call whose CDR names no file is given the lookup `uniqueid:<uniqueid>`
    # (FreePBX/IssabelPBX MixMonitor names end in the uniqueid).
    recordings_by_uniqueid: bool = True
    trunk: re.Pattern[str] = field(init=False, repr=False, compare=False)
    inbound: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, target in (("trunk_channels", "trunk"), ("inbound_contexts", "inbound")):
            try:
                object.__setattr__(self, target, re.compile(getattr(self, name)))
            except (re.error, TypeError) as exc:
                raise CdrError(name, f"not a regular expression: {exc}") from None
        columns = tuple(self.csv_columns) or STOCK_CUSTOM_COLUMNS
        if len(columns) == 1 and "${" in columns[0]:
            columns = columns_from_mapping(columns[0])
        columns = tuple(column.strip().lower() for column in columns)
        for required in ("start",):
            if required not in columns:
                raise CdrError("csv_columns", f"must include {required!r}")
        object.__setattr__(self, "csv_columns", columns)
        for name in ("userfield_recording_key", "userfield_privacy_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(c in value for c in ";=,"):
                raise CdrError(name, "must be a key without ';', '=' or ','")


DEFAULT_ASTERISK_OPTIONS = AsteriskOptions()
