"""The linkedid assembler of tailed files: when calls are sent and how far offsets commit."""

from __future__ import annotations

from cj_agent.assemble import CallAssembler


def test_a_call_is_due_after_settle_and_the_offset_waits_for_its_ack() -> None:
    assembler = CallAssembler(settle_s=5, linger_s=60)
    assembler.add("a", b"a1", "A1", 0, 10, now=0)
    assert assembler.due(now=4) == []
    assert assembler.commit_offset(10, now=4) == 0
    [call] = assembler.due(now=5)
    assert call.records() == ["A1"] and assembler.due(now=6) == []  # in flight once
    assembler.sent(call)
    # Acknowledged but lingering: a late leg may still come, so the offset is held.
    assert assembler.commit_offset(10, now=30) == 0
    assert assembler.commit_offset(10, now=60) == 10
    assert assembler.close_quiet(now=60, read_position=10) == 1 and assembler.calls == {}


def test_a_late_leg_resends_the_call_with_every_leg() -> None:
    assembler = CallAssembler(settle_s=1, linger_s=60)
    assembler.add("a", b"a1", "A1", 0, 10, now=0)
    [call] = assembler.due(now=1)
    assembler.sent(call)
    assert assembler.add("a", b"a1", "A1", 0, 10, now=2) is False  # read again: no change
    assert assembler.due(now=10) == []
    assembler.add("a", b"a2", "A2", 10, 20, now=11)
    [again] = assembler.due(now=12)
    assert again.records() == ["A1", "A2"]


def test_a_failed_send_is_due_again() -> None:
    assembler = CallAssembler(settle_s=1, linger_s=1)
    assembler.add("a", b"a1", "A1", 0, 10, now=0)
    [call] = assembler.due(now=1)
    assembler.sent(call, ok=False)
    assert assembler.due(now=1) == [call]


def test_the_offset_never_splits_a_call() -> None:
    # a1, b1, a2: a is done and quiet, b is pending. Resuming at b1 would re-read a2
    # without a1 and overwrite call a with one leg, so the offset goes back to a1.
    assembler = CallAssembler(settle_s=1, linger_s=1)
    assembler.add("a", b"a1", "A1", 0, 10, now=0)
    assembler.add("b", b"b1", "B1", 10, 20, now=0)
    assembler.add("a", b"a2", "A2", 20, 30, now=0)
    a = assembler.calls["a"]
    assembler.due(now=0, flush=True)
    assembler.sent(a)
    assert assembler.commit_offset(30, now=5) == 0
    b = assembler.calls["b"]
    assembler.sent(b)
    assert assembler.commit_offset(30, now=5) == 30


def test_a_backlog_is_counted_in_lines_too() -> None:
    assembler = CallAssembler(settle_s=60, linger_s=600, settle_lines=2, linger_lines=4)
    for n in range(6):
        assembler.add(str(n), f"l{n}".encode(), n, n * 10, n * 10 + 10, now=0)
    due = assembler.due(now=0)
    assert [call.key for call in due] == ["0", "1", "2", "3"]  # two lines came after each
    for call in due:
        assembler.sent(call)
    assert assembler.close_quiet(now=0, read_position=60) == 2  # four lines after 0 and 1
    assert assembler.commit_offset(60, now=0) == 20


def test_flush_sends_everything_unsent() -> None:
    assembler = CallAssembler(settle_s=60, linger_s=60)
    assembler.add("a", b"a1", "A1", 0, 10, now=0)
    assert [call.key for call in assembler.due(now=0, flush=True)] == ["a"]
    assert assembler.next_event(now=0) is None  # in flight
