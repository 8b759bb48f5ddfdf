"""Job metering from Slurm accounting (`sacct -P -D`): start, usage and end per job. I/O: runs sacct.

The rows (agents.collectors.sacct) go through `advance`, pure: a job's state and this poll's
rows in, the job's next state and its events out. Every run of a job (a preempted or requeued
job runs again under the same JobID) is kept by its `Start`, so the cumulative totals are
sums over runs: device-seconds = devices (gres/gpu or cpu from AllocTRES, per partition) x
ElapsedRaw; energy = ConsumedEnergyRaw when Slurm accounts it and it is possible (at most
devices x TDP x elapsed), else TDP x an assumed utilisation (the estimate; an impossible figure
is dropped with a warning). On the wire the totals never fall: when the energy source switches
(estimated while running, measured at the end) and the measurement is lower, the total goes on
from what was sent, adding the estimate of the last interval.

`seq` comes from the job's elapsed time over all its runs (0 at start, 1 + elapsed // jobs_s
for usage, one more at the end), raised to one above the last sent when needed, so it only
rises and ids `job-<job>-<seq>` stay the same when a restarted agent sends again. A job ends
once: at a final state, or after an interruption (PREEMPTED, NODE_FAIL) that no new run
followed within `requeue_grace_s`, or when such a job leaves sacct's window.

State (per job: runs, last seq and totals, ended) advances only through `Collected.commit`, which
the agent calls after the spool accepted the events, and is saved to `state_path` then.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pydantic import ValidationError

from agents import simdata
from agents.collectors import Collected, CollectorError, Output, invalid, run_command
from agents.collectors.sacct import FIELDS, SlurmJob, parse_sacct
from agents.records import CloudEvent, build, job_event_id, to_ms
from agents.settings import SlurmCollector as SlurmSettings
from agents.settings import SlurmPartition
from schemas.catalogue import load_catalogue
from schemas.events import Job

log = logging.getLogger("agents.slurm")
FALLBACK_TDP_W = 300.0  # a device model without a TDP in the catalogue
STATE_VERSION = 1
OPEN_JOB_MEMORY_S = 7 * 86_400


@dataclass(frozen=True)
class Run:
    elapsed_s: int
    devices: int
    energy_kwh: float  # measured, or estimated (`measured` False)
    measured: bool

    @property
    def device_s(self) -> float:
        return float(self.devices * self.elapsed_s)


@dataclass(frozen=True)
class JobState:
    """What was sent for one job: its runs by `Start`, the last seq and totals, and whether it ended."""

    job_id: str
    tenant_id: str
    partition: str
    runs: dict[str, Run] = field(default_factory=dict)
    seq: int = -1  # none sent
    device_s: float = 0.0
    energy_kwh: float = 0.0
    last_ms: int = 0  # time of the last event sent
    interrupted_ms: int | None = None  # poll time an interruption was first seen
    status: str | None = None  # of the interruption, or of the end
    ended: bool = False
    seen_ms: int = 0  # last poll that listed the job

    def elapsed_s(self) -> int:
        return sum(r.elapsed_s for r in self.runs.values())


@dataclass(frozen=True)
class Meter:
    """How one partition's jobs are metered: its pool, model, and watts per device."""

    dc_id: str
    part: SlurmPartition
    jobs_s: int
    grace_s: float
    estimate_w: float  # per device, with server overhead (the estimate)
    max_w: float  # per device: above this a measured energy is impossible

    @classmethod
    def of(cls, dc_id: str, part: SlurmPartition, cfg: SlurmSettings, jobs_s: int) -> Meter:
        device = load_catalogue().get(part.device_model)
        tdp = device.tdp_w if device and device.tdp_w else FALLBACK_TDP_W
        unit = device.unit if device else "device"
        watts = simdata.device_power_w(tdp, cfg.assumed_busy) * simdata.SERVER_OVERHEAD[unit]
        return cls(dc_id, part, jobs_s, cfg.requeue_grace_s, watts, tdp)


def _run(row: SlurmJob, meter: Meter, warnings: list[str]) -> Run:
    devices = row.devices(meter.part.devices)
    estimate = devices * row.elapsed_s * meter.estimate_w / 3.6e6
    if row.energy_j is not None:
        bound_j = devices * meter.max_w * row.elapsed_s
        if row.energy_j <= bound_j:
            return Run(row.elapsed_s, devices, row.energy_j / 3.6e6, True)
        warnings.append(f"job {row.job_id}: ConsumedEnergyRaw {row.energy_j} J is more than "
                        f"{devices} devices x {meter.max_w:g} W x {row.elapsed_s} s can draw; "
                        "dropped, estimated instead")
    return Run(row.elapsed_s, devices, estimate, False)


