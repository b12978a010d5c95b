"""docs/reliability.md is only as honest as its rendering: test the verdicts it prints."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.report import Entry, ReliabilityLog, render

CLEAN = {
    "calls_expected": 10,
    "calls_found": 10,
    "calls_lost": 0,
    "calls_duplicated": 0,
    "recordings_expected": 5,
    "recordings_stored": 5,
    "recordings_lost": 0,
    "recordings_duplicated": 0,
}


def log_of(*entries: tuple[Entry, str], failed: tuple[str, ...] = ()) -> ReliabilityLog:
    log = ReliabilityLog()
    for entry, outcome in entries:
        log.entries.append(entry)
        log.outcomes[entry.nodeid] = outcome
    for nodeid in failed:
        log.outcomes[nodeid] = "failed"
    return log


def fault(nodeid: str, **figures: int) -> Entry:
    return Entry(nodeid, nodeid.split("::")[-1], "fault", "what happened", {**CLEAN, **figures})


def test_all_clean_says_zero_loss() -> None:
    text = render(log_of((fault("tests/e2e/test_faults.py::a"), "passed")), rootpath=Path())
    assert "Zero loss across every end-to-end and fault scenario: yes" in text
    assert "| a | passed | 10 / 10 / 0 / 0 | 5 / 5 / 0 / 0 |" in text


def test_a_lost_recording_says_no() -> None:
    log = log_of(
        (fault("tests/e2e/test_faults.py::a"), "passed"),
        (fault("tests/e2e/test_faults.py::b", recordings_lost=1), "passed"),
    )
    assert "scenario: NO**" in render(log, rootpath=Path())


def test_a_scenario_that_failed_before_recording_says_no_and_is_listed() -> None:
    log = log_of(
        (fault("tests/e2e/test_faults.py::a"), "passed"),
        failed=("tests/e2e/test_faults.py::test_encoder_killed",),
    )
    text = render(log, rootpath=Path())
    assert "scenario: NO**" in text
    assert "`tests/e2e/test_faults.py::test_encoder_killed`: failed" in text
    assert "Scenarios: 1 of 2 passed" in text


def test_load_target_is_judged() -> None:
    figures = {"p99_ms": 140.0, "p50_ms": 20.0, "agents": 8, "errors": 0}
    log = log_of((Entry("tests/e2e/test_load.py::x", "load", "load", "", figures), "passed"))
    assert "140.0 ms, **not met**" in render(log, rootpath=Path())
