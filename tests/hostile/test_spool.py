"""Hostile CDRs in an agent's spool: recording names that try to lead out of it, and
mangled documents. A real agent (in this process) uploads to a real cj-api.

What must hold, whatever the PBX (or an attacker able to write CDRs) puts there:
- a recording is only ever read from inside the spool's recordings directory: names
  with `../` or an absolute path are reduced to their base name there, names that
  cannot be a plain file name (NUL, backslashes, 300 characters, a directory) and
  symlinks leading out are quarantined with the reason beside them;
- nothing outside the spool is read, moved or uploaded, and nothing is written
  outside the spool and the storages' roots (the server chooses every storage key);
- every CDR ends up uploaded (and removed), quarantined or waiting in `pending/`
  for its recording, and the agent keeps running.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import random
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from pydantic import SecretStr

from cj.config import AgentConfig, AgentSettings, AgentSourceConfig
from cj_agent import Agent, serve
from cj_agent.systemd import Notifier
from tests.e2e.calls import BASE_TIME, Spool, compact_cdr, freeswitch_cdr, write_wav
from tests.e2e.harness import eventually
from tests.fixtures.api import AGENT_TOKEN, RunningApi

# The server names temporary objects after the call and the content, never after the
# file name a client sent: wav/<fan-out>/<call uuid>…, lower-case hex and dashes only.
SERVER_KEY = re.compile(r"^wav/[0-9a-f]{2}/[0-9a-f/.-]+\.wav$")


@asynccontextmanager
async def running_agent(spool: Spool, server: str) -> AsyncIterator[Agent]:
    source = AgentSourceConfig(
        name=spool.name,
        cdr_dir=spool.cdr_dir,
        recordings_dir=spool.recordings_dir,
        timezone="Europe/Moscow",
    )
    settings = AgentSettings(
        agent=AgentConfig(
            server=server,
            token=SecretStr(AGENT_TOKEN),
            sources=(source,),
            poll_min_s=0.02,
            poll_max_s=0.2,
            settle_s=0.05,
            recording_wait_s=0.5,  # absent recordings: to pending/ quickly
            request_timeout_s=10.0,
            grace_period_s=1.0,
        )
    )
    async with trio.open_nursery() as nursery:
        agent: Agent = await nursery.start(
            functools.partial(serve, settings, notifier=Notifier(None))
        )
        yield agent
        nursery.cancel_scope.cancel()


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` (symlinks not followed) with its sha256."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def cdr(
    name: str, recording: str | None, *, freeswitch: bool = False
) -> tuple[str, dict[str, Any]]:
    call_uuid = str(uuid.uuid4())
    maker = freeswitch_cdr if freeswitch else compact_cdr
    document = maker(call_uuid, "+7 916 555-01-02", BASE_TIME, recording, False)
    return name, document


def write_cdr(spool: Spool, name: str, document: dict[str, Any] | bytes) -> None:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    temporary = spool.cdr_dir / f".{name}.part"
    temporary.write_bytes(data)
    temporary.replace(spool.cdr_dir / f"{name}.json")


def layout(tmp_path: Path) -> tuple[Spool, Path, str]:
    """The spool, a directory beside it with a secret recording, and that file's sha256."""
    spool = Spool(tmp_path / "pbx", "pbx-hostile").make()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write_wav(
        outside / "secret.wav", seconds=0.5, subtype="PCM_16", rate=8000, channels=1, seed=1
    )
    (outside / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (spool.recordings_dir / "link.wav").symlink_to(secret)
    for name, seed in (("inner.wav", 2), ("inner2.wav", 3)):
        write_wav(
            spool.recordings_dir / name,
            seconds=0.5,
            subtype="PCM_16",
            rate=8000,
            channels=1,
            seed=seed,
        )
    return spool, outside, hashlib.sha256(secret.read_bytes()).hexdigest()


# Recording names as the CDR gives them → what must become of the CDR.
HOSTILE_NAMES: list[tuple[str, str, bool, str]] = [
    ("dotdot", "../outside/secret.wav", False, "pending"),  # base name: not in the spool
    ("absolute", "{outside}/secret.wav", False, "pending"),
    ("etc-passwd", "../../../../../../../etc/passwd", False, "pending"),
    ("fs-dotdot", "../../outside/secret.wav", True, "pending"),
    ("nul", "rec\u0000.wav", False, "quarantine"),
    ("overlong", "r" * 300 + ".wav", False, "quarantine"),
    ("backslash", "..\\..\\outside\\secret.wav", False, "quarantine"),
    ("directory", "../", False, "quarantine"),
    ("symlink-out", "link.wav", False, "quarantine"),
    ("inside", "inner.wav", False, "uploaded"),
    ("dotdot-back-in", "../recordings/inner2.wav", False, "uploaded"),
]


async def test_recording_names_never_lead_out_of_the_spool(
    running_api: RunningApi, tmp_path: Path
) -> None:
    spool, outside, secret_sha = layout(tmp_path)
    before_outside = snapshot(outside)
    expected: dict[str, str] = {}
    for label, name, freeswitch, fate in HOSTILE_NAMES:
        file_name, document = cdr(label, name.format(outside=outside), freeswitch=freeswitch)
        write_cdr(spool, file_name, document)
        expected[f"{file_name}.json"] = fate
    (bad_uuid_name, bad_uuid) = cdr("uuid-dotdot", "inner.wav")
    bad_uuid["uuid"] = "../../" + bad_uuid["uuid"]
    write_cdr(spool, bad_uuid_name, bad_uuid)
    expected[f"{bad_uuid_name}.json"] = "quarantine"

    with trio.fail_after(60):
        async with running_agent(spool, running_api.endpoints.grpc_address) as agent:
            await eventually(
                lambda: not spool.leftovers()["cdr"] and agent.stats.in_progress == 0,
                timeout_s=30,
                interval=0.05,
                what="every CDR handled",
            )
            stats = agent.stats.as_dict()

    left = spool.leftovers()
    fates = {name: "quarantine" for name in left["quarantine"] if not name.endswith(".error")}
    fates |= {name: "pending" for name in left["pending"]}
    fates |= {name: "uploaded" for name in expected if name not in fates}
    assert fates == expected
    for name, fate in expected.items():
        if fate == "quarantine":
            reason = (spool.quarantine_dir / f"{name}.error").read_text()
            assert reason.strip(), name
    assert stats["errors"] == 0
    # The inside recordings went up, and were removed from the spool; the symlink stays.
    assert left["recordings"] == ["link.wav"]
    # Nothing outside the spool was read into storage, moved or changed.
    assert snapshot(outside) == before_outside
    rows = running_api.query(
        "SELECT call_uuid::text AS uuid, original_sha256, original_key FROM recordings"
    )
    assert len(rows) == 2 and secret_sha not in {row["original_sha256"] for row in rows}
    for row in rows:
        key = str(row["original_key"])
        assert SERVER_KEY.match(key) and str(row["uuid"]) in key and ".." not in key, key
    assert_nothing_written_outside(tmp_path, {"pbx", "outside", "temp", "recordings"})


def assert_nothing_written_outside(root: Path, allowed: set[str]) -> None:
    """Files under `root` only in the allowed top-level directories; storages hold only
    server-chosen keys."""
    strays = [p for p in root.iterdir() if p.name not in allowed]
    assert not strays, f"written outside the spool and the storages: {strays}"
    for path in (root / "temp").rglob("*"):
        relative = path.relative_to(root / "temp")
        if path.is_file() and relative.parts[0] != ".tmp":
            assert SERVER_KEY.match(str(relative)), f"unexpected temporary object {relative}"


# --- mangled documents ----------------------------------------------------------------

TRICKY = [
    "",
    "../..",
    "/etc/passwd",
    "\u0000",
    "a\u0000b",
    "%00",
    "%2e%2e%2f",
    "x" * 5000,
    -1,
    0,
    2**63,
    10**30,
    1.5,
    float("nan"),
    True,
    None,
    [],
    {"a": {"b": [1, 2]}},
    "2026-02-30 25:61:61",
    "NaN",
    "record_session",
    "${uuid}.wav",
]


def mangle(rng: random.Random, document: dict[str, Any]) -> dict[str, Any] | bytes:
    """One random way of spoiling a valid CDR (or none: a valid one now and then)."""
    doc = copy.deepcopy(document)
    target = doc["variables"] if "variables" in doc and rng.random() < 0.7 else doc
    for _ in range(rng.randint(0, 3)):
        action = rng.random()
        keys = list(target)
        if action < 0.5 and keys:
            target[rng.choice(keys)] = rng.choice(TRICKY)
        elif action < 0.7 and keys:
            del target[rng.choice(keys)]
        elif action < 0.8:
            target[rng.choice(["rnam", "record_name", "cj_record_name", "junk"])] = rng.choice(
                TRICKY
            )
        else:
            text = json.dumps(doc, allow_nan=True).encode()
            cut = rng.randint(0, len(text))
            return text[:cut] if rng.random() < 0.5 else text[:cut] + os.urandom(8)
    return doc


@pytest.mark.slow
async def test_mangled_cdrs_are_uploaded_quarantined_or_pending(
    running_api: RunningApi, tmp_path: Path, reliability: Any
) -> None:
    """300 spoiled CDRs (both formats) and the hostile names above, in one spool."""
    spool, outside, secret_sha = layout(tmp_path)
    before_outside = snapshot(outside)
    rng = random.Random(20260302)
    names = []
    for n in range(300):
        name, document = cdr(
            f"mangled-{n:03d}", rng.choice([None, "inner.wav", "absent.wav"]), freeswitch=n % 2 == 1
        )
        write_cdr(spool, name, mangle(rng, document))
        names.append(f"{name}.json")
    for label, recording, freeswitch, _ in HOSTILE_NAMES:
        file_name, document = cdr(label, recording.format(outside=outside), freeswitch=freeswitch)
        write_cdr(spool, file_name, document)
        names.append(f"{file_name}.json")

    with trio.fail_after(180):
        async with running_agent(spool, running_api.endpoints.grpc_address) as agent:
            await eventually(
                lambda: not spool.leftovers()["cdr"] and agent.stats.in_progress == 0,
                timeout_s=150,
                interval=0.1,
                what="every CDR handled",
            )
            stats = agent.stats.as_dict()

    left = spool.leftovers()
    quarantined = {n for n in left["quarantine"] if not n.endswith(".error")}
    pending = set(left["pending"])
    uploaded = set(names) - quarantined - pending
    assert quarantined | pending <= set(names)
    assert all((spool.quarantine_dir / f"{n}.error").exists() for n in quarantined)
    assert stats["errors"] == 0, stats
    calls = running_api.query("SELECT count(*) AS n FROM calls")[0]["n"]
    # Every CDR that left the spool (uploaded) or waits for its recording is a call.
    assert calls == len(uploaded) + len(pending)
    assert snapshot(outside) == before_outside
    rows = running_api.query("SELECT original_sha256, original_key FROM recordings")
    assert secret_sha not in {row["original_sha256"] for row in rows}
    assert_nothing_written_outside(tmp_path, {"pbx", "outside", "temp", "recordings"})
    reliability.record(
        "hostile CDRs in an agent's spool",
        kind="hostile",
        summary=(
            "300 spoiled CDRs (random values, deleted fields, truncated or garbage JSON) and "
            "recording names with ../, absolute paths, NUL, backslashes, 300 characters and "
            "a symlink out: nothing read or written outside the spool and the storage roots, "
            "every CDR uploaded, quarantined with its reason, or pending, the agent unharmed "
            "(the CDR parsers' own Hypothesis fuzzing is tests/cdr/test_robustness.py)"
        ),
        cdrs=len(names),
        uploaded=len(uploaded),
        quarantined=len(quarantined),
        pending=len(pending),
        agent_errors=stats["errors"],
    )