def advance(state: JobState | None, rows: list[SlurmJob], meter: Meter, now: datetime,
            warnings: list[str]) -> tuple[JobState | None, list[CloudEvent]]:
    """A job's next state and events from this poll's rows of it (in sacct order). Pure.

    Raises CollectorError or ValidationError for a row that cannot make an event (the caller
    skips the job for this poll, its state unchanged).
    """
    last = rows[-1]
    st = state or JobState(last.job_id, last.tenant_id, last.partition)
    if st.ended:
        return st, []
    now_ms = to_ms(now)
    runs = dict(st.runs)
    for row in rows:
        if not row.started or (row.elapsed_s == 0 and row.phase == "waiting"):
            continue
        run = _run(row, meter, warnings)
        old = runs.get(row.start)
        if old is not None and old.elapsed_s > run.elapsed_s:
            continue  # an older view of the same run
        if old is not None and old.measured and not run.measured and old.elapsed_s == run.elapsed_s:
            continue
        runs[row.start] = run
    if not runs:
        return state, []  # never ran: nothing to meter yet
    st = replace(st, runs=runs, seen_ms=now_ms, tenant_id=last.tenant_id, partition=last.partition)
    events: list[CloudEvent] = []
    at = min(last.end or now, now) if last.phase in ("final", "interrupted") else now
    at_ms = max(to_ms(at), st.last_ms)
    elapsed = st.elapsed_s()
    if st.seq < 0:
        first = runs[next(iter(runs))]
        start = at - timedelta(seconds=elapsed if len(runs) > 1 else first.elapsed_s)
        st = _send(st, events, meter, 0, "start", to_ms(start), 0.0, 0.0)
    device_s = max(st.device_s, sum(r.device_s for r in runs.values()))
    energy = sum(r.energy_kwh for r in runs.values())
    if energy < st.energy_kwh:  # the source switched and measured less: go on from what was sent
        energy = st.energy_kwh + (device_s - st.device_s) * meter.estimate_w / 3.6e6
    changed = device_s > st.device_s or energy > st.energy_kwh
    phase = last.phase
    if phase == "interrupted":
        if st.interrupted_ms is None:
            st = replace(st, interrupted_ms=now_ms, status=last.status)
        elif now_ms - st.interrupted_ms >= meter.grace_s * 1000:
            phase = "final"
    else:
        st = replace(st, interrupted_ms=None, status=None)
    if phase == "final":
        seq = max(2 + elapsed // meter.jobs_s, st.seq + 1)
        st = _send(st, events, meter, seq, "end", at_ms, device_s, energy,
                   status=last.status or st.status)
        return replace(st, ended=True), events
    seq = 1 + elapsed // meter.jobs_s
    if (phase == "running" and seq > st.seq) or (phase != "running" and changed):
        st = _send(st, events, meter, max(seq, st.seq + 1), "usage", at_ms, device_s, energy)
    return st, events


def close(state: JobState, meter: Meter) -> tuple[JobState, list[CloudEvent]]:
    """End an interrupted job that left sacct's window without a new run. Pure."""
    seq = max(2 + state.elapsed_s() // meter.jobs_s, state.seq + 1)
    events: list[CloudEvent] = []
    st = _send(state, events, meter, seq, "end", state.last_ms, state.device_s,
               state.energy_kwh, status=state.status or "cancelled")
    return replace(st, ended=True), events


def _send(st: JobState, events: list[CloudEvent], meter: Meter, seq: int, phase: str,
          t_ms: int, device_s: float, energy_kwh: float, status: str | None = None) -> JobState:
    run = st.runs[next(reversed(st.runs))] if st.runs else None
    data = Job(dc_id=meter.dc_id, job_id=st.job_id, tenant_id=st.tenant_id,
               pool_id=meter.part.pool_id, device_model=meter.part.device_model,
               devices=run.devices if run else 0, phase=phase,  # type: ignore[arg-type]
               seq=seq, device_seconds_total=device_s, energy_kwh_total=round(energy_kwh, 6),
               status=status if phase == "end" else None)  # type: ignore[arg-type]
    t = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    events.append(build("cpn.job.v1", t, data, ident=job_event_id(st.job_id, seq)))
    return replace(st, seq=seq, device_s=device_s, energy_kwh=round(energy_kwh, 6), last_ms=t_ms)


class SlurmCollector:
    """Metering for jobs in the configured partitions; remembers what reached the spool."""

    name = "slurm"

    def __init__(self, dc_id: str, cfg: SlurmSettings, jobs_s: int, *,
                 utc_offset_h: float = 8.0, state_path: Path | None = None) -> None:
        self.dc_id, self.cfg = dc_id, cfg
        self.interval_s = float(jobs_s)
        self.jobs_s = jobs_s
        self.tz = timezone(timedelta(hours=utc_offset_h))
        self.meters = {p.name: Meter.of(dc_id, p, cfg, jobs_s) for p in cfg.partitions}
        self.state_path = state_path
        self.jobs: dict[str, JobState] = self._load()

    def command(self, now: datetime) -> list[str]:
        since = (now - timedelta(seconds=self.cfg.lookback_s)).astimezone(self.tz)
        return self.cfg.command or ["sacct", "-a", "-X", "-D", "-P", "-n", "-o", ",".join(FIELDS),
                                    "-S", since.strftime("%Y-%m-%dT%H:%M:%S")]

    def collect(self, now: datetime) -> Collected:
        try:
            out = run_command(self.command(now), self.cfg.timeout_s)
        except CollectorError as exc:
            raise CollectorError(str(exc), collector=self.name) from None
        return self.read(out, now)

    def read(self, out: Output, now: datetime) -> Collected:
        """This poll's events from sacct's output (what `collect` does after running sacct)."""
        parsed = parse_sacct(out.stdout, self.tz)
        result = self.events(parsed.devices, now, complete=out.warning is None and not parsed.skipped)
        result.warnings[:0] = [w for w in (out.warning, *parsed.skipped) if w]
        return result

    def events(self, jobs: list[SlurmJob], now: datetime, *, complete: bool = True) -> Collected:
        """Events for this poll's rows, and the commit that makes them the collector's state."""
        warnings: list[str] = []
        rows: dict[str, list[SlurmJob]] = defaultdict(list)
        for job in jobs:
            if job.partition in self.meters:
                rows[job.job_id].append(job)
        updates: dict[str, JobState] = {}
        out: list[CloudEvent] = []
        for job_id, job_rows in rows.items():
            meter = self.meters[job_rows[-1].partition]
            try:
                state, events = advance(self.jobs.get(job_id), job_rows, meter, now, warnings)
            except (CollectorError, ValidationError) as exc:
                why = invalid(exc) if isinstance(exc, ValidationError) else str(exc)
                warnings.append(f"job {job_id} (line {job_rows[-1].line}): {why}; skipped")
                continue
            if state is not None:
                updates[job_id] = state
            out += events
        if complete:  # an interrupted job no longer listed: no new run will follow
            for job_id, state in self.jobs.items():
                held = self.meters.get(state.partition)
                if job_id in rows or state.ended or state.interrupted_ms is None or held is None:
                    continue
                updates[job_id], events = close(replace(state, seen_ms=to_ms(now)), held)
                out += events
        # ended jobs are kept while sacct may still list them; open ones (a job that vanished
        # while running) for a week, so a late row never restarts a job's seq
        ended_horizon = to_ms(now) - (self.cfg.lookback_s + 3600) * 1000
        open_horizon = to_ms(now) - OPEN_JOB_MEMORY_S * 1000
        forget = {j for j, s in {**self.jobs, **updates}.items()
                  if s.seen_ms < (ended_horizon if s.ended else open_horizon)}

        def commit() -> None:
            self.jobs.update(updates)
            for job_id in forget:
                self.jobs.pop(job_id, None)
            self._save()

        return Collected(out, warnings, commit)

    # -- the state on disk ---------------------------------------------------------------------

    def _load(self) -> dict[str, JobState]:
        if self.state_path is None:
            return {}
        try:
            raw = json.loads(self.state_path.read_text())
            if raw.get("version") != STATE_VERSION:
                return {}
            return {j: JobState(**{**s, "runs": {k: Run(**r) for k, r in s["runs"].items()}})
                    for j, s in raw["jobs"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("slurm: cannot read %s (%s); starting without it", self.state_path, exc)
            return {}

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION,
                                   "jobs": {j: asdict(s) for j, s in self.jobs.items()}}))
        os.replace(tmp, self.state_path)
