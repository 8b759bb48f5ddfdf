"""Clocks the agent runs on: the system clock, an accelerated simulated clock, a manual one. I/O (time).

`now()` is event time (UTC); `speed` is event seconds per real second, which the run loop uses
to turn "due in 15 s of event time" into a real sleep.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> datetime: ...


class SystemClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock:
    """Simulated time: starts at `start` and runs `speed` times faster than the real clock.

    With `not_after_now`, it never passes the real time (UTC): a simulation of the past that
    falls behind on a loaded machine then waits for the present instead of sending events that a
    receiver must reject as `future_time` (SPEC §3: more than 300 s ahead of its clock)."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0, *, not_after_now: bool = False) -> None:
        self.start = start or datetime.now(UTC)
        self.speed = speed
        self.not_after_now = not_after_now
        self._real0 = time.monotonic()

    def now(self) -> datetime:
        simulated = self.start + timedelta(seconds=(time.monotonic() - self._real0) * self.speed)
        if self.not_after_now:
            return min(simulated, datetime.now(UTC))
        return simulated


class ManualClock:
    """Time that moves only when told (tests, and generating events as fast as possible)."""

    speed = float("inf")

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now
