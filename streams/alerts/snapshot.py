"""What the alert rules read at one evaluation, and the stream clock. Pure (no clock, no I/O).

`streams.alerts.reads` fills a `Snapshot` from the store with bounded queries; `rules` reads it.
`needs(rules, now, wall)` says which windows those queries cover, so each rule reads only
the hour, the minute or the window it judges. The stream clock (`StreamClock.advance`) is the
newest event time in the store while events flow, and the wall clock once no newer event has
arrived for `idle_after_s` (docs/alerts.md, "Event time").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.alerts.config import (
    DcSilent,
    DeadletterRateAbove,
    GreenShareBelow,
    PueAbove,
    RulesFile,
    SpoolAtRisk,
    SurplusAbove,
    SurplusBelow,
    UnpricedUsage,
)

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# unpriced entries are read this much further back than `clear_after_s`, so that the end of
# unpriced usage is seen (and its alert resolved) even after the evaluator was down a while
UNPRICED_LOOKBACK = timedelta(hours=24)

# a heartbeat up to this far ahead of the stream clock is read (a DC's clock ahead of the others';
# SPEC §3 rejects `future_time` past 300 s ahead of the receiver)
SPOOL_FUTURE = timedelta(seconds=300)

# (facility_kwh, it_kwh, green_kwh) of one DC in one hour
Energy = tuple[float, float, float]
# idle PFLOPS (fp16, fp32, fp64)
Idle = tuple[float, float, float]


def utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def hour_of(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def minute_of(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def energy_hour(rule: GreenShareBelow | PueAbove, now: datetime) -> datetime:
    """The latest hour that closed `settle_s` before `now`."""
    return hour_of(now - timedelta(seconds=rule.settle_s)) - HOUR


def surplus_minute(rule: SurplusAbove | SurplusBelow, now: datetime) -> datetime:
    """The snapshot minute a surplus rule judges: the latest whole minute `settle_s` before now."""
    return minute_of(now - timedelta(seconds=rule.settle_s))


@dataclass(frozen=True, slots=True)
class Needs:
    """The windows one evaluation reads (all bounded)."""

    silence: bool = False  # when each DC last spoke (`agent_freshness`: one row per DC)
    energy_hours: frozenset[datetime] = frozenset()
    national_minutes: frozenset[datetime] = frozenset()
    hub_minutes: frozenset[datetime] = frozenset()
    deadletter_windows_s: frozenset[float] = frozenset()
    unpriced_since: datetime | None = None
    spool_windows_s: frozenset[float] = frozenset()  # heartbeats of each DC, per window


def needs(rules: RulesFile, now: datetime, wall: datetime) -> Needs:
    """Which hours, minutes and windows the rules judge at stream time `now`, wall time `wall`."""
    silence = False
    unpriced: datetime | None = None
    energy_hours: set[datetime] = set()
    national_minutes: set[datetime] = set()
    hub_minutes: set[datetime] = set()
    deadletter: set[float] = set()
    spool: set[float] = set()
    for rule in rules.rule:
        if isinstance(rule, DcSilent):
            silence = True
        elif isinstance(rule, GreenShareBelow | PueAbove):
            energy_hours.add(energy_hour(rule, now))
        elif isinstance(rule, SurplusAbove | SurplusBelow):
            (hub_minutes if rule.scope == "hub" else national_minutes).add(surplus_minute(rule, now))
        elif isinstance(rule, DeadletterRateAbove):
            deadletter.add(rule.window_s)
        elif isinstance(rule, UnpricedUsage):
            since = now - timedelta(seconds=rule.clear_after_s) - UNPRICED_LOOKBACK
            unpriced = since if unpriced is None else min(unpriced, since)
        elif isinstance(rule, SpoolAtRisk):
            spool.add(rule.window_s)
    return Needs(silence, frozenset(energy_hours), frozenset(national_minutes),
                 frozenset(hub_minutes), frozenset(deadletter), unpriced, frozenset(spool))


@dataclass(frozen=True, slots=True)
class Counts:
    """Events in and rejected over a window of wall time, summed over every worker."""

    events: int
    rejected: int


@dataclass(frozen=True, slots=True)
class SpoolTrend:
    """One DC's heartbeats in the `window_s` up to its own latest one (its clock, so a DC whose
    clock is off from the others' is judged on its own timeline): their count `n`, and the sums
    of x (seconds before the latest heartbeat, <= 0), y (`spool_backlog_events`), x*x and x*y,
    from which `growth_per_s` is the least-squares slope; `backlog` and `last` are the latest
    heartbeat's. A duplicated heartbeat (the same `event_id`) counts once."""

    n: int
    sx: float
    sy: float
    sxx: float
    sxy: float
    span_s: float  # from the earliest heartbeat in the window to the latest
    backlog: int
    last: datetime

    @property
    def growth_per_s(self) -> float | None:
        """d backlog / dt in events per second; None from one heartbeat (or one instant)."""
        if self.n < 2 or self.span_s <= 0:
            return None
        spread = self.n * self.sxx - self.sx * self.sx
        return (self.n * self.sxy - self.sx * self.sy) / spread if spread > 0 else None

    @classmethod
    def of(cls, beats: list[tuple[datetime, int]], window_s: float) -> SpoolTrend | None:
        """The trend of (event time, spool_backlog_events) heartbeats, as `StoreReads.spool`
        computes it in SQL (the reference for it); None without heartbeats."""
        if not beats:
            return None
        last, backlog = max(beats)
        xs = [((t - last).total_seconds(), float(b)) for t, b in set(beats)
              if (last - t).total_seconds() < window_s]
        return cls(n=len(xs), sx=sum(x for x, _ in xs), sy=sum(y for _, y in xs),
                   sxx=sum(x * x for x, _ in xs), sxy=sum(x * y for x, y in xs),
                   span_s=-min(x for x, _ in xs), backlog=backlog, last=last)


