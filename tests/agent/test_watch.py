"""Polling logic: the idle backoff, settle detection and one scan over real files."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from cj_agent.watch import IdlePoll, SettleTracker, compile_patterns, scan_directory

JSON = compile_patterns(("*.json",))


def test_idle_poll_backs_off_while_idle_and_snaps_back_on_activity() -> None:
    poll = IdlePoll(0.5, 30.0)
    idle = [poll.next_interval(busy=False) for _ in range(9)]
    assert idle == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert poll.next_interval(busy=True) == 0.5
    assert poll.next_interval(busy=False) == 1.0


@pytest.mark.parametrize(("floor", "ceiling"), [(0, 1), (2, 1), (-1, 5)])
def test_idle_poll_refuses_bad_bounds(floor: float, ceiling: float) -> None:
    with pytest.raises(ValueError, match="floor"):
        IdlePoll(floor, ceiling)


def test_a_file_is_ready_once_unchanged_for_the_settle_time() -> None:
    tracker = SettleTracker(settle_s=2.0, capacity=10)
    assert tracker.observe("a", 10, 1, now=0.0) is False  # new: activity
    assert tracker.observe("a", 10, 1, now=1.9) is None  # unchanged, not yet
    assert tracker.observe("a", 20, 2, now=2.5) is False  # grew: starts over
    assert tracker.observe("a", 20, 2, now=4.4) is None
    assert tracker.observe("a", 20, 3, now=4.5) is False  # touched (mtime) counts too
    assert tracker.observe("a", 20, 3, now=6.5) is True


def test_zero_settle_time_means_ready_at_first_sight() -> None:
    tracker = SettleTracker(settle_s=0, capacity=10)
    assert tracker.observe("a", 1, 1, now=0.0) is True


def test_tracker_forgets_files_not_seen_in_a_scan_and_respects_capacity() -> None:
    tracker = SettleTracker(settle_s=1.0, capacity=2)
    tracker.begin_scan()
    assert tracker.observe("a", 1, 1, 0.0) is False
    assert tracker.observe("b", 1, 1, 0.0) is False
    assert tracker.observe("c", 1, 1, 0.0) is None  # no room: not tracked
    tracker.end_scan()
    assert len(tracker) == 2 and "c" not in tracker
    tracker.begin_scan()
    tracker.observe("b", 1, 1, 0.5)
    tracker.end_scan()  # "a" disappeared
    assert "a" not in tracker and "b" in tracker


def test_scan_sees_a_growing_file_as_unready(tmp_path: Path) -> None:
    tracker = SettleTracker(settle_s=2.0, capacity=100)
    path = tmp_path / "call.json"
    path.write_text('{"uuid": ')
    first = scan_directory(tmp_path, JSON, tracker, 0.0, limit=10)
    assert first.ready == [] and first.settling == 1 and first.changed
    with path.open("a") as file:
        file.write('"abc"}')
    grown = scan_directory(tmp_path, JSON, tracker, 1.5, limit=10)
    assert grown.ready == [] and grown.changed  # still being written
    quiet = scan_directory(tmp_path, JSON, tracker, 3.0, limit=10)
    assert quiet.ready == [] and not quiet.changed and quiet.busy  # settling
    assert scan_directory(tmp_path, JSON, tracker, 3.5, limit=10).ready == ["call.json"]
    assert "call.json" not in tracker  # handed over


def test_scan_filters_by_pattern_type_and_skip_list(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "c.wav").write_bytes(b"RIFF")
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "d.json").write_text("{}")
    (tmp_path / "dir.json").mkdir()
    tracker = SettleTracker(settle_s=0, capacity=100)
    result = scan_directory(tmp_path, JSON, tracker, 0.0, skip={"b.json"}, limit=10)
    assert result.ready == ["a.json"]


def test_scan_hands_out_at_most_limit_and_says_there_is_more(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"{i}.json").write_text("{}")
    tracker = SettleTracker(settle_s=0, capacity=100)
    first = scan_directory(tmp_path, JSON, tracker, 0.0, limit=2)
    assert len(first.ready) == 2 and first.more
    second = scan_directory(tmp_path, JSON, tracker, 0.0, skip=set(first.ready), limit=10)
    assert sorted(first.ready + second.ready) == [f"{i}.json" for i in range(5)]
    assert not second.more


def test_scan_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    tracker = SettleTracker(settle_s=0, capacity=10)
    result = scan_directory(tmp_path / "nope", JSON, tracker, 0.0, limit=10)
    assert result.ready == [] and not result.busy


def _peak_scan_memory(directory: Path, files: int) -> int:
    for i in range(files):
        (directory / f"{i:06d}-0a6d4f18-77c2-4d0e-b1a9-93f5e8c4d333.json").touch()
    tracker = SettleTracker(settle_s=2.0, capacity=500)
    tracemalloc.start()
    try:
        for now in (0.0, 1.0, 3.0):  # observe, settle, hand out a batch
            result = scan_directory(directory, JSON, tracker, now, limit=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.ready) == 256 and result.more
    return peak


def test_memory_stays_flat_as_the_backlog_grows(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    peak_small = _peak_scan_memory(small, 1_000)
    peak_large = _peak_scan_memory(large, 10_000)
    # Ten times the files, about the same memory: only `capacity` files are tracked.
    assert peak_large < peak_small * 1.3 + 64 * 1024, (peak_small, peak_large)


@pytest.mark.slow
def test_memory_with_100k_files_waiting(tmp_path: Path) -> None:
    peak = _peak_scan_memory(tmp_path, 100_000)
    assert peak < 1024 * 1024, peak
    assert sum(1 for _ in tmp_path.iterdir()) == 100_000
