"""One simulated pool: device failures, metered jobs and allocation, stepped by the DC's clock. Pure.

All randomness comes from per-pool generators seeded from (seed, dc, pool), and every change
happens at a scheduled time in time order, so the events depend only on the seed and the start,
not on how the caller slices time. Job arrivals are a Poisson process thinned by the pool's
allocation curve, sized so that metered jobs fill about `metered_share` of the allocation;
the rest of the curve is unmetered (reserved) allocation.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from agents import simdata
from agents.records import build, from_ms, job_event_id
from agents.simsettings import PoolSpec
from schemas.catalogue import Device
from schemas.events import Capacity, Job

Push = Callable[[int, int, str, object], None]  # (time ms, priority, kind, payload)
PRIO = {"registry": 0, "failure": 1, "repair": 1, "end": 2, "arrival": 3, "usage": 4,
        "capacity": 5, "power": 6}
DAY_MS = 86_400_000
LOCAL_OFFSET_MS = 8 * 3_600_000  # China Standard Time, UTC+8
_NORMAL = NormalDist()


def rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def local_hour(t_ms: int) -> tuple[float, int]:
    """(hour of day 0-24, weekday 0 = Monday) in China Standard Time."""
    local = t_ms + LOCAL_OFFSET_MS
    return (local % DAY_MS) / 3_600_000, (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


@dataclass(slots=True)
class SimJob:
    job_id: str
    tenant_id: str
    devices: int
    start_ms: int
    end_ms: int
    status: str
    power_w: float  # per device, server overhead included
    seq: int = 0


class PoolSim:
    def __init__(self, dc_id: str, spec: PoolSpec, device: Device, *, seed: int, start_ms: int,
                 jobs_s: int, tenants: list[str], push: Push) -> None:
        self.dc_id, self.spec, self.device = dc_id, spec, device
        self.jobs_ms = jobs_s * 1000
        self.tenants = tenants
        self.weights = [1 / (i + 1) for i in range(len(tenants))]  # Zipf: a few big tenants
        self.push = push
        self.jobs_rng = rng(seed, dc_id, spec.pool_id, "jobs")
        self.fail_rng = rng(seed, dc_id, spec.pool_id, "failures")
        self.noise_rng = rng(seed, dc_id, spec.pool_id, "noise")
        self.job_prefix = f"{spec.pool_id}-{start_ms // 1000:x}"
        self.job_count = 0
        self.mean = spec.allocation_mean or simdata.PROFILE_MEAN[spec.profile]
        self.busy = simdata.JOB_BUSY[spec.profile]
        self.overhead = simdata.SERVER_OVERHEAD[device.unit]
        self.tdp = device.tdp_w or 300.0
        self.sizes = simdata.CPU_SIZES if device.unit == "core" else simdata.GPU_SIZES
        self.failed = 0
        self.running: dict[str, SimJob] = {}
        self.job_devices = 0
        self.noise = 0.0
        self.allocated = round(self._target(start_ms) * spec.devices)
        self.rejected = 0
        median, sigma = simdata.DURATION[spec.profile]
        mean_size = sum(p * min(s, spec.devices) ** (1 + simdata.SIZE_EXPONENT) for s, p in self.sizes)
        per_job = mean_size * median * math.exp(sigma * sigma / 2) * 0.8  # failures end early
        self.rate_per_ms = spec.metered_share * spec.devices / per_job / 1000
        if self.rate_per_ms > 1e-15:
            push(start_ms + self._exp(self.jobs_rng, self.rate_per_ms), PRIO["arrival"], "arrival", self)
        self.fail_per_ms = spec.failure_rate_per_device_day * spec.devices / DAY_MS
        if self.fail_per_ms > 1e-15:
            push(start_ms + self._exp(self.fail_rng, self.fail_per_ms), PRIO["failure"], "failure", self)

    @staticmethod
    def _exp(r: random.Random, rate_per_ms: float) -> int:
        return max(1, int(min(r.expovariate(rate_per_ms), 100 * 365 * DAY_MS)))

    def _target(self, t_ms: int) -> float:
        hour, weekday = local_hour(t_ms)
        return simdata.allocation_target(self.spec.profile, self.mean, hour, weekday)

    @property
    def online(self) -> int:
        return self.spec.devices - self.failed

    # -- scheduled happenings ------------------------------------------------------------------

    def arrival(self, t: int) -> list[dict[str, object]]:
        r = self.jobs_rng
        self.push(t + self._exp(r, self.rate_per_ms), PRIO["arrival"], "arrival", self)
        accept, size_draw, dur_draw, status_draw, tenant_draw, cut = (r.random() for _ in range(6))
        if accept > self._target(t):
            return []
        size = self.sizes[-1][0]
        for devices, p in self.sizes:
            size_draw -= p
            if size_draw < 0:
                size = devices
                break
        size = min(size, self.spec.devices)
        median, sigma = simdata.DURATION[self.spec.profile]
        z = _NORMAL.inv_cdf(min(max(dur_draw, 1e-9), 1 - 1e-9))
        duration = median * math.exp(sigma * z) * size ** simdata.SIZE_EXPONENT
        status = "cancelled"
        for name, p in simdata.STATUS:
            status_draw -= p
            if status_draw < 0:
                status = name
                break
        if status != "succeeded":  # failed and cancelled jobs stop early
            duration *= 0.05 + 0.95 * cut
        duration = min(max(duration, simdata.MIN_DURATION_S), simdata.MAX_DURATION_S)
        if self.job_devices + size > self.online:
            self.rejected += 1
            return []
        tenant = self.tenants[_weighted(tenant_draw, self.weights)]
        self.job_count += 1
        power = simdata.device_power_w(self.tdp, self.busy) * self.overhead
        job = SimJob(f"{self.job_prefix}-{self.job_count}", tenant, size, t,
                     t + int(duration * 1000), status, power)
        self.running[job.job_id] = job
        self.job_devices += size
        self.push(job.end_ms, PRIO["end"], "end", (self, job))
        self.push(t + self.jobs_ms, PRIO["usage"], "usage", (self, job))
        return [self._job_event(job, t, "start")]

    def usage(self, job: SimJob, t: int) -> list[dict[str, object]]:
        if job.job_id not in self.running or t >= job.end_ms:
            return []
        job.seq += 1
        self.push(t + self.jobs_ms, PRIO["usage"], "usage", (self, job))
        return [self._job_event(job, t, "usage")]

    def end(self, job: SimJob, t: int) -> list[dict[str, object]]:
        del self.running[job.job_id]
        self.job_devices -= job.devices
        job.seq += 1
        return [self._job_event(job, t, "end")]

    def _job_event(self, job: SimJob, t: int, phase: str) -> dict[str, object]:
        device_s = job.devices * (t - job.start_ms) / 1000
        data = Job(dc_id=self.dc_id, job_id=job.job_id, tenant_id=job.tenant_id,
                   pool_id=self.spec.pool_id, device_model=self.spec.device_model,
                   devices=job.devices, phase=phase,  # type: ignore[arg-type]
                   seq=job.seq, device_seconds_total=round(device_s, 3),
                   energy_kwh_total=round(device_s * job.power_w / 3.6e6, 6),
                   status=job.status if phase == "end" else None)  # type: ignore[arg-type]
        return build("cpn.job.v1", from_ms(t), data, ident=job_event_id(job.job_id, job.seq))

    def failure(self, t: int) -> None:
        r = self.fail_rng
        self.push(t + self._exp(r, self.fail_per_ms), PRIO["failure"], "failure", self)
        node = 8 if self.device.unit == "device" else 128
        count = min(node if r.random() < 0.2 else (1 if node == 8 else 0), self.online)
        repair_ms = int(4 * 3_600_000 * math.exp(0.8 * r.gauss(0, 1)))
        if count:
            self.failed += count
            self.push(t + repair_ms, PRIO["repair"], "repair", (self, count))

    def repair(self, count: int) -> None:
        self.failed = max(0, self.failed - count)

    def capacity(self, t: int, interval_s: int) -> dict[str, object]:
        self.noise = 0.9 * self.noise + self.noise_rng.gauss(0, 0.01)
        online = self.online
        target = min(1.0, max(0.0, self._target(t) + self.noise))
        self.allocated = min(online, max(round(target * online), self.job_devices))
        busy = min(1.0, max(0.0, self.allocated * self.busy / online + self.noise)) if online else 0.0
        data = Capacity(dc_id=self.dc_id, pool_id=self.spec.pool_id,
                        device_model=self.spec.device_model, devices_total=self.spec.devices,
                        devices_online=online, devices_allocated=self.allocated,
                        busy_ratio=round(busy, 4), interval_s=interval_s)
        return build("cpn.capacity.v1", from_ms(t), data, subject=self.spec.pool_id)

    def it_power_w(self) -> float:
        """IT power now: allocated devices busy, online idle ones at idle power, failed off."""
        idle = self.online - self.allocated
        watts = (self.allocated * simdata.device_power_w(self.tdp, self.busy)
                 + idle * simdata.device_power_w(self.tdp, 0.0))
        return watts * self.overhead


def _weighted(draw: float, weights: list[float]) -> int:
    target = draw * sum(weights)
    for i, w in enumerate(weights):
        target -= w
        if target < 0:
            return i
    return len(weights) - 1
