"""Shared builders for the CDR tests: sample paths and small documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from cj.cdr import CdrOptions, parse_cdr
from cj.model import Call

# Copies of /work/shared/samples (the JSON only), so the suite runs on a fresh clone.
SAMPLES = Path(__file__).parent / "samples"
COMPACT_ANSWERED = SAMPLES / "compact" / "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.json"
COMPACT_PRIVATE = SAMPLES / "compact" / "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222.json"
COMPACT_UNANSWERED = SAMPLES / "compact" / "0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333.json"
FS_PLAIN = SAMPLES / "freeswitch" / "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.cdr.json"
FS_ENCODED = SAMPLES / "freeswitch" / "a_d1f3a5c7-0b2e-4a69-8f14-6c8e0a2b4555.cdr.json"
ALL_SAMPLES = (COMPACT_ANSWERED, COMPACT_PRIVATE, COMPACT_UNANSWERED, FS_PLAIN, FS_ENCODED)

MOSCOW = CdrOptions(timezone="Europe/Moscow")
UUID = "3f2a8c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"

XML_UUID = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

# A mod_xml_cdr document: extension 1004 dials out through gateway "trunk".
XML = f"""<?xml version="1.0"?>
<cdr core-uuid="77f0d2c4-6a1e-4c3b-9d85-0e2f4a6b8c10" switchname="pbx-test">
  <channel_data>
    <direction>inbound</direction>
  </channel_data>
  <variables>
    <uuid>{XML_UUID}</uuid>
    <direction>inbound</direction>
    <sip_authorized>true</sip_authorized>
    <sip_auth_username>1004</sip_auth_username>
    <effective_caller_id_name>Anna%20K</effective_caller_id_name>
    <effective_caller_id_number>%2B74951234567</effective_caller_id_number>
    <start_epoch>1772535731</start_epoch>
    <answer_epoch>1772535737</answer_epoch>
    <end_epoch>1772535833</end_epoch>
    <duration>102</duration>
    <billsec>96</billsec>
    <hangup_cause>NORMAL_CLEARING</hangup_cause>
    <sip_full_from>%3Csip%3A1004%40pbx%3E%3Btag%3Dx</sip_full_from>
    <record_name>{XML_UUID}.wav</record_name>
  </variables>
  <app_log>
    <application app_name="set" app_data="effective_caller_id_number=+74951234567"></application>
    <application app_name="bridge" app_data="sofia/gateway/trunk/89161234567"></application>
  </app_log>
  <callflow dialplan="XML" profile_index="1">
    <extension name="out" number="89161234567">
      <application app_name="bridge" app_data="sofia/gateway/trunk/${{destination_number}}"/>
    </extension>
    <caller_profile>
      <username>1004</username>
      <caller_id_name>1004</caller_id_name>
      <caller_id_number>1004</caller_id_number>
      <destination_number>89161234567</destination_number>
      <uuid>{XML_UUID}</uuid>
      <context>default</context>
      <originatee>
        <originatee_caller_profile>
          <destination_number>89161234567</destination_number>
          <chan_name>sofia/gateway/trunk/89161234567</chan_name>
        </originatee_caller_profile>
      </originatee>
    </caller_profile>
    <times>
      <created_time>1772535731000000</created_time>
      <answered_time>1772535737000000</answered_time>
      <hangup_time>1772535833000000</hangup_time>
    </times>
  </callflow>
</cdr>
"""


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


def parse(document: dict[str, Any], **options: Any) -> Call:
    """Serialise a document and parse it the way the agent would."""
    return parse_cdr(json.dumps(document).encode(), CdrOptions(**options))


def compact(**overrides: Any) -> dict[str, Any]:
    """A valid compact document (the answered sample) with fields replaced or
    removed (`field=DROP`)."""
    document = load(COMPACT_ANSWERED)
    return _apply(document, overrides)


def freeswitch(variables: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A minimal FreeSWITCH document: a uuid and a start epoch plus what is given.

    `variables` entries set to DROP are removed, `variables=DROP` removes them all;
    top-level keys likewise.
    """
    document: dict[str, Any] = {
        "core-uuid": "77f0d2c4-6a1e-4c3b-9d85-0e2f4a6b8c10",
        "switchname": "pbx-test",
        "channel_data": {"state": "CS_REPORTING", "direction": "inbound"},
        "variables": {
            "direction": "inbound",
            "uuid": UUID,
            "start_epoch": "1772535731",
            "end_epoch": "1772535833",
        },
    }
    if variables is DROP:
        del document["variables"]
    else:
        document["variables"] = _apply(document["variables"], variables or {})
    return _apply(document, top)


def profile(
    index: str | None = "1",
    *,
    number: str = "79857771234",
    name: str = "Caller",
    destination: str = "4957001020",
    times: dict[str, str] | None = None,
    applications: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One callflow entry as FreeSWITCH writes it."""
    entry: dict[str, Any] = {"dialplan": "XML"}
    if index is not None:
        entry["profile_index"] = index
    if applications is not None:
        entry["extension"] = {"name": "ext", "number": destination, "applications": applications}
    entry["caller_profile"] = {
        "caller_id_name": name,
        "caller_id_number": number,
        "destination_number": destination,
        "uuid": UUID,
    }
    if times is not None:
        entry["times"] = times
    return entry


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()


def _apply(document: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    for key, value in overrides.items():
        if value is DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result
