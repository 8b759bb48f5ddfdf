"""Job metering from Slurm accounting (`sacct -P`): start, usage and end per job. I/O: runs sacct.

`parse_sacct` is pure (tested on recorded outputs). Cumulative device-seconds are devices
(gres/gpu or cpu from AllocTRES, per partition) x ElapsedRaw; energy is ConsumedEnergyRaw when
Slurm accounts it, else TDP x an assumed utilisation. `seq` comes from elapsed time (0 at start,
1 + elapsed // jobs_s for usage, one more at the end), so ids `job-<job>-<seq>` stay the same
across agent restarts and a resent end is a duplicate, not a new event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agents import simdata
from agents.collectors import CollectorError, run_command
from agents.records import CloudEvent, build, job_event_id
from agents.settings import SlurmCollector as SlurmSettings
from agents.settings import SlurmPartition
from schemas.catalogue import load_catalogue
from schemas.events import Job

FIELDS = ("JobID", "User", "Account", "Partition", "State", "AllocTRES", "ElapsedRaw", "Start",
          "End", "ConsumedEnergyRaw")
SUCCEEDED = {"COMPLETED"}
CANCELLED = {"CANCELLED", "PREEMPTED", "REVOKED"}
FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
_BAD_ID = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class SlurmJob:
    job_id: str
    tenant_id: str
    partition: str
    state: str  # first word: RUNNING, COMPLETED, CANCELLED, ...
    tres: dict[str, int]
    elapsed_s: int
    end: datetime | None
    energy_j: int | None

    def devices(self, kind: str) -> int:
        if kind == "cpu":
            return self.tres.get("cpu", 0)
        if "gres/gpu" in self.tres:
            return self.tres["gres/gpu"]
        return sum(v for k, v in self.tres.items() if k.startswith("gres/gpu:"))

    @property
    def status(self) -> str | None:
        if self.state in SUCCEEDED:
            return "succeeded"
        if self.state in CANCELLED:
            return "cancelled"
        return "failed" if self.state in FAILED else None


def ident(text: str, fallback: str = "unknown") -> str:
    """A Slurm name as an id matching the contract's pattern."""
    value = _BAD_ID.sub("-", text.strip().lower()).strip("-._")[:63]
    return value or fallback


def _tres(text: str, line: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key in ("cpu", "node") or key.startswith("gres/gpu"):
            if not value.isdigit():
                raise CollectorError(f"sacct line {line}: AllocTRES {part!r} is not name=count")
            out[key] = int(value)
    return out


def _time(text: str, tz: timezone) -> datetime | None:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=tz)
    except ValueError:
        return None  # Unknown, None


def parse_sacct(text: str, tz: timezone) -> list[SlurmJob]:
    """Jobs from `sacct -P -n -o <FIELDS>` (pipe-separated). CollectorError on a malformed line."""
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != len(FIELDS):
            raise CollectorError(f"sacct line {number}: {len(fields)} fields, expected "
                                 f"{len(FIELDS)} ({','.join(FIELDS)}); truncated?")
        job_id, user, account, partition, state, tres, elapsed, _start, end, energy = fields
        if not elapsed.strip().isdigit():
            raise CollectorError(f"sacct line {number}: ElapsedRaw {elapsed[:20]!r} is not seconds")
        if not job_id.strip():
            raise CollectorError(f"sacct line {number}: empty JobID")
        jobs.append(SlurmJob(
            job_id=ident(job_id), tenant_id=ident(account or user), partition=partition.strip(),
            state=(state.split() or ["UNKNOWN"])[0].rstrip("+"), tres=_tres(tres, number),
            elapsed_s=int(elapsed), end=_time(end, tz),
            energy_j=int(energy) if energy.strip().isdigit() and int(energy) > 0 else None))
    return jobs


class SlurmCollector:
    """Metering for jobs in the configured partitions; remembers what it already sent."""

    name = "slurm"

    def __init__(self, dc_id: str, cfg: SlurmSettings, jobs_s: int, *,
                 utc_offset_h: float = 8.0) -> None:
        self.dc_id, self.cfg = dc_id, cfg
        self.interval_s = float(jobs_s)
        self.jobs_s = jobs_s
        self.tz = timezone(timedelta(hours=utc_offset_h))
        self.partitions: dict[str, SlurmPartition] = {p.name: p for p in cfg.partitions}
        self._seq: dict[str, int] = {}  # highest seq sent per running job
        self._ended: dict[str, datetime] = {}  # jobs whose end was sent, forgotten after lookback

    def command(self, now: datetime) -> list[str]:
        since = (now - timedelta(seconds=self.cfg.lookback_s)).astimezone(self.tz)
        return self.cfg.command or ["sacct", "-a", "-X", "-P", "-n", "-o", ",".join(FIELDS),
                                    "-S", since.strftime("%Y-%m-%dT%H:%M:%S")]

    def collect(self, now: datetime) -> list[CloudEvent]:
        return self.events(parse_sacct(run_command(self.command(now), self.cfg.timeout_s), self.tz),
                           now)

    def events(self, jobs: list[SlurmJob], now: datetime) -> list[CloudEvent]:
        out: list[CloudEvent] = []
        for job in jobs:
            part = self.partitions.get(job.partition)
            if part is None or job.job_id in self._ended or job.state == "PENDING":
                continue
            devices = job.devices(part.devices)
            end = min(job.end or now, now) if job.status else None
            at = end or now
            start = at - timedelta(seconds=job.elapsed_s)
            if job.job_id not in self._seq:
                out.append(self._event(job, part, devices, 0, start, 0, "start"))
                self._seq[job.job_id] = 0
            if job.status is not None:
                seq = 2 + job.elapsed_s // self.jobs_s
                out.append(self._event(job, part, devices, seq, at, job.elapsed_s, "end"))
                del self._seq[job.job_id]
                self._ended[job.job_id] = now
            elif job.state == "RUNNING":
                seq = 1 + job.elapsed_s // self.jobs_s
                if seq > self._seq[job.job_id]:
                    out.append(self._event(job, part, devices, seq, at, job.elapsed_s, "usage"))
                    self._seq[job.job_id] = seq
        horizon = now - timedelta(seconds=self.cfg.lookback_s + 3600)
        self._ended = {j: t for j, t in self._ended.items() if t >= horizon}
        return out

    def _event(self, job: SlurmJob, part: SlurmPartition, devices: int, seq: int, t: datetime,
               elapsed_s: int, phase: str) -> CloudEvent:
        device_s = float(devices * elapsed_s)
        if job.energy_j is not None and phase != "start":
            energy = job.energy_j / 3.6e6
        else:
            device = load_catalogue().get(part.device_model)
            tdp = (device.tdp_w if device and device.tdp_w else 300.0)
            unit = device.unit if device else "device"
            watts = simdata.device_power_w(tdp, self.cfg.assumed_busy) * simdata.SERVER_OVERHEAD[unit]
            energy = device_s * watts / 3.6e6
        data = Job(dc_id=self.dc_id, job_id=job.job_id, tenant_id=job.tenant_id,
                   pool_id=part.pool_id, device_model=part.device_model, devices=devices,
                   phase=phase, seq=seq, device_seconds_total=device_s,  # type: ignore[arg-type]
                   energy_kwh_total=round(energy, 6),
                   status=job.status if phase == "end" else None)  # type: ignore[arg-type]
        return build("cpn.job.v1", t, data, ident=job_event_id(job.job_id, seq))
