"""The accounting ledger's rule (SPEC §4): per job, each event that raises the highest `seq` yields
one entry priced from the price book. Pure: state and events in, entries and rejects out.

A job's state is the highest-seq event seen so far (its seq, cumulative totals and time). State
lives in ClickHouse as the cumulative totals carried on each entry, so a restarted worker
resumes from what is durable, and a replay of the partition, which repeats arrival order,
yields the same entries again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas.events import JobEvent
from schemas.prices import PriceBook
from schemas.reasons import Reason, Reject

JobKey = tuple[str, str]  # (dc_id, job_id)


@dataclass(frozen=True, slots=True)
class JobState:
    seq: int
    device_seconds_total: Decimal
    energy_kwh_total: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    dc_id: str
    job_id: str
    tenant_id: str
    pool_id: str
    device_model: str
    seq: int
    period_start: datetime
    period_end: datetime
    device_seconds: Decimal
    energy_kwh: Decimal
    amount_cny: Decimal
    priced: bool
    device_seconds_total: Decimal
    energy_kwh_total: Decimal

    def row(self, written_at: datetime | int) -> tuple[object, ...]:
        """The ledger_entries row, in LEDGER_COLUMNS order."""
        return (
            self.entry_id, self.dc_id, self.job_id, self.tenant_id, self.pool_id, self.device_model, self.seq,
            self.period_start, self.period_end, float(self.device_seconds), float(self.energy_kwh),
            self.amount_cny, int(self.priced), float(self.device_seconds_total), float(self.energy_kwh_total),
            written_at,
        )


LEDGER_COLUMNS = (
    "entry_id", "dc_id", "job_id", "tenant_id", "pool_id", "device_model", "seq", "period_start", "period_end",
    "device_seconds", "energy_kwh", "amount_cny", "priced", "device_seconds_total", "energy_kwh_total",
    "written_at",
)


def exact(value: float) -> Decimal:
    """The decimal a JSON number was written as (the shortest repr of the float)."""
    return Decimal(repr(value))


def job_key(event: JobEvent) -> JobKey:
    return (event.data.dc_id, event.data.job_id)


def step(
    state: JobState | None, event: JobEvent, prices: PriceBook
) -> tuple[JobState | None, Entry | Reject | None]:
    """Apply one job event to its job's state: a new entry, a counter_regression, or nothing."""
    d = event.data
    if state is not None and d.seq <= state.seq:
        return state, None  # a duplicate or a late lower seq yields nothing
    seconds_total = exact(d.device_seconds_total)
    energy_total = exact(d.energy_kwh_total)
    if state is not None and (
        seconds_total < state.device_seconds_total or energy_total < state.energy_kwh_total
    ):
        return state, Reject(
            Reason.COUNTER_REGRESSION,
            f"job {d.job_id} seq {d.seq}: totals {seconds_total} s, {energy_total} kWh fall below "
            f"seq {state.seq}'s {state.device_seconds_total} s, {state.energy_kwh_total} kWh",
        )
    if state is None:
        device_seconds, energy_kwh, period_start = seconds_total, energy_total, event.time
    else:
        device_seconds = seconds_total - state.device_seconds_total
        energy_kwh = energy_total - state.energy_kwh_total
        period_start = state.time
    amount, priced = prices.amount(d.device_model, d.tenant_id, device_seconds, event.time)
    entry = Entry(
        entry_id=f"{d.dc_id}/{d.job_id}/{d.seq}",
        dc_id=d.dc_id,
        job_id=d.job_id,
        tenant_id=d.tenant_id,
        pool_id=d.pool_id,
        device_model=d.device_model,
        seq=d.seq,
        period_start=period_start,
        period_end=event.time,
        device_seconds=device_seconds,
        energy_kwh=energy_kwh,
        amount_cny=amount,
        priced=priced,
        device_seconds_total=seconds_total,
        energy_kwh_total=energy_total,
    )
    return JobState(d.seq, seconds_total, energy_total, event.time), entry


@dataclass(slots=True)
class LedgerResult:
    entries: list[Entry]
    rejects: list[tuple[int, Reject]]  # (index of the event in the input, why)
    states: dict[JobKey, JobState]


def apply(
    events: Iterable[JobEvent], states: Mapping[JobKey, JobState], prices: PriceBook
) -> LedgerResult:
    """Apply events in arrival order to a copy of the states they touch."""
    current: dict[JobKey, JobState] = {}
    entries: list[Entry] = []
    rejects: list[tuple[int, Reject]] = []
    for index, event in enumerate(events):
        key = job_key(event)
        before = current[key] if key in current else states.get(key)
        after, outcome = step(before, event, prices)
        if after is not None:
            current[key] = after
        if isinstance(outcome, Entry):
            entries.append(outcome)
        elif isinstance(outcome, Reject):
            rejects.append((index, outcome))
    return LedgerResult(entries, rejects, current)
