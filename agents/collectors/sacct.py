"""Slurm accounting rows from `sacct -P` output, and what each job state means. Pure.

One row per job run (with `-D`, a requeued job shows each run; without it, the latest). A row
that cannot be read is skipped with a warning naming its line; the other rows are used. Job ids
keep arrays (`123_4`) and heterogeneous components (`123+0` -> `123-0`) apart.

States (the `sacct` man page, "JOB STATE CODES"), by what they mean for metering:

- running (the run's time counts, the job is open): RUNNING, COMPLETING, CONFIGURING,
  STAGE_OUT, SIGNALING, SUSPENDED, STOPPED, and any state this table does not know;
- waiting (no run now; a row with elapsed time is a finished run): PENDING, REQUEUED,
  REQUEUE_HOLD, REQUEUE_FED, RESV_DEL_HOLD, SPECIAL_EXIT, RESIZING (the job goes on resized);
- interrupted (the run ended; the job may be requeued under the same JobID, so it ends only
  when no new run follows within a grace): PREEMPTED (cancelled), NODE_FAIL (failed);
- final: COMPLETED (succeeded); CANCELLED, REVOKED (cancelled); FAILED, TIMEOUT,
  OUT_OF_MEMORY, BOOT_FAIL, DEADLINE (failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final, Literal

from agents.collectors import Parsed

FIELDS: Final = ("JobID", "User", "Account", "Partition", "State", "AllocTRES", "ElapsedRaw",
                 "Start", "End", "ConsumedEnergyRaw")
Phase = Literal["running", "waiting", "interrupted", "final"]
STATUS: Final = {"COMPLETED": "succeeded", "CANCELLED": "cancelled", "REVOKED": "cancelled",
                 "PREEMPTED": "cancelled", "FAILED": "failed", "TIMEOUT": "failed",
                 "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
                 "DEADLINE": "failed"}
INTERRUPTED: Final = frozenset({"PREEMPTED", "NODE_FAIL"})
WAITING: Final = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                            "SPECIAL_EXIT", "RESIZING"})
MAX_ENERGY_J: Final = 2**63  # at and above: Slurm's NO_VAL64 family of error values
_BAD_ID = re.compile(r"[^a-z0-9._-]+")


def phase_of(state: str) -> Phase:
    if state in INTERRUPTED:
        return "interrupted"
    if state in STATUS:
        return "final"
    return "waiting" if state in WAITING else "running"


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One sacct row: one run of a job."""

    job_id: str
    tenant_id: str
    partition: str
    state: str  # first word: RUNNING, COMPLETED, CANCELLED, ...
    tres: dict[str, int]
    elapsed_s: int
    start: str  # as printed: identifies the run ("Unknown" before it starts)
    end: datetime | None
    energy_j: int | None  # None: not accounted (empty, 0 while running), or unreadable
    line: int = 0

    def devices(self, kind: str) -> int:
        if kind == "cpu":
            return self.tres.get("cpu", 0)
        if "gres/gpu" in self.tres:
            return self.tres["gres/gpu"]
        return sum(v for k, v in self.tres.items() if k.startswith("gres/gpu:"))

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    @property
    def status(self) -> str | None:
        return STATUS.get(self.state)

    @property
    def started(self) -> bool:
        return self.start[:1].isdigit()


def ident(text: str, fallback: str = "unknown") -> str:
    """A Slurm name as an id matching the contract's pattern."""
    value = _BAD_ID.sub("-", text.strip().lower()).strip("-._")[:63]
    return value or fallback


def _tres(text: str, line: int, skipped: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key in ("cpu", "node") or key.startswith("gres/gpu"):
            if not value.isdigit():
                skipped.append(f"line {line}: AllocTRES {part[:30]!r} is not name=count (ignored)")
                continue
            out[key] = int(value)
    return out


def _time(text: str, tz: timezone) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=tz)
    except ValueError:
        return None  # Unknown, None


def _energy(text: str, where: str, skipped: list[str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        skipped.append(f"{where}: ConsumedEnergyRaw {text[:24]!r} is not joules; dropped, estimated")
        return None
    if value < 0 or value >= MAX_ENERGY_J:
        skipped.append(f"{where}: ConsumedEnergyRaw {text[:24]} is an error value; dropped, estimated")
        return None
    return value or None


def parse_sacct(text: str, tz: timezone) -> Parsed[SlurmJob]:
    """Rows of `sacct -P -n -o <FIELDS>` (pipe-separated), and the lines skipped, as warnings."""
    jobs: list[SlurmJob] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != len(FIELDS):
            skipped.append(f"line {number}: {len(fields)} fields, expected {len(FIELDS)} "
                           f"({','.join(FIELDS)}); truncated? skipped")
            continue
        job_id, user, account, partition, state, tres, elapsed, start, end, energy = fields
        if not elapsed.strip().isdigit():
            skipped.append(f"line {number}: ElapsedRaw {elapsed[:20]!r} is not seconds; skipped")
            continue
        if not job_id.strip():
            skipped.append(f"line {number}: empty JobID; skipped")
            continue
        jobs.append(SlurmJob(
            job_id=ident(job_id), tenant_id=ident(account or user), partition=partition.strip(),
            state=(state.split() or ["UNKNOWN"])[0].rstrip("+").upper(),
            tres=_tres(tres, number, skipped), elapsed_s=int(elapsed), start=start.strip(),
            end=_time(end, tz), energy_j=_energy(energy, f"line {number} job {job_id.strip()}", skipped),
            line=number))
    return Parsed(jobs, skipped)
