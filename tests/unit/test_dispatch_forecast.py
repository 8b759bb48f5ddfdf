"""The forecast (SPEC §8): a constant pool is forecast exactly; on a simulated fleet with a known
diurnal curve the p10 coverage on held-out days is about 0.9; thin data falls back."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from agents.backfill import HISTORY_INTERVALS, without_jobs
from agents.collectors.simulator import SimulatedDataCenter
from agents.fleet import national_fleet
from surplus.dispatch.forecast import backtest, forecast_pool, quantile

END = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def hours(days: int, value: object) -> dict[datetime, float]:
    start = END - timedelta(days=days)
    return {start + i * HOUR: (value(start + i * HOUR) if callable(value) else value)  # type: ignore[misc]
            for i in range(days * 24)}


def test_a_constant_pool_is_forecast_exactly() -> None:
    rows = forecast_pool(hours(21, 37.0), END, horizon_h=168)
    assert len(rows) == 168 and rows[0].hour == END
    assert {(r.idle_p10, r.idle_p50, r.idle_p90) for r in rows} == {(37.0, 37.0, 37.0)}


def test_thin_history_falls_back_and_still_forecasts() -> None:
    rows = forecast_pool(hours(3, lambda t: 10.0 + t.hour), END, horizon_h=24)  # 3 days: hour of day
    assert [r.idle_p50 for r in rows] == [10.0 + h for h in range(24)]
    few = forecast_pool(hours(1, 5.0) | {END - 2 * HOUR: 7.0}, END, horizon_h=3)  # one day: all hours
    assert len(few) == 3 and all(0 <= r.idle_p10 <= r.idle_p50 <= r.idle_p90 <= 7.0 for r in few)
    assert forecast_pool({}, END) == []


def test_quantiles_are_ordered_and_within_what_was_seen() -> None:
    rows = forecast_pool(hours(21, lambda t: float((t.hour * 7919 + t.day * 104729) % 50)), END, horizon_h=48)
    assert all(0 <= r.idle_p10 <= r.idle_p50 <= r.idle_p90 <= 49 for r in rows)


def test_quantile_is_linear_between_order_statistics() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and quantile([5.0], 0.1) == 5.0


def simulated_hourly_idle(dcs: int, days: int, seed: int) -> list[dict[datetime, float]]:
    """Per pool, the fewest idle devices at any minute of each hour, from the simulator's own
    capacity events (30-minute samples: each minute stands on the latest sample before it)."""
    out: dict[tuple[str, str], dict[datetime, float]] = defaultdict(dict)
    start = END - timedelta(days=days)
    for dc in map(without_jobs, national_fleet(dcs, seed=seed)):
        sim = SimulatedDataCenter(dc.dc, dc.sim, HISTORY_INTERVALS, start=start)
        for e in sim.events_between(start, END):
            if e["type"] == "cpn.capacity.v1":
                d = e["data"]
                hour = datetime.fromisoformat(e["time"].replace("Z", "+00:00")).replace(minute=0, second=0,
                                                                                        microsecond=0)
                key = (d["dc_id"], d["pool_id"])
                idle = float(d["devices_online"] - d["devices_allocated"])
                out[key][hour] = min(out[key].get(hour, idle), idle)
    return list(out.values())


@pytest.mark.slow
def test_backtest_on_a_simulated_diurnal_fleet_covers_about_ninety_percent() -> None:
    histories = simulated_hourly_idle(8, 21, seed=5)
    score = backtest(histories, END - timedelta(days=7), 7)
    assert score.pools == sum(1 for h in histories if h) and score.hours == score.pools * 7 * 24
    assert score.p10_coverage is not None and 0.85 <= score.p10_coverage <= 0.95, score
    assert score.p90_coverage is not None and 0.85 <= score.p90_coverage <= 0.95, score
    assert score.p50_wape is not None and score.p50_wape < 0.15
