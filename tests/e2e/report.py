"""A pytest plugin: figures of the reliability tests, written to docs/reliability.md.

Tests record what they measured through the `reliability` fixture:

    reliability.record("kill -9 the API", kind="fault", summary="…", **report.figures())

At the end of the session, when `CJ_TEST_RELIABILITY_REPORT` names a file (`make
test-long` sets it to docs/reliability.md), the figures of every test that recorded
some, with its outcome, are written there as Markdown. Other runs write nothing, so
the fast suite never rewrites the document.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPORT_ENV = "CJ_TEST_RELIABILITY_REPORT"
KINDS = ("pipeline", "fault", "load", "hostile")
# Tests whose failure must show in the document even when they recorded nothing.
RELIABILITY_TESTS = ("tests/e2e/", "tests/hostile/")


@dataclass
class Entry:
    nodeid: str
    scenario: str
    kind: str
    summary: str
    figures: dict[str, Any]


@dataclass
class ReliabilityLog:
    """Everything recorded in this session, and how each test ended."""

    entries: list[Entry] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


LOG_KEY = pytest.StashKey[ReliabilityLog]()
_SEVERITY = ("passed", "skipped", "failed")


class Recorder:
    """The `reliability` fixture: records figures under the current test."""

    def __init__(self, log: ReliabilityLog, nodeid: str) -> None:
        self._log = log
        self._nodeid = nodeid

    def record(self, scenario: str, *, kind: str, summary: str = "", **figures: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self._log.entries.append(Entry(self._nodeid, scenario, kind, summary, dict(figures)))

    def outcomes(self, test_name: str) -> dict[str, str]:
        """How the tests of this module named `test_name` (every parametrization) ended."""
        prefix = f"{self._nodeid.split('::')[0]}::{test_name}"
        return {
            nodeid: outcome
            for nodeid, outcome in self._log.outcomes.items()
            if nodeid == prefix or nodeid.startswith(prefix + "[")
        }


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    """Record this test's figures for docs/reliability.md (see the module docs)."""
    return Recorder(request.config.stash[LOG_KEY], request.node.nodeid)


def pytest_configure(config: pytest.Config) -> None:
    log = ReliabilityLog()
    config.stash[LOG_KEY] = log
    config.pluginmanager.register(_Collector(log), "cj-reliability-collector")


class _Collector:
    """Notes how each test ended, and writes the document at the end of the session."""

    def __init__(self, log: ReliabilityLog) -> None:
        self.log = log

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        log = self.log
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report.outcome
        elif report.when == "teardown" and report.failed:
            outcome = "failed"
        else:
            return
        # Items may share a node id (schemathesis' operations do): the worst one counts.
        previous = log.outcomes.get(report.nodeid, "passed")
        log.outcomes[report.nodeid] = max(previous, outcome, key=_SEVERITY.index)
        log.durations[report.nodeid] = log.durations.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get(REPORT_ENV, "").strip()
        if not target or not self.log.entries:
            return
        rootpath = Path(session.config.rootpath)
        path = Path(target) if Path(target).is_absolute() else rootpath / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(self.log, rootpath=rootpath), encoding="utf-8")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"reliability figures written to {path}")


# --- rendering -----------------------------------------------------------------------


def render(log: ReliabilityLog, *, rootpath: Path) -> str:
    """docs/reliability.md from the session's figures."""
    entries = log.entries
    outcome = {e.nodeid: log.outcomes.get(e.nodeid, "not run") for e in entries}
    faults = [e for e in entries if e.kind in ("pipeline", "fault")]
    lossless = all(
        outcome[e.nodeid] == "passed"
        and e.figures.get("calls_lost", 0) == 0
        and e.figures.get("recordings_lost", 0) == 0
        and e.figures.get("calls_duplicated", 0) == 0
        and e.figures.get("recordings_duplicated", 0) == 0
        for e in faults
    )
    recorded = {e.nodeid for e in entries}
    unrecorded = sorted(
        (nodeid, result)
        for nodeid, result in log.outcomes.items()
        if nodeid.startswith(RELIABILITY_TESTS) and result != "passed" and nodeid not in recorded
    )
    if any(nodeid.startswith("tests/e2e/") for nodeid, _ in unrecorded):
        lossless = False  # a scenario that failed before it could count is not lossless
    passed = sum(1 for e in entries if outcome[e.nodeid] == "passed")
    lines = [
        "# Reliability figures",
        "",
        "Written by `make test-long` (`pytest -m slow`, the tests in `tests/e2e/` and",
        "`tests/hostile/`); do not edit by hand. The daemons run as separate processes on",
        "real PostgreSQL and SeaweedFS, with the PostgreSQL job queue.",
        "",
        f"- Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit(rootpath)}, "
        f"{os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"{time.monotonic() - log.started:.0f} s in all",
        f"- Scenarios: {passed} of {len(entries) + len(unrecorded)} passed",
        f"- **Zero loss across every end-to-end and fault scenario: "
        f"{'yes' if lossless and faults else 'NO'}** "
        "(no call or recording lost, none duplicated)",
        "",
    ]
    if unrecorded:
        lines += ["## Tests that failed before recording figures", ""]
        lines += [f"- `{nodeid}`: {result}" for nodeid, result in unrecorded]
        lines += [""]
    if faults:
        lines += _loss_table(faults, outcome)
    loads = [e for e in entries if e.kind == "load"]
    if loads:
        lines += _load_table(loads, outcome)
    hostile = [e for e in entries if e.kind == "hostile"]
    if hostile:
        lines += _hostile_table(hostile, outcome)
    lines += [
        "## Reproduce",
        "",
        "    make test-long          # all of the above; rewrites this file",
        "    .venv/bin/pytest tests/e2e tests/hostile -m 'not slow'   # the quick versions",
        "",
    ]
    return "\n".join(lines)


