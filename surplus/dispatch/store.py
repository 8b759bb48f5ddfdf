"""What the dispatcher reads from and writes to the store: snapshots, energy, forecasts. I/O.

Everything that reads the pools' minute snapshots goes through `_minute_snapshots` (one place to
re-point when the read side changes); the rest reads the SPEC §5 relations and raw samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.catalogue import load_catalogue
from surplus.dispatch.forecast import Quantiles
from surplus.dispatch.rank import PoolView, sellable, window

PoolKey = tuple[str, str]


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _minute_snapshots(db: str, where: str) -> str:
    """Per (minute ts, dc_id, pool_id) of a reporting pool: idle_devices, online_devices."""
    return (f"SELECT ts, dc_id, pool_id, idle_devices, online_devices FROM {db}.pool_minute_latest "
            f"WHERE {where}")


def latest_minute(client: Any, db: str, at: datetime | None = None) -> datetime | None:
    """The latest snapshot minute at or before `at` (default: now), or None for an empty store."""
    at = at or datetime.now(UTC)
    row = client.query(f"SELECT max(ts), count() FROM {db}.pool_minutes "
                       f"WHERE ts <= toDateTime('{_ts(at)}', 'UTC')").result_rows[0]
    return _utc(row[0]) if row[1] else None


def hourly_idle(client: Any, db: str, since: datetime, until: datetime) -> dict[PoolKey, dict[datetime, float]]:
    """Per pool: UTC hour -> the fewest idle devices at any reporting minute of it, [since, until)."""
    where = f"ts >= toDateTime('{_ts(since)}', 'UTC') AND ts < toDateTime('{_ts(until)}', 'UTC')"
    sql = (f"SELECT dc_id, pool_id, toStartOfHour(ts) AS hour, min(idle_devices) FROM ({_minute_snapshots(db, where)}) "
           "GROUP BY dc_id, pool_id, hour")
    out: dict[PoolKey, dict[datetime, float]] = defaultdict(dict)
    for dc_id, pool_id, hour, idle in client.query(sql).result_rows:
        out[(dc_id, pool_id)][_utc(hour)] = float(idle)
    return dict(out)


@dataclass(frozen=True, slots=True)
class PoolNow:
    dc_id: str
    pool_id: str
    device_model: str
    idle_now: int
    online_now: int
    peak_tflops: dict[str, float]


def pools_now(client: Any, db: str, as_of: datetime) -> list[PoolNow]:
    """The pools reporting at minute `as_of`, with their model and peak TFLOPS (latest sample)."""
    now_rows = client.query(_minute_snapshots(db, f"ts = toDateTime('{_ts(as_of)}', 'UTC')")).result_rows
    meta = {(r[0], r[1]): r[2:] for r in client.query(
        f"SELECT dc_id, pool_id, argMax(device_model, time), argMax(peak_tflops_fp16, time), "
        f"argMax(peak_tflops_fp32, time), argMax(peak_tflops_fp64, time) FROM {db}.capacity_samples "
        f"WHERE time <= toDateTime64('{_ts(as_of)}', 3, 'UTC') "
        f"AND time > toDateTime64('{_ts(as_of - timedelta(hours=3))}', 3, 'UTC') "
        f"GROUP BY dc_id, pool_id").result_rows}
    pools = []
    for _minute, dc_id, pool_id, idle, online in now_rows:
        model, fp16, fp32, fp64 = meta.get((dc_id, pool_id), ("", 0.0, 0.0, 0.0))
        pools.append(PoolNow(dc_id, pool_id, model, int(idle), int(online),
                             {"fp16": float(fp16), "fp32": float(fp32), "fp64": float(fp64)}))
    return sorted(pools, key=lambda p: (p.dc_id, p.pool_id))


def datacenters(client: Any, db: str) -> dict[str, tuple[str, str, float, float]]:
    """dc_id -> (hub, province, lat, lon) of its latest registration."""
    rows = client.query(
        f"SELECT dc_id, if(hub = '', 'none', hub), province, lat, lon FROM {db}.datacenters").result_rows
    return {r[0]: (r[1], r[2], float(r[3]), float(r[4])) for r in rows}


def energy_24h(client: Any, db: str, as_of: datetime) -> dict[str, tuple[float | None, float | None, float | None]]:
    """dc_id -> (green_share, pue, carbon kg per facility kWh) over the 24 hourly rows of
    cpn.dc_green_hourly ending with the hour that holds `as_of`, as sums over sums."""
    first = as_of.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = client.query(
        f"SELECT dc_id, sum(facility_kwh), sum(it_kwh), sum(green_kwh), sum(carbon_kg) FROM {db}.dc_green_hourly "
        f"WHERE hour >= toDateTime('{_ts(first)}', 'UTC') AND hour <= toDateTime('{_ts(as_of)}', 'UTC') "
        f"GROUP BY dc_id").result_rows
    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    for dc_id, facility, it, green, carbon in rows:
        out[dc_id] = (green / facility if facility > 0 else None, facility / it if it > 0 else None,
                      carbon / facility if facility > 0 else None)
    return out


def forecast_p10(client: Any, db: str, hours: list[datetime]) -> dict[PoolKey, dict[datetime, float]]:
    """Per pool: hour -> idle_p10 of the latest forecast made for that hour (FINAL)."""
    if not hours:
        return {}
    rows = client.query(
        f"SELECT dc_id, pool_id, hour, idle_p10 FROM {db}.pool_idle_forecast FINAL "
        f"WHERE hour >= toDateTime('{_ts(hours[0])}', 'UTC') AND hour <= toDateTime('{_ts(hours[-1])}', 'UTC')"
        ).result_rows
    out: dict[PoolKey, dict[datetime, float]] = defaultdict(dict)
    for dc_id, pool_id, hour, p10 in rows:
        out[(dc_id, pool_id)][_utc(hour)] = float(p10)
    return dict(out)


def pool_views(client: Any, db: str, as_of: datetime, hours: int) -> list[PoolView]:
    """What the ranking core needs about every pool reporting at `as_of`, for `hours` ahead."""
    catalogue = load_catalogue()
    dcs = datacenters(client, db)
    energy = energy_24h(client, db, as_of)
    p10 = forecast_p10(client, db, window(as_of, hours))
    views = []
    for pool in pools_now(client, db, as_of):
        hub, province, lat, lon = dcs.get(pool.dc_id, ("none", "", 0.0, 0.0))
        device = catalogue.get(pool.device_model)
        green, pue, carbon = energy.get(pool.dc_id, (None, None, None))
        views.append(PoolView(
            dc_id=pool.dc_id, pool_id=pool.pool_id, hub=hub, province=province, lat=lat, lon=lon,
            device_model=pool.device_model, idle_now=pool.idle_now, online_now=pool.online_now,
            peak_tflops=pool.peak_tflops, tdp_w=device.tdp_w if device else None,
            idle_p10=p10.get((pool.dc_id, pool.pool_id), {}), green_share=green, pue=pue,
            carbon_kg_per_facility_kwh=carbon))
    return views


def write_forecast(client: Any, db: str, made_at: datetime,
                   rows: Iterable[tuple[str, str, str, Quantiles]]) -> int:
    """Insert (dc_id, pool_id, device_model, quantiles) rows made at `made_at`; the count written."""
    data = [[_utc(made_at).replace(tzinfo=None), dc, pool, model, q.hour.replace(tzinfo=None),
             q.idle_p10, q.idle_p50, q.idle_p90] for dc, pool, model, q in rows]
    if data:
        client.insert(f"{db}.pool_idle_forecast", data,
                      column_names=["made_at", "dc_id", "pool_id", "device_model", "hour",
                                    "idle_p10", "idle_p50", "idle_p90"])
    return len(data)


def write_sellable(client: Any, db: str, made_at: datetime, as_of: datetime, views: list[PoolView],
                   headroom: Decimal) -> int:
    """Insert each pool's sellable devices over the next 24 h (the Grafana panel's figures)."""
    catalogue = load_catalogue()
    hours = window(as_of, 24)
    data = []
    for v in views:
        if not all(h in v.idle_p10 for h in hours):
            continue
        device = catalogue.get(v.device_model)
        sell = sellable((v.idle_p10[h] for h in hours), online=v.online_now, idle_now=v.idle_now, headroom=headroom)
        data.append([_utc(made_at).replace(tzinfo=None), _utc(as_of).replace(tzinfo=None), v.dc_id, v.pool_id, v.hub,
                     v.province, v.device_model, device.kind if device else "unknown", v.idle_now, sell])
    if data:
        client.insert(f"{db}.pool_sellable_24h", data,
                      column_names=["made_at", "as_of", "dc_id", "pool_id", "hub", "province", "device_model",
                                    "device_class", "devices_idle_now", "devices_sellable"])
    return len(data)
