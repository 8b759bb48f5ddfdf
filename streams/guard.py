"""The dead-letter guard: stop a worker whose stream suddenly turns to dead letters. Pure.

A bad device catalogue, price book or signing-key roll-out makes every event a reject; without a
guard the worker would send the whole stream to the dead-letter topic and commit it. The guard
looks at the reject ratio over the last `window` events (whole batches, newest first):

* ratio <= `limit`: commit as usual;
* ratio > `limit` and fewer than `window` events seen since start: hold the commit (the batch is
  written, its offsets are committed later with the next healthy batch, or never);
* ratio > `limit` over a full window: raise `DeadLetterLimitExceeded` before the batch has any
  effect: the worker stops and nothing held is committed, so after the fix a restart reads the
  stream again.

Settings: `SURPLUS_DEADLETTER_LIMIT` (ratio, default 0.5; 1 turns the guard off) and
`SURPLUS_DEADLETTER_WINDOW` (events, default 10,000).
"""

from __future__ import annotations

from collections import Counter, deque

from surplus.errors import WorkerStop

DEFAULT_LIMIT = 0.5
DEFAULT_WINDOW = 10_000


class DeadLetterLimitExceeded(WorkerStop):
    """Too many rejects over the window: the worker stops without committing (one line)."""


class DeadLetterGuard:
    """Reject ratio over a sliding window of events; `observe` says commit, hold, or raises."""

    def __init__(self, limit: float = DEFAULT_LIMIT, window: int = DEFAULT_WINDOW) -> None:
        if not 0 < limit <= 1:
            raise ValueError("the dead-letter limit is a ratio in (0, 1]")
        if window < 1:
            raise ValueError("the dead-letter window is at least one event")
        self.limit = limit
        self.window = window
        self._batches: deque[tuple[int, int, Counter[str]]] = deque()
        self.events = 0  # in the window
        self.rejected = 0
        self.seen = 0  # since start

    def observe(self, events: int, rejected: Counter[str]) -> bool:
        """Count one batch (`events` records, `rejected` by reason). True: commit it (and what is
        held); False: hold its commit. DeadLetterLimitExceeded past the limit over a full window."""
        dead = sum(rejected.values())
        self._batches.append((events, dead, rejected))
        self.events += events
        self.rejected += dead
        self.seen += events
        while len(self._batches) > 1 and self.events - self._batches[0][0] >= self.window:
            old_events, old_dead, _ = self._batches.popleft()
            self.events -= old_events
            self.rejected -= old_dead
        if self.events == 0 or self.rejected / self.events <= self.limit:
            return True
        if self.seen < self.window:
            return False
        reasons: Counter[str] = Counter()
        for _, _, counts in self._batches:
            reasons.update(counts)
        top = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common(3))
        raise DeadLetterLimitExceeded(
            f"dead-letter guard: {self.rejected} of the last {self.events} events were rejected "
            f"({self.rejected / self.events:.0%}, over SURPLUS_DEADLETTER_LIMIT={self.limit:g}; {top}); "
            "stopping without committing them: check the device catalogue, the price book and the "
            "signing keys, then restart the worker"
        )
