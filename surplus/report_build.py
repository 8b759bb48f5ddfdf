"""The report's figures: ClickHouse rows (surplus.report_queries) -> the report dict. Wiring (reads I/O).

`build_report` and `build_tenant_report` return the JSON-ready dicts declared in
surplus.report_model (`Report`, `TenantReport`): floats for quantities, Decimal strings for
money, ISO 8601 UTC for times. `write_pngs` draws the charts (surplus.charts). Hub names and
targets come from schemas/hubs.py. Raises UserError (one line) on bad options or an empty store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from schemas.hubs import GREEN_SHARE_TARGET, HUBS
from surplus import report_queries as q
from surplus.errors import UserError
from surplus.report_model import Report, TenantReport

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

PERIOD = timedelta(hours=24)  # the period of a report --at a time
SILENT_AFTER_S = 180  # a DC whose last event is older than this (on the data's clock) is stale
TOP_DCS = 10
TOP_TENANTS = 10
NO_DATA = "no data yet: run `surplus demo` or a worker"
ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PRECISIONS = ("fp16", "fp32", "fp64")
CHART_POINTS = 2000  # the hub chart's most time buckets (longer periods are averaged)


def parse_at(text: str) -> datetime:
    """An ISO 8601 time (a naive one is UTC) -> an aware UTC datetime; UserError otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise UserError(f"--at {text!r}: not an ISO 8601 time; use e.g. 2025-03-10T14:30Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _scope(
    client: Client, database: str, *, hub: str | None, dc: str | None, at: datetime | str | None
) -> tuple[q.Scope, datetime | None]:
    """Check the store and the options; resolve the snapshot minute and the period."""
    if isinstance(at, str):
        at = parse_at(at)
    elif at is not None:
        at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    if hub is not None and hub not in HUBS:
        raise UserError(f"--hub {hub!r}: not a hub; use one of {', '.join(HUBS)}")
    if dc is not None and not ID.match(dc):
        raise UserError(f"--dc {dc!r}: not a DC id (lowercase letters, digits, . _ -)")
    if "national_surplus_minute" not in q.relations(client, database) or not q.has_data(client, database):
        raise UserError(NO_DATA)
    if dc is not None:
        dc_hub = q.dc_hub(client, database, dc)
        if dc_hub is None:
            raise UserError(f"--dc {dc!r}: no such DC in the store")
        if hub is not None and hub != dc_hub:
            raise UserError(f"--dc {dc!r} is in hub {dc_hub!r}, not {hub!r}")
        hub = dc_hub
    ts = q.snapshot_minute(client, database, at)
    if at is not None and ts is None:
        raise UserError(f"no surplus snapshot at or before {iso(at)}")
    hour = timedelta(hours=1)
    if at is None:
        # bounded by default (SPEC §5: a question reads its range): the 24 h to the latest event
        # time in the store (the data's "now") or the latest snapshot minute, whichever is later
        # (a sample stands for minutes after its time); energy over the 24 hours up to that one
        latest = [_utc(t) for t in (q.data_time(client, database), ts) if t is not None]
        if not latest:
            return q.Scope(ts=ts, hub=hub, dc=dc), None
        end = max(latest)
        return q.Scope(ts=ts, start=end - PERIOD, end=end,
                       hours=(_floor_hour(end) - PERIOD + hour, _floor_hour(end)), hub=hub, dc=dc), None
    start = at - PERIOD
    first_hour = _floor_hour(start) + (hour if _floor_hour(start) < start else timedelta(0))
    return q.Scope(ts=ts, start=start, end=at, hours=(first_hour, _floor_hour(at - hour)),
                   hub=hub, dc=dc), at


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _surplus(row: dict[str, Any], devices: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "idle_pflops": {p: float(row[f"idle_pflops_{p}"]) for p in PRECISIONS},
        "online_pflops_fp16": float(row["online_pflops_fp16"]),
        "idle_devices": int(row["idle_devices"]),
        "online_devices": int(row["online_devices"]),
        "allocated_devices": int(row["allocated_devices"]),
        "devices": devices or _no_devices(),
        "pools_reporting": int(row["pools_reporting"]),
        "pools_stale": int(row["pools_stale"]),
    }


