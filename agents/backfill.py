"""History for a simulated fleet: days of past events, fast, through the agents' real outbox. Wiring.

`backfill(fleet, outbox, start, end)` simulates every DC of the fleet from `start` to `end` (past
times) with coarse cadences (capacity every 30 min, power hourly: `HISTORY_INTERVALS`) and
no metered jobs (history is for the forecast and the energy figures, not the ledger), and puts the
events through the outbox — spool, producer, Kafka — so the workers store them like live
telemetry. 21 days of a 48-DC fleet are about 170 000 events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from agents.collectors.simulator import SimulatedDataCenter
from agents.fleet import SimDC
from agents.outbox import Outbox
from agents.settings import Intervals

HISTORY_INTERVALS = Intervals(capacity_s=1800, power_s=3600, heartbeat_s=3600, jobs_s=3600)
CHUNK = timedelta(days=1)
MAX_BACKLOG = 100_000  # events (about 70 MB of spool)


def without_jobs(dc: SimDC) -> SimDC:
    """The same DC with no metered jobs: allocation follows the pool's curve as reserved use."""
    pools = [p.model_copy(update={"metered_share": 0.0}) for p in dc.sim.pools]
    return SimDC(dc.dc, dc.sim.model_copy(update={"pools": pools}))


def backfill(fleet: Sequence[SimDC], outbox: Outbox, start: datetime, end: datetime, *,
             intervals: Intervals = HISTORY_INTERVALS,
             progress: Callable[[datetime, int], None] | None = None, drain_timeout_s: float = 300) -> int:
    """Simulate [start, end) for every DC, a day at a time, and spool and publish it; the events
    published. Whenever more than `MAX_BACKLOG` events wait in the spool it drains first, so the
    spool never overflows. Raises TimeoutError when a drain takes over `drain_timeout_s`."""
    if end <= start:
        return 0
    sims = [SimulatedDataCenter(d.dc, d.sim, intervals, start=start) for d in map(without_jobs, fleet)]
    total = 0
    t = start
    while t < end:
        upto = min(end, t + CHUNK)
        for sim in sims:
            events = sim.events_between(t, upto)
            if events:
                outbox.put(events)
                total += len(events)
            outbox.pump()
        if (outbox.backlog > MAX_BACKLOG or upto >= end) and not outbox.drain(drain_timeout_s):
            raise TimeoutError(f"history up to {upto.isoformat()} not delivered in {drain_timeout_s:.0f} s")
        t = upto
        if progress is not None:
            progress(t, total)
    return total