@dataclass(frozen=True)
class Snapshot:
    """The store as the rules see it at stream time `now` (and wall time `wall`)."""

    now: datetime
    wall: datetime
    started_at: datetime  # when this evaluator started (the dead-letter rule's history)
    hubs: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    # hour -> dc_id -> energy sums
    energy: dict[datetime, dict[str, Energy]] = field(default_factory=dict)
    # minute -> idle PFLOPS, nationally and per hub
    national: dict[datetime, Idle] = field(default_factory=dict)
    hub_idle: dict[datetime, dict[str, Idle]] = field(default_factory=dict)
    # window_s -> counts
    deadletter: dict[float, Counts] = field(default_factory=dict)
    # (dc_id, device_model) -> the end of its latest unpriced ledger entry
    unpriced: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # window_s -> dc_id -> its heartbeats' trend (DCs whose latest heartbeat is within window_s)
    spool: dict[float, dict[str, SpoolTrend]] = field(default_factory=dict)

    def hub(self, dc_id: str) -> str:
        return self.hubs.get(dc_id) or "none"


@dataclass
class StreamClock:
    """The evaluator's event-time clock, fed with the newest event time in the store."""

    started_at: datetime
    idle_after_s: float = 60.0
    newest: datetime | None = None
    newest_changed_at: datetime | None = None  # wall time the store's newest event last moved
    clock: datetime | None = None

    def advance(self, newest: datetime | None, wall: datetime) -> datetime | None:
        """The stream's clock: the newest event time while events flow, the wall clock once the
        store has had no newer event for `idle_after_s`; never past the wall clock, never
        backwards. None until there is an event or the evaluator has waited `idle_after_s`."""
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
            self.newest_changed_at = wall
        since = self.newest_changed_at or self.started_at
        if (wall - since).total_seconds() >= self.idle_after_s:
            candidate: datetime | None = wall
        elif self.newest is not None:
            candidate = min(self.newest, wall)
        else:
            candidate = None
        if candidate is not None and (self.clock is None or candidate > self.clock):
            self.clock = candidate
        return self.clock
