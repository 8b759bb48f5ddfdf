"""The live state alert rules read, folded from the observed batches. Pure (no clock, no I/O).

Event times come from the rows; `wall` (the worker's clock when the batch was written) is passed
in. The stream's clock (`advance`) is the newest event time seen while events flow, and the
wall clock once no event has arrived for `idle_after_s` (see docs/alerts.md, "Event time").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from schemas import registry

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEEP_HOURS = 3
DEADLETTER_KEEP = timedelta(hours=1)


class BatchLike(Protocol):
    rows: dict[str, list[dict[str, Any]]]
    accepted: Mapping[str, int]
    rejected: Mapping[str, int]
    unpriced: Mapping[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class PoolSample:
    time: datetime
    interval_s: int
    idle_pflops: tuple[float, float, float]  # fp16, fp32, fp64


def utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def hour_of(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass
class LiveState:
    """Per DC, pool, hour and minute: what the rules need, bounded in size."""

    started_at: datetime
    idle_after_s: float = 60.0
    last_seen: dict[str, datetime] = field(default_factory=dict)
    hub_of: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    pools: dict[tuple[str, str], PoolSample] = field(default_factory=dict)
    # (dc_id, hour) -> event_id -> (facility_kwh, it_kwh, green_kwh): a duplicate counts once
    energy: dict[tuple[str, datetime], dict[str, tuple[float, float, float]]] = field(
        default_factory=dict
    )
    # wall minute -> [rejected, accepted]
    minutes: dict[datetime, list[int]] = field(default_factory=dict)
    unpriced: dict[tuple[str, str], datetime] = field(default_factory=dict)
    max_event: datetime | None = None
    last_event_wall: datetime | None = None
    clock: datetime | None = None
    pruned_at: datetime | None = None

    def hub(self, dc_id: str) -> str:
        known = self.hub_of.get(dc_id)
        return known[1] if known else "none"

    def advance(self, wall: datetime) -> datetime | None:
        """The stream's clock: the newest event time while events flow, the wall clock once the
        stream has been idle for `idle_after_s`; never past the wall clock, never backwards."""
        since = self.last_event_wall or self.started_at
        if (wall - since).total_seconds() >= self.idle_after_s:
            candidate: datetime | None = wall
        elif self.max_event is not None:
            candidate = min(self.max_event, wall)
        else:
            candidate = None
        if candidate is not None and (self.clock is None or candidate > self.clock):
            self.clock = candidate
        return self.clock

    def seed(self, last_seen: Mapping[str, datetime], hubs: Mapping[str, str]) -> None:
        """State from the store at start: when each DC last spoke, and its hub."""
        for dc_id, seen in last_seen.items():
            self._seen(dc_id, utc(seen))
        for dc_id, hub in hubs.items():
            self.hub_of.setdefault(dc_id, (EPOCH, hub))

    def observe(self, batch: BatchLike, wall: datetime) -> None:
        rows = batch.rows
        any_event = False
        for table in registry.tables():  # every event table carries dc_id and time
            for row in rows.get(table, ()):
                self._seen(row["dc_id"], utc(row["time"]))
                any_event = True
        if any_event:
            self.last_event_wall = wall
        for row in rows.get("registrations", ()):
            t = utc(row["time"])
            known = self.hub_of.get(row["dc_id"])
            if known is None or t >= known[0]:
                self.hub_of[row["dc_id"]] = (t, row["hub"])
        self._capacity(rows.get("capacity_samples", ()))
        self._power(rows.get("power_samples", ()))
        minute = wall.replace(second=0, microsecond=0)
        counts = self.minutes.setdefault(minute, [0, 0])
        counts[0] += sum(batch.rejected.values())
        counts[1] += sum(batch.accepted.values())
        stamp = self.max_event or wall
        for key, n in batch.unpriced.items():
            if n > 0:
                self.unpriced[key] = max(self.unpriced.get(key, stamp), stamp)
        self._prune(wall)

    def _seen(self, dc_id: str, t: datetime) -> None:
        known = self.last_seen.get(dc_id)
        if known is None or t > known:
            self.last_seen[dc_id] = t
        if self.max_event is None or t > self.max_event:
            self.max_event = t

    def _capacity(self, samples: Iterable[dict[str, Any]]) -> None:
        for row in samples:
            key = (row["dc_id"], row["pool_id"])
            t = utc(row["time"])
            known = self.pools.get(key)
            if known is None or t >= known.time:
                idle = (row["idle_pflops_fp16"], row["idle_pflops_fp32"], row["idle_pflops_fp64"])
                self.pools[key] = PoolSample(t, int(row["interval_s"]), idle)

    def _power(self, samples: Iterable[dict[str, Any]]) -> None:
        newest = self.max_event or EPOCH
        floor = hour_of(newest) - KEEP_HOURS * HOUR
        for row in samples:
            hour = hour_of(utc(row["time"]))
            if hour < floor:
                continue  # older than any hour a rule will still evaluate
            bucket = self.energy.setdefault((row["dc_id"], hour), {})
            bucket[row["event_id"]] = (
                float(row["facility_energy_kwh"]),
                float(row["it_energy_kwh"]),
                float(row["green_energy_kwh"]),
            )

    def _prune(self, wall: datetime) -> None:
        if self.pruned_at is not None and (wall - self.pruned_at).total_seconds() < 60:
            return
        self.pruned_at = wall
        if self.max_event is not None:
            floor = hour_of(self.max_event) - KEEP_HOURS * HOUR
            for key in [k for k in self.energy if k[1] < floor]:
                del self.energy[key]
            stale = self.max_event - timedelta(days=1)
            for pool in [k for k, s in self.pools.items() if s.time < stale]:
                del self.pools[pool]
        for minute in [m for m in self.minutes if m < wall - DEADLETTER_KEEP]:
            del self.minutes[minute]

    def energy_by(self, hour: datetime) -> dict[str, tuple[float, float, float]]:
        """Per DC, the energy sums of one hour (facility, it, green)."""
        out: dict[str, tuple[float, float, float]] = {}
        for (dc_id, h), bucket in self.energy.items():
            if h == hour and bucket:
                values = bucket.values()
                out[dc_id] = (
                    sum(v[0] for v in values),
                    sum(v[1] for v in values),
                    sum(v[2] for v in values),
                )
        return out