def _loss_table(entries: list[Entry], outcome: dict[str, str]) -> list[str]:
    lines = [
        "## End to end, and faults injected while it runs",
        "",
        "| scenario | result | calls dropped / found / lost / duplicated "
        "| recordings dropped / stored / lost / duplicated | checks | what happened |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        f = e.figures
        calls = (
            f"{f.get('calls_expected', 0)} / {f.get('calls_found', 0)} / "
            f"{f.get('calls_lost', 0)} / {f.get('calls_duplicated', 0)}"
        )
        recordings = (
            f"{f.get('recordings_expected', 0)} / {f.get('recordings_stored', 0)} / "
            f"{f.get('recordings_lost', 0)} / {f.get('recordings_duplicated', 0)}"
        )
        checks = (
            f"{f.get('searches', 0)} searches, {f.get('downloads_verified', 0)} MP3s decoded, "
            f"{f.get('private_refused', 0)} private refused"
        )
        lines.append(
            f"| {e.scenario} | {outcome[e.nodeid]} | {calls} | {recordings} | {checks} "
            f"| {_cell(e.summary)} |"
        )
    lines += [
        "",
        "Every row also checks: each recording is a stereo MP3 within 30 ms of its WAV, "
        "downloadable over REST (private ones refused: 403 and PERMISSION_DENIED); the "
        "spools are empty; no temporary WAV is left; no recording is left `uploaded`, "
        "`encoding` or `failed`; the jobs table is drained.",
        "",
    ]
    return lines


def _load_table(entries: list[Entry], outcome: dict[str, str]) -> list[str]:
    lines = [
        "## Load: agents pushing calls while clients search",
        "",
        "| scenario | result | agents | calls (with recording) | searchers | ingest | calls/s "
        "| searches | p50 / p99 REST | p50 / p99 gRPC | p99 all (target ≤ 100 ms) "
        "| server-side p50 / p99 REST · gRPC | same searches idle p50 / p99 | errors "
        "| load average at start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        f = e.figures
        target = "met" if f.get("p99_ms", 1e9) <= 100 else "**not met**"
        lines.append(
            f"| {e.scenario} | {outcome[e.nodeid]} | {f.get('agents')} "
            f"| {f.get('calls_expected')} ({f.get('recordings_expected')}) "
            f"| {f.get('searchers')} | {f.get('ingest_s', 0):.1f} s "
            f"| {f.get('calls_per_s', 0):.0f} | {f.get('load_searches')} "
            f"| {_ms(f, 'p50_rest_ms')} / {_ms(f, 'p99_rest_ms')} "
            f"| {_ms(f, 'p50_grpc_ms')} / {_ms(f, 'p99_grpc_ms')} "
            f"| {_ms(f, 'p99_ms')}, {target} "
            f"| {_ms(f, 'p50_rest_server_ms')} / {_ms(f, 'p99_rest_server_ms')} · "
            f"{_ms(f, 'p50_grpc_server_ms')} / {_ms(f, 'p99_grpc_server_ms')} "
            f"| {_ms(f, 'p50_idle_ms')} / {_ms(f, 'p99_idle_ms')} | {f.get('errors')} "
            f"| {f.get('loadavg_before', '–')} |"
        )
    lines += [
        "",
        "Latencies are measured on the one machine that also runs PostgreSQL, SeaweedFS, "
        "cj-api, cj-encoder, the agents and the clients (and whatever else was running: see "
        "the load average); the server-side and idle columns separate the API's own time "
        "from waiting for a CPU. Server-side REST is the API's log of each request; gRPC "
        "is estimated from the `cj_api_request_duration_seconds` buckets of a scrape after "
        "the load (summed over the API's workers).",
        "",
    ]
    for e in entries:
        if e.summary:
            lines += [f"- {e.scenario}: {e.summary}"]
    lines += [""]
    return lines


def _ms(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key)
    return "–" if value is None else f"{value:.1f} ms"


def _hostile_table(entries: list[Entry], outcome: dict[str, str]) -> list[str]:
    lines = [
        "## Hostile input",
        "",
        "| test | result | figures | what it shows |",
        "|---|---|---|---|",
    ]
    for e in entries:
        figures = ", ".join(f"{k} {v}" for k, v in e.figures.items())
        lines.append(f"| {e.scenario} | {outcome[e.nodeid]} | {figures} | {_cell(e.summary)} |")
    lines += [""]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _commit(rootpath: Path) -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(rootpath), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha or "unknown"
