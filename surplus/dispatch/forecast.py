"""A forecast of each pool's idle devices per future hour, and its backtest (SPEC §8). Pure.

The quantity forecast is a pool's *hourly idle devices*: the fewest idle devices at any reporting
minute of the UTC hour (what could have been sold for the whole hour). The method is
seasonal-empirical by hour of week, robust to thin data:

1. For a future hour t, the reference values are the same hour of week in the past weeks
   (t - 7 d, t - 14 d, ... within the look-back). With at least two of them (14 days of history),
   the centre is their mean. With fewer, it falls back to the same hour of day on the past days,
   then to every past hour.
2. The spread comes from the pool's own history at the same level: every past value's
   leave-one-out residual against the other values of its slot, scaled to unit "one new value
   against a mean of m" form (divided by sqrt(1 + 1/m)); the forecast adds
   sqrt(1 + 1/n) x the residuals' empirical 10/50/90 % quantiles to the mean of n values.
   No distribution is assumed; a pool whose idle devices never change has no spread and is
   forecast exactly at its constant.

Quantiles are clipped to [0, the most idle devices seen]. `backtest` holds out the last days,
forecasts them from what came before, and counts how often the actual hour was at or above
`idle_p10` (p10 coverage, about 0.9 for a calibrated forecast) and the p50 error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
QUANTILES = (0.1, 0.5, 0.9)
DEFAULT_LOOKBACK_DAYS = 28
DEFAULT_HORIZON_H = 169  # a request of the longest H (168 h) can touch 169 hours


@dataclass(frozen=True, slots=True)
class Quantiles:
    hour: datetime
    idle_p10: float
    idle_p50: float
    idle_p90: float


def quantile(sorted_values: list[float], q: float) -> float:
    """Empirical quantile with linear interpolation between order statistics (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _slot_of(level: str, hour: datetime) -> int:
    if level == "week":
        return hour.weekday() * 24 + hour.hour
    if level == "day":
        return hour.hour
    return 0


class _Level:
    """One pooling level (hour of week, hour of day, all hours): values per slot and the
    normalised leave-one-out residuals of the whole pool at that level."""

    def __init__(self, level: str, history: Mapping[datetime, float]) -> None:
        self.level = level
        self.slots: dict[int, list[float]] = defaultdict(list)
        for hour in sorted(history):
            self.slots[_slot_of(level, hour)].append(history[hour])
        residuals: list[float] = []
        for values in self.slots.values():
            m = len(values) - 1
            if m < 1:
                continue
            total = sum(values)
            for v in values:
                others = (total - v) / m
                residuals.append((v - others) / math.sqrt(1 + 1 / m))
        self.residuals = sorted(residuals)

    def spread(self, n: int) -> tuple[float, ...]:
        if not self.residuals:
            return tuple(0.0 for _ in QUANTILES)
        scale = math.sqrt(1 + 1 / n)
        return tuple(scale * quantile(self.residuals, q) for q in QUANTILES)


def forecast_pool(history: Mapping[datetime, float], made_at: datetime, *, horizon_h: int = DEFAULT_HORIZON_H,
                  lookback_days: int = DEFAULT_LOOKBACK_DAYS) -> list[Quantiles]:
    """Quantiles for the `horizon_h` hours from the hour holding `made_at`, learnt from the
    complete hours of `history` (UTC hour -> hourly idle devices) in the `lookback_days` before it.
    Empty when there is no history."""
    start = made_at.replace(minute=0, second=0, microsecond=0)
    since = start - timedelta(days=lookback_days)
    past = {h: float(v) for h, v in history.items() if since <= h < start}
    if not past:
        return []
    cap = max(past.values())
    levels = {name: _Level(name, past) for name in ("week", "day", "all")}
    by_hour = sorted(past)
    out: list[Quantiles] = []
    for i in range(horizon_h):
        hour = start + i * HOUR
        refs: list[float] = []
        level = levels["all"]
        for name, step in (("week", timedelta(days=7)), ("day", timedelta(days=1))):
            refs = [past[h] for h in _back(hour, step, since) if h in past]
            if len(refs) >= 2:
                level = levels[name]
                break
        if len(refs) < 2:  # thin: every past hour (at most the last week of them)
            refs = [past[h] for h in by_hour[-168:]]
        centre = sum(refs) / len(refs)
        lo, mid, hi = (min(cap, max(0.0, round(centre + d, 3))) for d in level.spread(len(refs)))
        out.append(Quantiles(hour, lo, mid, hi))
    return out


def _back(hour: datetime, step: timedelta, since: datetime) -> Iterable[datetime]:
    t = hour - step
    while t >= since:
        yield t
        t -= step


@dataclass(frozen=True, slots=True)
class Backtest:
    """Held-out figures over every (pool, hour) with an actual value and a forecast."""

    pools: int
    hours: int
    p10_coverage: float | None  # share of hours with actual >= idle_p10
    p90_coverage: float | None  # share of hours with actual <= idle_p90
    p50_mae_devices: float | None  # mean |actual - idle_p50|
    p50_wape: float | None  # sum |actual - idle_p50| / sum actual


def backtest(histories: Iterable[Mapping[datetime, float]], cutoff: datetime, days: int, *,
             lookback_days: int = DEFAULT_LOOKBACK_DAYS) -> Backtest:
    """Forecast [cutoff, cutoff + days) from each pool's history before `cutoff` and score it."""
    pools = hours = covered = under90 = 0
    abs_err = actual_sum = 0.0
    end = cutoff + timedelta(days=days)
    for history in histories:
        rows = forecast_pool(history, cutoff, horizon_h=days * 24, lookback_days=lookback_days)
        scored = 0
        for row in rows:
            actual = history.get(row.hour)
            if actual is None or row.hour >= end:
                continue
            scored += 1
            covered += actual >= row.idle_p10
            under90 += actual <= row.idle_p90
            abs_err += abs(actual - row.idle_p50)
            actual_sum += actual
        hours += scored
        pools += scored > 0
    return Backtest(pools=pools, hours=hours,
                    p10_coverage=covered / hours if hours else None,
                    p90_coverage=under90 / hours if hours else None,
                    p50_mae_devices=abs_err / hours if hours else None,
                    p50_wape=abs_err / actual_sum if actual_sum else None)
