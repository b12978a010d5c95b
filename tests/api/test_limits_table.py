"""The per-token limits' table shared by the workers (cj_api.limits_table).

Two `LimitTable`s opened on one file as two workers behave as one set of limits; the
counts of a worker that died (it never released them) are given back by
`release_worker`, and only its own.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import trio

from cj_api.limits import Limit, LimitExceeded, SharedCapacity, TokenLimits
from cj_api.limits_table import LimitTable, table_capacity


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "limits"
    LimitTable.create(path, workers=2, capacity=table_capacity(2))
    return path


def worker_tables(path: Path) -> tuple[LimitTable, LimitTable]:
    return LimitTable.open(path, 0), LimitTable.open(path, 1)


def test_two_workers_share_one_bucket(table_file: Path) -> None:
    now = [100.0]
    one, two = worker_tables(table_file)
    limit = Limit(0, 1.0, 3)
    first = TokenLimits("search", limit, clock=lambda: now[0], table=one)
    second = TokenLimits("search", limit, clock=lambda: now[0], table=two)
    first.take("reader")
    second.take("reader")
    first.take("reader")
    for limits in (first, second):
        with pytest.raises(LimitExceeded) as info:
            limits.take("reader")
        assert info.value.retry_after_s == pytest.approx(1.0)
    # Another token, another kind: their own buckets.
    second.take("pbx")
    TokenLimits("download", limit, clock=lambda: now[0], table=one).take("reader")
    now[0] += 1.5  # refilled from either side: one and a half requests
    second.take("reader")
    with pytest.raises(LimitExceeded) as info:
        first.take("reader")
    assert info.value.retry_after_s == pytest.approx(0.5)


def test_two_workers_share_one_concurrency_count(table_file: Path) -> None:
    one, two = worker_tables(table_file)
    first = TokenLimits("download", Limit(2, 0.0, 1), table=one)
    second = TokenLimits("download", Limit(2, 0.0, 1), table=two)
    with first.hold("reader"), second.admit("reader"):
        assert first.active("reader") == second.active("reader") == 2
        for limits in (first, second):
            with pytest.raises(LimitExceeded, match="at once"), limits.hold("reader"):
                pass
        with first.hold("pbx"):  # another token is not held back
            pass
    assert first.active("reader") == second.active("reader") == 0


def test_a_dead_workers_counts_are_released_and_only_its_own(table_file: Path) -> None:
    one, two = worker_tables(table_file)
    dying = TokenLimits("search", Limit(3, 0.0, 1), table=one)
    living = TokenLimits("search", Limit(3, 0.0, 1), table=two)
    # Worker 0 enters two blocks it never leaves (killed with -9 in the middle).
    held = [dying.hold("reader"), dying.hold("reader")]
    for block in held:
        block.__enter__()
    with living.hold("reader"):
        with pytest.raises(LimitExceeded), living.hold("reader"):
            pass
        supervisor = LimitTable.open(table_file, None)
        supervisor.release_worker(0)
        assert living.active("reader") == 1  # worker 1's own request still counts
        with living.hold("reader"), living.hold("reader"):
            assert living.active("reader") == 3
    assert living.active("reader") == 0


def test_export_places_are_counted_across_workers(table_file: Path) -> None:
    one, two = worker_tables(table_file)
    first = SharedCapacity("export", 2, one)
    second = SharedCapacity("export", 2, two)
    first.acquire_on_behalf_of_nowait(object())
    second.acquire_on_behalf_of_nowait(object())
    assert first.available_tokens == second.available_tokens == 0
    with pytest.raises(trio.WouldBlock):
        second.acquire_on_behalf_of_nowait(object())
    first.release_on_behalf_of(object())
    assert second.available_tokens == 1


def test_a_full_table_falls_back_to_this_process(tmp_path: Path) -> None:
    path = tmp_path / "small"
    LimitTable.create(path, workers=1, capacity=2)
    table = LimitTable.open(path, 0)
    limits = TokenLimits("search", Limit(1, 0.0, 1), table=table)
    for name in ("a", "b", "c", "d"):  # two in the table, two in memory
        with limits.hold(name), pytest.raises(LimitExceeded), limits.hold(name):
            pass
    assert table.capacity == 2


def _take_all(
    path: str, worker: int, tries: int, start: Any, answers: multiprocessing.Queue[int]
) -> None:
    limits = TokenLimits(
        "search", Limit(0, 1e-9, 10_000), table=LimitTable.open(Path(path), worker)
    )
    start.wait(timeout=60)  # a multiprocessing Barrier: both race from here
    taken = 0
    for _ in range(tries):
        try:
            limits.take("reader")
            taken += 1
        except LimitExceeded:
            pass
    answers.put(taken)


def test_processes_taking_at_once_never_overspend_the_bucket(table_file: Path) -> None:
    """Two real processes race for one bucket: together they get exactly its burst (the
    lock makes each read-modify-write whole)."""
    context = multiprocessing.get_context("spawn")
    answers: multiprocessing.Queue[int] = context.Queue()
    start = context.Barrier(2)
    racers = [
        context.Process(target=_take_all, args=(str(table_file), worker, 8_000, start, answers))
        for worker in (0, 1)
    ]
    for racer in racers:
        racer.start()
    try:
        taken = [answers.get(timeout=60) for _ in racers]
    finally:
        for racer in racers:
            racer.join(timeout=10)
            if racer.is_alive():
                racer.kill()
    assert sum(taken) == 10_000
    assert min(taken) >= 2_000  # each tries 8,000 times: both took part


def test_a_worker_slot_outside_the_table_is_refused(table_file: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        LimitTable.open(table_file, 2)
