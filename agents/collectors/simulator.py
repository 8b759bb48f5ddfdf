"""A simulated data center (pools, jobs, failures, power and energy mix) as a collector. Pure.

`SimulatedDataCenter(dc, sim, intervals, start=t0)` is a discrete-event simulation from `t0`:
`events_between(t0, t1)` returns every event with `t0 <= time < t1`, in time order, as
schemas-valid CloudEvent dicts (registration at the start and daily, capacity per pool on the
`capacity_s` grid, power on the `power_s` grid, job start / usage every `jobs_s` / end). It only
moves forward; the same seed and start give the same events however time is sliced.

Power: IT power per pool from device TDPs (idle 12 %, busy ^0.9, server overhead), facility =
IT x PUE (PUE a little higher in the afternoon); sources: `green_contract` and onsite solar
shares of facility energy, the grid the rest, so they always sum to facility energy.
"""

from __future__ import annotations

import heapq
import itertools
import math
from datetime import datetime
from typing import Any

from agents import simdata
from agents.records import CloudEvent, build, from_ms, registration_event, to_ms
from agents.settings import DataCenter, Intervals
from agents.simpool import PRIO, PoolSim, local_hour, rng
from agents.simsettings import SimulatorSettings
from schemas.catalogue import load_catalogue
from schemas.events import Power, SourcesKwh


