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
