"""The ledger rule (SPEC §4) on its own: entries, duplicates, late lower seq, regressions, pricing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import JobEvent
from schemas.prices import PriceBook
from schemas.reasons import Reason, Reject
from streams.ledger import Entry, apply, step

BOOK = PriceBook.parse("""
[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "12.00"
effective_from = 2026-01-01

[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "10.00"
effective_from = 2026-11-21

[[price]]
device_model = "nvidia-h100-sxm5-80gb"
tenant_id = "lab"
cny_per_device_hour = "6.6666"
effective_from = 2026-01-01
""")
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai


def job(seq: int, seconds: float, energy: float, *, minutes: int | None = None, tenant: str = "co",
        model: str = "nvidia-h100-sxm5-80gb", job_id: str = "j1") -> JobEvent:
    t = T0 + timedelta(minutes=seq if minutes is None else minutes)
    data: dict[str, Any] = {"dc_id": "dc", "job_id": job_id, "tenant_id": tenant, "pool_id": "p",
                            "device_model": model, "devices": 1, "phase": "usage", "seq": seq,
                            "device_seconds_total": seconds, "energy_kwh_total": energy}
    return JobEvent.model_validate({"specversion": "1.0", "id": f"{job_id}-{seq}", "source": "//cpn/dc/dc",
                                    "type": "cpn.job.v1", "time": t.isoformat(),
                                    "datacontenttype": "application/json", "data": data})


def test_first_event_and_deltas() -> None:
    state, first = step(None, job(0, 0, 0), BOOK)
    assert isinstance(first, Entry) and first.device_seconds == 0 and first.period_start == first.period_end
    state, second = step(state, job(1, 60, 0.5), BOOK)
    assert isinstance(second, Entry)
    assert second.entry_id == "dc/j1/1"
    assert second.device_seconds == Decimal(60) and second.energy_kwh == Decimal("0.5")
    assert second.period_start == first.period_end and second.period_end == T0 + timedelta(minutes=1)
    assert second.amount_cny == Decimal("0.2000")  # 60 s at 12.00 / h


def test_duplicate_and_late_lower_seq_yield_nothing() -> None:
    state, _ = step(None, job(2, 120, 1), BOOK)
    same, out = step(state, job(2, 120, 1), BOOK)
    assert out is None and same == state
    same, out = step(state, job(1, 60, 0.5), BOOK)
    assert out is None and same == state


def test_counter_regression_changes_nothing() -> None:
    state, _ = step(None, job(2, 120, 1.0), BOOK)
    after, out = step(state, job(3, 100, 1.2), BOOK)
    assert isinstance(out, Reject) and out.reason is Reason.COUNTER_REGRESSION and after == state
    after, out = step(state, job(3, 130, 0.9), BOOK)
    assert isinstance(out, Reject) and after == state


def test_prices_by_shanghai_date_tenant_override_and_unpriced() -> None:
    # 15:59Z is 23:59 on the 20th in Shanghai: 12.00; 16:00Z is the 21st there: 10.00
    state, _ = step(None, job(0, 0, 0, minutes=0), BOOK)
    state, before = step(state, job(1, 3600, 0, minutes=59), BOOK)
    _, after = step(state, job(2, 7200, 0, minutes=60), BOOK)
    assert isinstance(before, Entry) and before.amount_cny == Decimal("12.0000")
    assert isinstance(after, Entry) and after.amount_cny == Decimal("10.0000")
    _, lab = step(None, job(1, 1800, 0, tenant="lab"), BOOK)
    assert isinstance(lab, Entry) and lab.amount_cny == Decimal("3.3333")  # 6.6666 / 2, half-even
    _, free = step(None, job(1, 3600, 0, model="biren-br100"), BOOK)
    assert isinstance(free, Entry) and free.amount_cny == Decimal("0.0000") and not free.priced
    assert all(isinstance(e.amount_cny, Decimal) for e in (before, after, lab, free) if isinstance(e, Entry))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(0, 2**32), st.floats(0, 0.5))
def test_entries_sum_to_the_highest_seq_totals_whatever_the_order(n: int, seed: int, dup: float) -> None:
    rnd = random.Random(seed)
    seconds, energy = 0.0, 0.0
    events = []
    for seq in range(n):
        seconds += rnd.choice([0, 60, 120, 7.5])
        energy = round(energy + rnd.random(), 6)
        events.append(job(seq, seconds, energy))
    arrived = events + [e for e in events if rnd.random() < dup]
    rnd.shuffle(arrived)
    result = apply(arrived, {}, BOOK)
    assert not result.rejects
    top = max(arrived, key=lambda e: e.data.seq)
    assert sum(e.device_seconds for e in result.entries) == Decimal(repr(top.data.device_seconds_total))
    assert sum(e.energy_kwh for e in result.entries) == Decimal(repr(top.data.energy_kwh_total))
    assert len({e.entry_id for e in result.entries}) == len(result.entries)
    # replaying the same arrival order from the resulting state yields nothing new
    again = apply(arrived, result.states, BOOK)
    assert again.entries == [] and again.rejects == []
