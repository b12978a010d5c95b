"""The body rules (cj.bodyrate), without I/O."""

from __future__ import annotations

import math

import pytest

from cj.bodyrate import BodyClock, BodyLimits

LIMITS = BodyLimits(idle_timeout_s=60, min_rate_bytes_per_s=1000, rate_grace_s=10, timeout_s=600)


def test_a_silent_body_is_due_at_the_end_of_the_grace_window() -> None:
    clock = BodyClock(LIMITS, started=100.0)
    assert clock.deadline == 110.0
    assert "too slow" in clock.reason(110.0)


def test_a_trickle_is_cut_once_its_average_falls_below_the_minimum() -> None:
    clock = BodyClock(LIMITS, started=0.0)
    for second in range(0, 100, 20):  # a byte every 20 s, as in the issue
        clock.receive(1, float(second))
    assert clock.deadline == 10.0  # 5 bytes are not even 10 s worth at 1000 B/s
    assert "5 bytes" in clock.reason(80.0)


def test_a_fast_body_may_pause_up_to_the_idle_timeout() -> None:
    clock = BodyClock(LIMITS, started=0.0)
    clock.receive(10_000_000, 5.0)  # 10 MB: the rate rule is 10,000 s away
    assert clock.deadline == 65.0
    assert "nothing received for 60 s" in clock.reason(65.0)


def test_the_total_time_bounds_every_body() -> None:
    clock = BodyClock(LIMITS, started=0.0)
    clock.receive(10**12, 590.0)
    assert clock.deadline == 600.0
    assert "longer than 600 s" in clock.reason(600.0)


def test_without_a_rate_rule_only_idle_and_total_apply() -> None:
    limits = BodyLimits(idle_timeout_s=5, min_rate_bytes_per_s=0, timeout_s=math.inf)
    assert BodyClock(limits, started=0.0).deadline == 5.0


@pytest.mark.parametrize(
    "bad",
    [
        {"idle_timeout_s": 0},
        {"timeout_s": -1},
        {"min_rate_bytes_per_s": -1},
        {"rate_grace_s": math.inf},
    ],
)
def test_nonsense_limits_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BodyLimits(**bad)
