"""Helpers for the agent tests: spool layouts, CDR documents, a running agent."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
from pydantic import SecretStr

from cj.config import AfterSuccess, AgentConfig, AgentSettings, AgentSourceConfig
from cj_agent import Agent, serve
from cj_agent.systemd import Notifier
from tests.fixtures.api import AGENT_TOKEN, RunningApi

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "cdr" / "samples"
AUDIO = ROOT / "tests" / "data" / "audio"

# The shared samples' recordings are byte-identical copies of tests/data/audio files.
SAMPLE_RECORDINGS = {
    "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav": AUDIO / "pcm16-8k-mono.wav",
    "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222.wav": AUDIO / "mulaw-8k-mono.wav",
    "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav": AUDIO / "pcm16-16k-stereo.wav",
}
SAMPLE_CALLS = {
    "0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333": None,
    "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111": "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav",
    "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222": "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222.wav",
    "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444": "9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav",
    "d1f3a5c7-0b2e-4a69-8f14-6c8e0a2b4555": None,
}
WAV = (AUDIO / "pcm16-8k-mono.wav").read_bytes()


@dataclass
class Spool:
    """A PBX's directories under one temporary root."""

    root: Path

    @property
    def cdr(self) -> Path:
        return self.root / "cdr"

    @property
    def recordings(self) -> Path:
        return self.root / "recordings"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def failed(self) -> Path:
        return self.cdr / "failed"

    @property
    def pending(self) -> Path:
        return self.cdr / "pending"

    def make(self) -> Spool:
        self.cdr.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        return self

    def cdr_files(self) -> list[str]:
        return sorted(p.name for p in self.cdr.iterdir() if p.is_file())

    def recording_files(self) -> list[str]:
        return sorted(p.name for p in self.recordings.iterdir() if p.is_file())

    def failed_files(self) -> list[str]:
        if not self.failed.exists():
            return []
        return sorted(p.name for p in self.failed.iterdir() if p.is_file())

    def pending_files(self) -> list[str]:
        if not self.pending.exists():
            return []
        return sorted(p.name for p in self.pending.iterdir() if p.is_file())

    def archived(self) -> list[str]:
        if not self.archive.exists():
            return []
        files = (p for p in self.archive.rglob("*") if p.is_file())
        return sorted(str(p.relative_to(self.archive)) for p in files)

    def drop_samples(self) -> None:
        """The shared samples: 5 CDRs (3 with recordings) in both formats."""
        for path in sorted((SAMPLES / "compact").glob("*.json")):
            shutil.copy(path, self.cdr / path.name)
        for path in sorted((SAMPLES / "freeswitch").glob("*.json")):
            shutil.copy(path, self.cdr / path.name)
        for name, data in SAMPLE_RECORDINGS.items():
            shutil.copy(data, self.recordings / name)

    def write_cdr(self, document: dict[str, Any], name: str | None = None) -> Path:
        path = self.cdr / (name or f"{document['uuid']}.json")
        path.write_text(json.dumps(document))
        return path

    def write_recording(self, name: str, data: bytes = WAV) -> Path:
        path = self.recordings / name
        path.write_bytes(data)
        return path


def compact_cdr(
    call_uuid: uuid.UUID | str | None = None, *, recording: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A valid compact CDR (answered inbound call), naming `recording` if given."""
    value = str(call_uuid or uuid.uuid4())
    document: dict[str, Any] = {
        "uuid": value,
        "clid": "79161234567",
        "clna": "",
        "dest": "84957001020",
        "dirc": "inc",
        "stti": "2026-03-02 09:15:04",
        "durs": 64,
        "bils": 58,
        "recd": recording is not None,
        "recs": 58 if recording is not None else 0,
        "rnam": recording or "",
        "rtag": "public",
        "epos": 1772432104,
        "epoa": 1772432110,
        "epoe": 1772432168,
        "wbye": "recv_bye",
        "hang": "NORMAL_CLEARING",
        "code": "200",
    }
    document.update(overrides)
    return document


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def agent_settings(
    spool: Spool,
    server: str,
    *,
    token: str = AGENT_TOKEN,
    after_success: AfterSuccess = AfterSuccess.DELETE,
    **agent: Any,
) -> AgentSettings:
    """Fast settings for tests: short settle and poll times, Moscow like the samples."""
    source = AgentSourceConfig(
        name="pbx-test",
        cdr_dir=spool.cdr,
        recordings_dir=spool.recordings,
        timezone="Europe/Moscow",
        after_success=after_success,
        archive_dir=spool.archive if after_success is AfterSuccess.ARCHIVE else None,
    )
    defaults: dict[str, Any] = {
        "server": server,
        "token": SecretStr(token),
        "sources": (source,),
        "poll_min_s": 0.02,
        "poll_max_s": 0.2,
        "settle_s": 0.05,
        "recording_wait_s": 2.0,
        "request_timeout_s": 10.0,
        "grace_period_s": 2.0,
    }
    defaults.update(agent)
    return AgentSettings(agent=AgentConfig(**defaults))


def with_source(settings: AgentSettings, **changes: Any) -> AgentSettings:
    source = replace(settings.agent.sources[0], **changes)
    return AgentSettings(agent=replace(settings.agent, sources=(source,)))


@asynccontextmanager
async def running_agent(
    settings: AgentSettings, *, notifier: Notifier | None = None
) -> AsyncIterator[Agent]:
    """The agent for the block; cancelled at the end (a hard stop, as a kill would)."""
    async with trio.open_nursery() as nursery:
        agent: Agent = await nursery.start(
            functools.partial(serve, settings, notifier=notifier or Notifier(None))
        )
        yield agent
        nursery.cancel_scope.cancel()


def server_calls(api: RunningApi) -> dict[str, dict[str, Any]]:
    """Every call on the server with its recording's sha256 (or None), by uuid."""
    rows = api.query(
        "SELECT c.uuid::text AS uuid, c.source, c.private, r.original_sha256 AS sha256, "
        "r.original_name AS recording FROM calls c LEFT JOIN recordings r ON r.call_uuid = c.uuid"
    )
    return {str(row["uuid"]): row for row in rows}
