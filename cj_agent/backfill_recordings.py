"""Which recording `cj-agent backfill` sends for a call: the agent's names, a subset.

Backfill indexes the recordings under its paths by file name (there is no single
recordings directory), so of the resolution contract (`cj_agent.recordings`) it applies:

- a plain name or a path: the file of that base name beside the CDR, else in the index;
- a lookup `uniqueid:<uniqueid>`: a file of the index whose name ends in
  `<sep><uniqueid>.<ext>` (an index by uniqueid, built once); nothing found means no
  recording (the server is sent no name, never the lookup key);
- two legs (`recording_legs`, or a lookup that finds `…-in`/`…-out` files): **not
  merged** by backfill. The call is sent, its legs are left in place, and the call is
  counted under "recordings not merged" with a line in the report saying so: import
  such calls with the agent daemon (its merge path), or merge them before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from cj.model import Call
from cj_agent.recordings import LOOKUP_PREFIX, Leg, leg_of

_SEPARATOR = re.compile(r"[-_]")
_LEG_SUFFIXES = ("in", "out", "r", "t", "rx", "tx")


def uniqueid_index(by_name: dict[str, str]) -> dict[str, dict[Leg, str]]:
    """uniqueid → {mixed/caller/callee: path} for the names of `by_name`."""
    index: dict[str, dict[Leg, str]] = {}
    for name in sorted(by_name):
        stem = name.rpartition(".")[0]
        if not stem:
            continue
        tokens = _SEPARATOR.split(stem)
        ids = {stem, tokens[-1]}
        if len(tokens) > 1 and tokens[-1] in _LEG_SUFFIXES:
            ids.add(tokens[-2])
        for uniqueid in ids:
            leg = leg_of(name, uniqueid) if uniqueid else None
            if leg is not None:
                index.setdefault(uniqueid, {}).setdefault(leg, by_name[name])
    return index


@dataclass(frozen=True)
class Choice:
    """The call to send (its recording name fixed), its recording's local path, and why
    a recording is not sent (None: nothing to say)."""

    call: Call
    recording: str | None = None
    not_merged: str | None = None


def choose(
    call: Call, cdr_path: str, by_name: dict[str, str], by_uniqueid: dict[str, dict[Leg, str]]
) -> Choice:
    name = call.recording_name
    if call.recording_legs is not None:
        base = PurePosixPath(name).name if name else None
        caller, callee = (PurePosixPath(leg).name for leg in call.recording_legs)
        reason = (
            f"recording legs {caller} + {callee} are not merged by backfill "
            "(call sent without its recording; run the agent daemon on this CDR)"
        )
        return Choice(replace(call, recording_name=base), None, reason)
    if name is None:
        return Choice(call)
    if name.startswith(LOOKUP_PREFIX):
        found = by_uniqueid.get(name[len(LOOKUP_PREFIX) :].strip(), {})
        mixed = found.get(Leg.MIXED)
        if mixed is not None:
            return Choice(replace(call, recording_name=Path(mixed).name), mixed)
        if found:
            legs = " + ".join(Path(path).name for path in found.values())
            reason = (
                f"recording legs {legs} found by uniqueid are not merged by backfill "
                "(call sent without its recording; run the agent daemon on this CDR)"
            )
            return Choice(replace(call, recording_name=None), None, reason)
        return Choice(replace(call, recording_name=None))  # a lookup that found nothing
    base = PurePosixPath(name).name
    beside = Path(cdr_path).parent / base
    recording = str(beside) if beside.is_file() else by_name.get(base)
    return Choice(replace(call, recording_name=base), recording)
