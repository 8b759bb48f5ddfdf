"""The ranking core (SPEC §8): sellable devices per pool, the request's limits, ranked offers. Pure.

`rank_offers(request, pools, prices, now, headroom)` takes what the store knows about each pool
(`PoolView`: idle and online devices now, the forecast `idle_p10` per hour, the DC's last 24 h of
energy) and returns the `Answer`. No I/O, no clock: `surplus place` and `surplus api` both call it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from schemas.prices import PriceBook, shanghai_date
from surplus.dispatch.latency import latency_ms
from surplus.dispatch.model import LIMITS, Answer, Exclusion, Offer, Request

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PoolView:
    """One reporting pool as the store sees it at `now`."""

    dc_id: str
    pool_id: str
    hub: str
    province: str
    lat: float
    lon: float
    device_model: str
    idle_now: int
    online_now: int
    peak_tflops: Mapping[str, float]  # precision -> peak TFLOPS per device (0: none)
    tdp_w: float | None  # catalogue TDP per device (per core for CPUs); None: unknown
    idle_p10: Mapping[datetime, float] = field(default_factory=dict)  # UTC hour -> forecast p10
    green_share: float | None = None  # the DC's last 24 h, energy-weighted
    pue: float | None = None
    carbon_kg_per_facility_kwh: float | None = None


def window(now: datetime, hours: int) -> list[datetime]:
    """The UTC hours that overlap [now, now + hours): `hours` or `hours + 1` of them."""
    first = now.replace(minute=0, second=0, microsecond=0)
    last = now + hours * HOUR - timedelta(microseconds=1)
    return [first + i * HOUR for i in range(int((last - first) / HOUR) + 1)]


def sellable(p10s: Iterable[float], *, online: int, idle_now: int, headroom: Decimal) -> int:
    """floor(min p10) minus ceil(headroom x online), never more than idle now, never below 0."""
    lowest = min(p10s)
    margin = int((headroom * online).to_integral_value(rounding=ROUND_CEILING))
    return max(0, min(math.floor(lowest + 1e-9) - margin, idle_now))


def _failures(req: Request, pool: PoolView, hours: list[datetime], price: Decimal | None,
              latency: float, headroom: Decimal) -> tuple[list[str], int]:
    failed: list[str] = []
    sell = 0
    if all(h in pool.idle_p10 for h in hours):
        sell = sellable((pool.idle_p10[h] for h in hours), online=pool.online_now,
                        idle_now=pool.idle_now, headroom=headroom)
        if sell < req.devices:
            failed.append("devices")
    else:
        failed.append("forecast")
    peak = pool.peak_tflops.get(req.precision, 0.0) or 0.0
    if peak <= 0:
        failed.append("precision")
    if req.device_model is not None and pool.device_model != req.device_model:
        failed.append("device_model")
    if req.min_tflops is not None and peak < req.min_tflops:
        failed.append("min_tflops")
    if req.max_latency_ms is not None and latency > req.max_latency_ms:
        failed.append("max_latency_ms")
    if req.min_green_share is not None and (pool.green_share is None or pool.green_share < req.min_green_share):
        failed.append("min_green_share")
    if price is None:
        failed.append("unpriced")
    elif req.max_price is not None and price > req.max_price:
        failed.append("max_price")
    return failed, sell


def _carbon(req: Request, pool: PoolView) -> float | None:
    if pool.tdp_w is None or pool.pue is None or pool.carbon_kg_per_facility_kwh is None:
        return None
    return round(req.devices * pool.tdp_w / 1000 * pool.pue * pool.carbon_kg_per_facility_kwh, 6)


def rank_offers(req: Request, pools: Iterable[PoolView], prices: PriceBook, now: datetime | None,
                *, headroom: Decimal = Decimal("0.05")) -> Answer:
    """Offers for `req` at `now` (None: the store has no snapshot), ranked; see the module doc."""
    offers: list[Offer] = []
    excluded: dict[str, list[int]] = {}  # limit -> [pools, idle devices]
    considered = 0
    hours = window(now, req.hours) if now is not None else []
    day = shanghai_date(now) if now is not None else None
    for pool in pools:
        considered += 1
        price = prices.price(pool.device_model, req.tenant_id or "", day) if day is not None else None
        latency = latency_ms(req.origin, pool.lat, pool.lon)
        failed, sell = _failures(req, pool, hours, price, latency, headroom)
        for limit in failed:
            tally = excluded.setdefault(limit, [0, 0])
            tally[0] += 1
            tally[1] += pool.idle_now
        if failed or price is None:
            continue
        offers.append(Offer(
            dc_id=pool.dc_id, pool_id=pool.pool_id, hub=pool.hub, province=pool.province,
            device_model=pool.device_model, devices_idle_now=pool.idle_now, devices_sellable=sell,
            price_cny_per_device_hour=price, cost_cny=Decimal(req.devices) * Decimal(req.hours) * price,
            green_share=None if pool.green_share is None else round(pool.green_share, 6),
            pue=None if pool.pue is None else round(pool.pue, 6),
            carbon_kg_per_hour=_carbon(req, pool), latency_ms=latency))
    offers.sort(key=lambda o: (_key(req, o), o.dc_id, o.pool_id))
    ranked = [Exclusion(limit=k, pools=v[0], devices_idle=v[1])
              for k, v in sorted(excluded.items(), key=lambda kv: (-kv[1][1], -kv[1][0], LIMITS.index(kv[0])))]
    most = ranked[0].limit if ranked else None
    return Answer(as_of=now, request=req, offers=offers[: req.limit], pools_considered=considered,
                  excluded=ranked, excluded_most_by=most, message=_message(offers, ranked, considered, now))


def _key(req: Request, offer: Offer) -> tuple[float | Decimal, ...]:
    if req.rank == "cost":
        return (offer.cost_cny,)
    if req.rank == "carbon":  # unknown carbon ranks last
        return (offer.carbon_kg_per_hour is None, offer.carbon_kg_per_hour or 0.0)
    return (offer.latency_ms,)


def _message(offers: list[Offer], excluded: list[Exclusion], considered: int, now: datetime | None) -> str:
    if offers:
        return f"{len(offers)} pool(s) can take the request"
    if now is None or considered == 0:
        return "no offers: no pool is reporting (the store has no current snapshot)"
    top = excluded[0]
    return (f"no offers: of {considered} reporting pool(s), the limit {top.limit!r} excluded the most "
            f"capacity ({top.pools} pool(s), {top.devices_idle} idle device(s) now)")