class SimulatedDataCenter:
    """One simulated DC; see the module docstring."""

    def __init__(self, dc: DataCenter, sim: SimulatorSettings, intervals: Intervals | None = None,
                 *, start: datetime, registry: bool = True) -> None:
        self.dc, self.sim = dc, sim
        self.intervals = intervals or Intervals()
        self.start_ms = to_ms(start)
        self.clock_ms = self.start_ms  # everything before this is simulated
        self._heap: list[tuple[int, int, int, str, Any]] = []
        self._counter = itertools.count()
        grid = simdata.grid_of(dc.province)
        self.emission_g = (sim.grid_emission_g_per_kwh if sim.grid_emission_g_per_kwh is not None
                           else round(grid.ef_kg_per_kwh * 1000, 1))
        self.grid = grid
        tenants = list(sim.tenants) or sorted(
            rng(sim.seed, dc.dc_id, "tenants").sample(simdata.TENANTS, 5))
        catalogue = load_catalogue()
        self.pools = [PoolSim(dc.dc_id, spec, catalogue.devices[spec.device_model], seed=sim.seed,
                              start_ms=self.start_ms, jobs_s=self.intervals.jobs_s,
                              tenants=tenants, push=self._push) for spec in sim.pools]
        self._it_kwh = 0.0
        self._sampled_ms = self.start_ms
        self._power_from_ms = self.start_ms
        if registry:
            self._push(self.start_ms, PRIO["registry"], "registry", None)
        self._push(_grid_at_or_after(self.start_ms, self.intervals.capacity_s), PRIO["capacity"],
                   "capacity", None)
        self._push(_grid_at_or_after(self.start_ms + 1, self.intervals.power_s), PRIO["power"],
                   "power", None)

    def _push(self, t_ms: int, prio: int, kind: str, payload: object) -> None:
        heapq.heappush(self._heap, (t_ms, prio, next(self._counter), kind, payload))

    # -- the public side -----------------------------------------------------------------------

    def events_between(self, t0: datetime, t1: datetime) -> list[CloudEvent]:
        """Events with `t0 <= time < t1`; `t0` may not be before what was already simulated."""
        t0_ms = to_ms(t0)
        if t0_ms < self.clock_ms:
            raise ValueError(f"already simulated up to {from_ms(self.clock_ms).isoformat()}; "
                             "a simulation only moves forward (make a new one)")
        self._run_until(t0_ms)
        return self._run_until(to_ms(t1))

    def advance(self, until: datetime) -> list[CloudEvent]:
        """Events from where the simulation stands up to and including `until`."""
        return self._run_until(to_ms(until) + 1)

    @property
    def now(self) -> datetime:
        return from_ms(self.clock_ms)

    # -- the simulation ------------------------------------------------------------------------

    def _run_until(self, until_ms: int) -> list[CloudEvent]:
        out: list[CloudEvent] = []
        heap = self._heap
        while heap and heap[0][0] < until_ms:
            t, _, _, kind, payload = heapq.heappop(heap)
            if kind == "arrival":
                out += payload.arrival(t)
            elif kind == "usage":
                pool, job = payload
                out += pool.usage(job, t)
            elif kind == "end":
                pool, job = payload
                out += pool.end(job, t)
            elif kind == "failure":
                payload.failure(t)
            elif kind == "repair":
                pool, count = payload
                pool.repair(count)
            elif kind == "capacity":
                self._sample(t)
                out += [p.capacity(t, self.intervals.capacity_s) for p in self.pools]
                self._push(t + self.intervals.capacity_s * 1000, PRIO["capacity"], "capacity", None)
            elif kind == "power":
                self._sample(t)
                out.append(self._power(t))
                self._push(t + self.intervals.power_s * 1000, PRIO["power"], "power", None)
            elif kind == "registry":
                out.append(self.registration(from_ms(t)))
                self._push(t + self.intervals.registry_s * 1000, PRIO["registry"], "registry", None)
        self.clock_ms = max(self.clock_ms, until_ms)
        return out

    def _sample(self, t_ms: int) -> None:
        """Integrate IT power since the last sample (the state set by the last capacity tick)."""
        if t_ms > self._sampled_ms:
            watts = sum(p.it_power_w() for p in self.pools)
            self._it_kwh += watts * (t_ms - self._sampled_ms) / 3.6e9
            self._sampled_ms = t_ms

    def _power(self, t_ms: int) -> CloudEvent:
        hour, _ = local_hour(t_ms)
        pue = max(1.0, self.sim.pue * (1 + 0.03 * math.cos(2 * math.pi * (hour - 15) / 24)))
        it = round(self._it_kwh, 6)
        facility = round(it * pue, 6)
        green = round(facility * self.sim.green_contract_share, 6)
        solar = simdata.solar_shape(hour)
        onsite = round(min(facility - green, facility * self.sim.onsite_renewable_share * solar), 6)
        grid = max(0.0, round(facility - green - onsite, 6))
        share = self.sim.grid_renewable_share
        if share is None:
            g = self.grid
            share = min(1.0, g.hydro + g.wind + g.solar * solar)
        interval = min(3600, max(1, round((t_ms - self._power_from_ms) / 1000)))
        data = Power(dc_id=self.dc.dc_id, interval_s=interval, it_energy_kwh=it,
                     facility_energy_kwh=facility,
                     sources_kwh=SourcesKwh(grid=grid, green_contract=green,
                                            onsite_renewable=max(0.0, onsite)),
                     grid_renewable_share=round(share, 4),
                     grid_emission_g_per_kwh=self.emission_g)
        self._it_kwh = 0.0
        self._power_from_ms = t_ms
        return build("cpn.power.v1", from_ms(t_ms), data)

    def registration(self, t: datetime) -> CloudEvent:
        return registration_event(self.dc, t)


def _grid_at_or_after(t_ms: int, interval_s: int) -> int:
    step = interval_s * 1000
    return -(-t_ms // step) * step


class SimulatorCollector:
    """The simulator behind the collector interface: `collect(now)` = events up to `now`."""

    name = "simulator"

    def __init__(self, dc: DataCenter, sim: SimulatorSettings, intervals: Intervals,
                 *, start: datetime) -> None:
        self.model = SimulatedDataCenter(dc, sim, intervals, start=start, registry=False)
        self.interval_s = float(min(intervals.capacity_s, intervals.jobs_s, intervals.power_s))

    def collect(self, now: datetime) -> list[CloudEvent]:
        if now < self.model.now:
            return []
        return self.model.advance(now)