def _no_devices() -> dict[str, Any]:
    return {kind: {"idle": 0, "online": 0, "allocated": 0} for kind in ("accelerators", "cpu_cores")}


class _DeviceSplit:
    """Device counts at the snapshot minute by kind, per DC, per hub and national."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        from schemas.catalogue import load_catalogue

        catalogue = load_catalogue()
        self.national = _no_devices()
        self.hubs: dict[str, dict[str, Any]] = {}
        self.dcs: dict[str, dict[str, Any]] = {}
        for row in rows:
            device = catalogue.get(str(row["device_model"]))
            kind = "cpu_cores" if device is not None and device.kind == "cpu" else "accelerators"
            for split in (self.national, self.hubs.setdefault(str(row["hub"]), _no_devices()),
                          self.dcs.setdefault(str(row["dc_id"]), _no_devices())):
                for key in ("idle", "online", "allocated"):
                    split[kind][key] += int(row[f"{key}_devices"])


def _energy(row: dict[str, Any]) -> dict[str, Any]:
    """Sums and the energy-weighted ratios of SPEC §4 (sum over sum, never a mean of ratios)."""
    facility, it = float(row["facility_kwh"] or 0), float(row["it_kwh"] or 0)
    green = float(row["green_kwh"] or 0)
    return {
        "facility_kwh": facility,
        "it_kwh": it,
        "green_kwh": green,
        "carbon_kg": float(row["carbon_kg"] or 0),
        "green_share": green / facility if facility > 0 else None,
        "pue": facility / it if it > 0 else None,
    }


_ZERO = {f"idle_pflops_{p}": 0.0 for p in PRECISIONS} | dict.fromkeys(
    ("online_pflops_fp16", "idle_devices", "online_devices", "allocated_devices",
     "pools_reporting", "pools_stale"), 0)
_NO_ENERGY = dict.fromkeys(("facility_kwh", "it_kwh", "green_kwh", "carbon_kg"), 0.0)


def _hubs(client: Client, database: str, scope: q.Scope, split: _DeviceSplit) -> list[dict[str, Any]]:
    surplus = {r["hub"]: r for r in q.hubs_at(client, database, scope)} if scope.ts else {}
    energy = {r["hub"]: r for r in q.green_by_hub(client, database, scope)}
    rows = []
    for hub in sorted(surplus.keys() | energy.keys()):
        known = HUBS.get(hub)
        name, pue_target = (known.name, known.pue_target) if known else (hub, None)
        row = {"hub": hub, "name": name, **_surplus(surplus.get(hub, _ZERO), split.hubs.get(hub)),
               **_energy(energy.get(hub, _NO_ENERGY))}
        share, pue = row["green_share"], row["pue"]
        row |= {
            "green_share_target": GREEN_SHARE_TARGET,
            "green_share_met": None if share is None else share >= GREEN_SHARE_TARGET,
            "pue_target": pue_target,
            "pue_met": None if pue is None or pue_target is None else pue <= pue_target,
        }
        rows.append(row)
    rows.sort(key=lambda r: (-r["idle_pflops"]["fp16"], r["hub"]))
    return rows


def _stale(client: Client, database: str, scope: q.Scope, ref: datetime | None) -> list[dict[str, Any]]:
    """DCs with stale pools at the snapshot minute, or silent for SILENT_AFTER_S before `ref`."""
    found: dict[str, dict[str, Any]] = {}
    for row in q.stale_pools_at(client, database, scope) if scope.ts else []:
        found[row["dc_id"]] = {**row, "reasons": ["stale_pools"]}
    for row in q.last_seen(client, database, ref) if ref else []:
        if (scope.hub and row["hub"] != scope.hub) or (scope.dc and row["dc_id"] != scope.dc):
            continue
        age_s = max(0.0, (ref - row["last_seen"]).total_seconds()) if ref else 0.0
        entry = found.get(row["dc_id"])
        if entry is None and age_s <= SILENT_AFTER_S:
            continue
        if entry is None:
            entry = found[row["dc_id"]] = {**row, "pools_reporting": 0, "pools_stale": 0, "reasons": []}
        if age_s > SILENT_AFTER_S:
            entry["reasons"].append("silent")
        entry |= {"last_seen": row["last_seen"], "age_s": age_s,
                  "spool_backlog_events": int(row["spool_backlog_events"])}
    names = q.dc_names(client, database) if found else {}
    out = [
        {"dc_id": dc_id, "name": names.get(dc_id, ""), "hub": e["hub"], "province": e["province"],
         "pools_reporting": int(e["pools_reporting"]), "pools_stale": int(e["pools_stale"]),
         "last_seen": iso(e.get("last_seen")), "age_s": e.get("age_s"),
         "spool_backlog_events": e.get("spool_backlog_events"), "reasons": e["reasons"]}
        for dc_id, e in found.items()
    ]
    out.sort(key=lambda r: (-(r["age_s"] or 0), -r["pools_stale"], r["dc_id"]))
    return out


def _tenants(client: Client, database: str, scope: q.Scope, limit: int | None) -> dict[str, Any]:
    rows = q.tenants(client, database, scope, None)
    hours = sum(float(r["device_hours"]) for r in rows)
    unpriced = sum(float(r["unpriced_device_hours"]) for r in rows)
    total = {"device_hours": hours,
             "energy_kwh": sum(float(r["energy_kwh"]) for r in rows),
             "amount_cny": str(sum((r["amount_cny"] for r in rows), Decimal("0.0000"))),
             "unpriced_device_hours": unpriced, "unpriced_share": unpriced / hours if hours else None}
    top = [{"tenant_id": r["tenant_id"], "device_hours": float(r["device_hours"]),
            "energy_kwh": float(r["energy_kwh"]), "amount_cny": str(r["amount_cny"]),
            "dcs": int(r["dcs"])} for r in rows[:limit]]
    return {"tenants": top, "tenants_total": {**total, "tenants": len(rows)}}


def _head(scope: q.Scope, at: datetime | None, hub: str | None, dc: str | None) -> dict[str, Any]:
    return {
        "at": iso(scope.ts),
        "requested_at": iso(at),
        "period": {"start": iso(scope.start), "end": iso(scope.end),
                   "hours": [iso(h) for h in scope.hours] if scope.hours else None},
        "filters": {"hub": hub, "dc": dc},
    }


def build_report(
    client: Client, database: str, *, hub: str | None = None, dc: str | None = None,
    at: datetime | str | None = None, progress: Callable[[str], None] | None = None,
) -> Report:
    """The whole report as a JSON-ready dict of the declared `Report` shape.

    `progress` is called with the name of each step as it starts (surplus.progress).
    """
    step = progress or (lambda _: None)
    step("the snapshot minute")
    scope, requested = _scope(client, database, hub=hub, dc=dc, at=at)
    ref = requested or q.data_time(client, database)
    national = None
    step("national figures")
    split = _DeviceSplit(q.devices_at(client, database, scope) if scope.ts is not None else [])
    if scope.ts is not None and (now := q.national_at(client, database, scope)) is not None:
        rng = q.national_range(client, database, scope)
        national = {
            "ts": iso(now["ts"]), **_surplus(now, split.national),
            "range": {"first_ts": iso(rng["first_ts"]), "last_ts": iso(rng["last_ts"]),
                      "minutes": int(rng["minutes"]),
                      **{p: {"min": float(rng[f"min_{p}"]), "max": float(rng[f"max_{p}"])}
                         for p in PRECISIONS}},
            "energy": _energy(q.green_national(client, database, scope)),
        }
    step("DCs")
    names = q.dc_names(client, database)
    top = [{"dc_id": r["dc_id"], "name": names.get(r["dc_id"], ""), "hub": r["hub"],
            "province": r["province"], **_surplus(r, split.dcs.get(r["dc_id"]))}
           for r in (q.dcs_at(client, database, scope, TOP_DCS) if scope.ts else [])]
    step("hubs")
    hubs = _hubs(client, database, scope, split)
    step("stale DCs")
    stale = _stale(client, database, scope, ref)
    step("tenants")
    tenants = _tenants(client, database, scope, TOP_TENANTS)
    step("dead letters")
    dead = q.deadletters(client, database)
    return cast(Report, {
        **_head(scope, requested, hub, dc),
        "data_time": iso(ref),
        "targets": {"green_share": GREEN_SHARE_TARGET, "silent_after_s": SILENT_AFTER_S},
        "national": national,
        "hubs": hubs,
        "top_dcs": top,
        "stale_dcs": stale,
        **tenants,
        "deadletters": {"total": sum(int(r["count"]) for r in dead),
                        "by_reason": [{"reason": r["reason"], "count": int(r["count"])} for r in dead]},
    })


def build_tenant_report(
    client: Client, database: str, *, hub: str | None = None, dc: str | None = None,
    at: datetime | str | None = None,
) -> TenantReport:
    """Usage and amounts of every tenant over the period (`surplus report --tenants`)."""
    scope, requested = _scope(client, database, hub=hub, dc=dc, at=at)
    return cast(TenantReport, {**_head(scope, requested, hub, dc), **_tenants(client, database, scope, None)})


def write_pngs(
    client: Client, database: str, directory: Path | str, *, width_px: int = 1200,
    height_px: int = 600, hub: str | None = None, dc: str | None = None,
    at: datetime | str | None = None, report: Report | None = None,
) -> list[Path]:
    """The charts as PNGs in `directory`; their paths: national_surplus.png (national idle
    PFLOPS per minute), hub_surplus.png (idle FP16 stacked by hub) and green_share.png (hourly
    green share by hub, partial hours marked). Silent DCs are marked where they were last seen.

    The national chart stays national; `hub` / `dc` restrict the hub charts. `report`: the
    `build_report` of the same options, for its stale DCs (else they are read again).
    """
    from surplus import charts

    scope, requested = _scope(client, database, hub=hub, dc=dc, at=at)
    stale: list[Any]
    if report is not None:
        stale = list(report["stale_dcs"])
    else:
        stale = _stale(client, database, scope, requested or q.data_time(client, database))
    national_stale = _stale(client, database, q.Scope(ts=scope.ts, start=scope.start,
                                                      end=scope.end, hours=scope.hours),
                            requested or q.data_time(client, database)) if (hub or dc) else stale
    step = 1
    if scope.ts is not None:
        rng = q.national_range(client, database, scope)
        if rng["first_ts"] is not None:
            minutes = (rng["last_ts"] - rng["first_ts"]).total_seconds() / 60
            step = max(1, int(minutes // CHART_POINTS) + 1)
    directory = Path(directory)
    size = {"width_px": width_px, "height_px": height_px}
    return [
        charts.national_surplus_png(q.national_series(client, database, scope),
                                    directory / "national_surplus.png", stale_dcs=national_stale,
                                    **size),
        charts.hub_surplus_png(q.hub_series(client, database, scope, step),
                               directory / "hub_surplus.png", stale_dcs=stale, **size),
        charts.green_share_png(q.green_series(client, database, scope),
                               directory / "green_share.png",
                               coverage=q.power_coverage(client, database, scope),
                               stale_dcs=stale, **size),
    ]
