"""The dead-letter guard's arithmetic: commit, hold, stop (streams/guard.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.guard import DeadLetterGuard, DeadLetterLimitExceeded


def test_a_healthy_stream_commits_every_batch() -> None:
    guard = DeadLetterGuard(limit=0.5, window=100)
    for _ in range(50):
        assert guard.observe(10, Counter(schema=2)) is True


def test_a_poisoned_start_is_held_then_stops_once_the_window_is_full() -> None:
    guard = DeadLetterGuard(limit=0.5, window=100)
    assert guard.observe(50, Counter(schema=50)) is False  # held: too few events to judge
    with pytest.raises(DeadLetterLimitExceeded) as err:
        guard.observe(50, Counter(schema=30, bad_signature=20))
    message = str(err.value)
    assert "100 of the last 100 events" in message and "SURPLUS_DEADLETTER_LIMIT=0.5" in message
    assert "schema 80" in message and "bad_signature 20" in message and "\n" not in message
    assert err.value.exit_code != 0


def test_a_held_start_is_released_when_the_stream_recovers() -> None:
    guard = DeadLetterGuard(limit=0.5, window=100)
    assert guard.observe(10, Counter(schema=10)) is False
    assert guard.observe(40, Counter()) is True  # 10 of 50: commit, the held offsets with it


def test_the_window_slides_over_whole_batches() -> None:
    guard = DeadLetterGuard(limit=0.5, window=100)
    for _ in range(10):
        assert guard.observe(100, Counter())
    with pytest.raises(DeadLetterLimitExceeded):
        guard.observe(100, Counter(unknown_device=60))  # the old healthy batches have left the window


def test_limit_one_never_stops() -> None:
    guard = DeadLetterGuard(limit=1, window=10)
    for _ in range(5):
        assert guard.observe(10, Counter(schema=10))


@given(st.lists(st.tuples(st.integers(1, 500), st.floats(0, 1)), min_size=1, max_size=40))
def test_it_stops_only_past_the_limit_over_a_full_window(batches: list[tuple[int, float]]) -> None:
    guard = DeadLetterGuard(limit=0.5, window=1000)
    for n, share in batches:
        dead = int(n * share)
        try:
            guard.observe(n, Counter(schema=dead) if dead else Counter())
        except DeadLetterLimitExceeded:
            assert guard.seen >= guard.window and guard.rejected / guard.events > 0.5
            return
        assert guard.events >= min(guard.seen, guard.window) or guard.events == guard.seen
