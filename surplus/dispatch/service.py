"""The dispatcher's operations over a store: refresh the forecast, answer a request, backtest.
Wiring between the store (I/O) and the pure forecast and ranking cores."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.prices import PriceBook
from surplus.dispatch import store
from surplus.dispatch.forecast import DEFAULT_HORIZON_H, Backtest, backtest, forecast_pool
from surplus.dispatch.model import Answer, Request
from surplus.dispatch.rank import PoolView, rank_offers, window


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def forecasts(client: Any, db: str, as_of: datetime, *, lookback_days: int = 28,
              horizon_h: int = DEFAULT_HORIZON_H) -> dict[store.PoolKey, list[Any]]:
    """Per pool with history: the forecast made at `as_of` from the complete hours before it."""
    start = _hour(as_of)
    history = store.hourly_idle(client, db, start - timedelta(days=lookback_days), start)
    return {key: forecast_pool(h, as_of, horizon_h=horizon_h, lookback_days=lookback_days)
            for key, h in history.items()}


def refresh(client: Any, db: str, *, at: datetime | None = None, lookback_days: int = 28,
            headroom: Decimal = Decimal("0.05")) -> tuple[datetime | None, int]:
    """Fill cpn.pool_idle_forecast (made_at = the latest snapshot minute; idempotent) and the
    sellable-next-24-h table; returns (made_at, forecast rows written)."""
    as_of = store.latest_minute(client, db, at)
    if as_of is None:
        return None, 0
    models = {(p.dc_id, p.pool_id): p.device_model for p in store.pools_now(client, db, as_of)}
    made = forecasts(client, db, as_of, lookback_days=lookback_days)
    rows = [(dc, pool, models.get((dc, pool), ""), q) for (dc, pool), qs in made.items() for q in qs]
    written = store.write_forecast(client, db, as_of, rows)
    views = store.pool_views(client, db, as_of, 24)
    store.write_sellable(client, db, as_of, as_of, views, headroom)
    return as_of, written


def answer(client: Any, db: str, request: Request, prices: PriceBook, *, at: datetime | None = None,
           headroom: Decimal = Decimal("0.05"), lookback_days: int = 28) -> Answer:
    """Ranked offers for `request` at the latest snapshot minute (at or before `at`). When the
    store holds no forecast for the request's hours, one is made in memory from the history."""
    as_of = store.latest_minute(client, db, at)
    if as_of is None:
        return rank_offers(request, [], prices, None, headroom=headroom)
    views = store.pool_views(client, db, as_of, request.hours)
    hours = window(as_of, request.hours)
    if views and not any(all(h in v.idle_p10 for h in hours) for v in views):
        made = forecasts(client, db, as_of, lookback_days=lookback_days, horizon_h=len(hours))
        views = [_with(v, made.get((v.dc_id, v.pool_id), [])) for v in views]
    return rank_offers(request, views, prices, as_of, headroom=headroom)


def _with(view: PoolView, rows: list[Any]) -> PoolView:
    return replace(view, idle_p10={q.hour: q.idle_p10 for q in rows})


def surplus_now(client: Any, db: str, *, at: datetime | None = None) -> dict[str, Any]:
    """Idle and online devices now, national and by hub and device model (reporting pools)."""
    as_of = store.latest_minute(client, db, at)
    if as_of is None:
        return {"as_of": None, "pools_reporting": 0, "idle_devices": 0, "online_devices": 0, "by_hub": []}
    dcs = store.datacenters(client, db)
    by: dict[tuple[str, str], list[int]] = {}
    pools = store.pools_now(client, db, as_of)
    for p in pools:
        hub = dcs.get(p.dc_id, ("none",))[0]
        tally = by.setdefault((hub, p.device_model), [0, 0, 0])
        tally[0] += 1
        tally[1] += p.idle_now
        tally[2] += p.online_now
    return {"as_of": as_of, "pools_reporting": len(pools), "idle_devices": sum(p.idle_now for p in pools),
            "online_devices": sum(p.online_now for p in pools),
            "by_hub": [{"hub": hub, "device_model": model, "pools": t[0], "idle_devices": t[1], "online_devices": t[2]}
                       for (hub, model), t in sorted(by.items())]}


def run_backtest(client: Any, db: str, days: int, *, at: datetime | None = None,
                 lookback_days: int = 28) -> tuple[datetime | None, datetime | None, Backtest]:
    """Hold out the last `days` complete days before the latest snapshot; (cutoff, end, scores)."""
    as_of = store.latest_minute(client, db, at)
    if as_of is None:
        return None, None, backtest([], _hour(datetime.now().astimezone()), days)
    end = _hour(as_of)
    cutoff = end - timedelta(days=days)
    histories = store.hourly_idle(client, db, cutoff - timedelta(days=lookback_days), end)
    return cutoff, end, backtest(histories.values(), cutoff, days, lookback_days=lookback_days)
