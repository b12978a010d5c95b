"""The specification's compact JSON CDR (DESIGN §4, `samples/compact/`).

Fields: `uuid, clid, clna, dest, dirc, stti, durs, bils, recd, recs, rnam, rtag,
epos, epoa, epoe, wbye, hang, code`. Required: `uuid`, `clid`, `dest` (may be empty for
an anonymous caller) and a start time (`epos`, or `stti` when `epos` is 0 or absent).

- Times: `epos/epoa/epoe` (Unix seconds, 0 = absent) win; `stti` (PBX local wall clock)
  is read in `CdrOptions.timezone` only when `epos` is absent (an explicit offset in
  `stti`, `…T09:15:04+03:00`, is honoured). A missing `epoa` means
  not answered; a missing `epoe` leaves `ended_at` empty (nothing is derived).
- `dirc`: inc/in/inbound/incoming → inbound; out/outbound/outgoing → outbound;
  int/internal/local → internal; anything else → unknown (case-insensitive).
- Recording: `rnam` (base name kept) unless `recd` is false; empty `rnam` = none.
- `rtag` "private" (any case) marks the recording private; anything else is public.
- `wbye` → `hangup_side`, `hang` → `hangup_cause`, `code` → `sip_code` (0/empty = none;
  "487 Request Terminated" → 487).
- Optional extensions (not in the specification; DESIGN §10): `clex` → `caller_extension`,
  `dsex` → `destination_extension`, the extension or SIP login behind each number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cj.cdr import fields
from cj.cdr.errors import CdrFieldError
from cj.cdr.options import CdrOptions
from cj.model import Call, Direction, ModelError, parse_uuid

DIRECTIONS: Mapping[str, Direction] = {
    "inc": Direction.INBOUND,
    "in": Direction.INBOUND,
    "inbound": Direction.INBOUND,
    "incoming": Direction.INBOUND,
    "out": Direction.OUTBOUND,
    "outbound": Direction.OUTBOUND,
    "outgoing": Direction.OUTBOUND,
    "int": Direction.INTERNAL,
    "internal": Direction.INTERNAL,
    "local": Direction.INTERNAL,
}

# Fields whose presence identifies the format (see detect.py).
SIGNATURE = ("clid", "dest", "dirc", "stti", "epos")


def parse_compact(document: Mapping[str, Any], options: CdrOptions) -> Call:
    """The canonical call described by a compact CDR document."""
    return explain_compact(document, options)[0]


def explain_compact(
    document: Mapping[str, Any], options: CdrOptions
) -> tuple[Call, dict[str, str]]:
    """The call and, per Call field, the document field it came from."""
    for key in ("uuid", "clid", "dest"):
        if document.get(key) is None:
            raise CdrFieldError(key, "is missing")
    uuid_text = fields.text(document["uuid"], "uuid") or ""
    try:
        call_uuid = parse_uuid(uuid_text, "uuid")
    except ModelError as exc:
        raise CdrFieldError("uuid", exc.reason) from None

    sources = {
        "duration_s": "durs",
        "billsec": "bils",
        "answered_at": "epoa",
        "ended_at": "epoe",
        "caller_name": "clna",
        "hangup_cause": "hang",
        "hangup_side": "wbye",
        "sip_code": "code",
        "recording_name": "rnam",
        "source": "source",
        "caller_extension": "clex",
        "destination_extension": "dsex",
    }
    started_at = fields.epoch_seconds(document.get("epos"), "epos")
    sources["started_at"] = "epos"
    if started_at is None:
        started_at = fields.local_stamp(document.get("stti"), "stti", options.zone)
        sources["started_at"] = "stti"
    if started_at is None:
        raise CdrFieldError("stti", "is missing, and epos is absent or 0: no start time")

    sources.update(uuid="uuid", caller="clid", destination="dest", direction="dirc", private="rtag")
    call = fields.build_call(
        sources,
        uuid=call_uuid,
        source=options.source,
        caller=fields.phone(document["clid"], "clid"),
        caller_name=fields.text(document.get("clna"), "clna") or "",
        caller_extension=fields.text(document.get("clex"), "clex") or "",
        destination_extension=fields.text(document.get("dsex"), "dsex") or "",
        destination=fields.phone(document["dest"], "dest"),
        direction=_direction(document.get("dirc")),
        started_at=started_at,
        answered_at=fields.epoch_seconds(document.get("epoa"), "epoa"),
        ended_at=fields.epoch_seconds(document.get("epoe"), "epoe"),
        duration_s=fields.count(document.get("durs"), "durs") or 0,
        billsec=fields.count(document.get("bils"), "bils") or 0,
        hangup_cause=fields.text(document.get("hang"), "hang") or "",
        hangup_side=fields.text(document.get("wbye"), "wbye") or "",
        sip_code=fields.sip_status(document.get("code"), "code"),
        private=(fields.text(document.get("rtag"), "rtag") or "").lower() == "private",
        recording_name=_recording(document),
        raw=document,
    )
    return call, sources


def _direction(value: object) -> Direction:
    word = (fields.text(value, "dirc") or "").lower()
    return DIRECTIONS.get(word, Direction.UNKNOWN)


def _recording(document: Mapping[str, Any]) -> str | None:
    # `recd: false` says no file was written, whatever `rnam` announces; trusting `rnam`
    # would make the agent wait for a recording that never comes.
    if fields.flag(document.get("recd"), "recd") is False:
        return None
    name = fields.text(document.get("rnam"), "rnam")
    return fields.recording_file_name(name, "rnam") if name else None
