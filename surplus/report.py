"""`surplus report`: surplus, green share, stale DCs, tenants, dead letters. Wiring + presentation.

`build_report` reads ClickHouse (through surplus.report_queries) into a JSON-ready dict: floats
for quantities, Decimal strings for money, ISO 8601 UTC for times. `render_report` prints that
dict with rich; `write_pngs` draws the charts (surplus.charts). `surplus demo` ends with these.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from schemas.hubs import GREEN_SHARE_TARGET, HUBS
from surplus import report_queries as q
from surplus.errors import UserError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from rich.console import Console

PERIOD = timedelta(hours=24)  # the period of a report --at a time
SILENT_AFTER_S = 180  # a DC whose last event is older than this (on the data's clock) is stale
TOP_DCS = 10
TOP_TENANTS = 10
NO_DATA = "no data yet: run `surplus demo` or a worker"
ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PRECISIONS = ("fp16", "fp32", "fp64")


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
        raise UserError(NO_DATA, exit_code=1)
    if dc is not None:
        dc_hub = q.dc_hub(client, database, dc)
        if dc_hub is None:
            raise UserError(f"--dc {dc!r}: no such DC in the store")
        if hub is not None and hub != dc_hub:
            raise UserError(f"--dc {dc!r} is in hub {dc_hub!r}, not {hub!r}")
        hub = dc_hub
    ts = q.snapshot_minute(client, database, at)
    if at is not None and ts is None:
        raise UserError(f"no surplus snapshot at or before {iso(at)}", exit_code=1)
    if at is None:
        return q.Scope(ts=ts, hub=hub, dc=dc), None
    start = at - PERIOD
    hour = timedelta(hours=1)
    first_hour = _floor_hour(start) + (hour if _floor_hour(start) < start else timedelta(0))
    return q.Scope(ts=ts, start=start, end=at, hours=(first_hour, _floor_hour(at - hour)),
                   hub=hub, dc=dc), at


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _surplus(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "idle_pflops": {p: float(row[f"idle_pflops_{p}"]) for p in PRECISIONS},
        "online_pflops_fp16": float(row["online_pflops_fp16"]),
        "idle_devices": int(row["idle_devices"]),
        "online_devices": int(row["online_devices"]),
        "allocated_devices": int(row["allocated_devices"]),
        "pools_reporting": int(row["pools_reporting"]),
        "pools_stale": int(row["pools_stale"]),
    }


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


def _hubs(client: Client, database: str, scope: q.Scope) -> list[dict[str, Any]]:
    surplus = {r["hub"]: r for r in q.hubs_at(client, database, scope)} if scope.ts else {}
    energy = {r["hub"]: r for r in q.green_by_hub(client, database, scope)}
    rows = []
    for hub in sorted(surplus.keys() | energy.keys()):
        known = HUBS.get(hub)
        name, pue_target = (known.name, known.pue_target) if known else (hub, None)
        row = {"hub": hub, "name": name, **_surplus(surplus.get(hub, _ZERO)),
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
    total = {"device_hours": sum(float(r["device_hours"]) for r in rows),
             "energy_kwh": sum(float(r["energy_kwh"]) for r in rows),
             "amount_cny": str(sum((r["amount_cny"] for r in rows), Decimal("0.0000")))}
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
    at: datetime | str | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see the module docstring for the value types)."""
    scope, requested = _scope(client, database, hub=hub, dc=dc, at=at)
    ref = requested or q.data_time(client, database)
    national = None
    if scope.ts is not None and (now := q.national_at(client, database, scope)) is not None:
        rng = q.national_range(client, database, scope)
        national = {
            "ts": iso(now["ts"]), **_surplus(now),
            "range": {"first_ts": iso(rng["first_ts"]), "last_ts": iso(rng["last_ts"]),
                      "minutes": int(rng["minutes"]),
                      **{p: {"min": float(rng[f"min_{p}"]), "max": float(rng[f"max_{p}"])}
                         for p in PRECISIONS}},
            "energy": _energy(q.green_national(client, database, scope)),
        }
    names = q.dc_names(client, database)
    top = [{"dc_id": r["dc_id"], "name": names.get(r["dc_id"], ""), "hub": r["hub"],
            "province": r["province"], **_surplus(r)}
           for r in (q.dcs_at(client, database, scope, TOP_DCS) if scope.ts else [])]
    dead = q.deadletters(client, database)
    return {
        **_head(scope, requested, hub, dc),
        "data_time": iso(ref),
        "targets": {"green_share": GREEN_SHARE_TARGET, "silent_after_s": SILENT_AFTER_S},
        "national": national,
        "hubs": _hubs(client, database, scope),
        "top_dcs": top,
        "stale_dcs": _stale(client, database, scope, ref),
        **_tenants(client, database, scope, TOP_TENANTS),
        "deadletters": {"total": sum(int(r["count"]) for r in dead),
                        "by_reason": [{"reason": r["reason"], "count": int(r["count"])} for r in dead]},
    }


def build_tenant_report(
    client: Client, database: str, *, hub: str | None = None, dc: str | None = None,
    at: datetime | str | None = None,
) -> dict[str, Any]:
    """Usage and amounts of every tenant over the period (`surplus report --tenants`)."""
    scope, requested = _scope(client, database, hub=hub, dc=dc, at=at)
    return {**_head(scope, requested, hub, dc), **_tenants(client, database, scope, None)}


def write_pngs(
    client: Client, database: str, directory: Path | str, *, width_px: int = 1200,
    height_px: int = 600, hub: str | None = None, dc: str | None = None,
    at: datetime | str | None = None,
) -> list[Path]:
    """The national surplus chart and the hourly green-share chart (by hub) as PNGs; their paths.

    The national chart covers the whole period; `hub` / `dc` restrict the green-share chart.
    """
    from surplus import charts

    scope, _ = _scope(client, database, hub=hub, dc=dc, at=at)
    directory = Path(directory)
    size = {"width_px": width_px, "height_px": height_px}
    return [
        charts.national_surplus_png(q.national_series(client, database, scope),
                                    directory / "national_surplus.png", **size),
        charts.green_share_png(q.green_series(client, database, scope),
                               directory / "green_share.png", **size),
    ]


# --- terminal output ----------------------------------------------------------------------


def _pf(value: float) -> str:
    return f"{value:,.2f}" if value >= 10 or value == 0 else f"{value:,.3f}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _mark(text: str, met: bool | None) -> str:
    return text if met is None else f"[{'green' if met else 'red'}]{text}[/]"


def _table(title: str, *columns: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in columns:
        table.add_column(column, justify="left" if column in _TEXT else "right",
                         no_wrap=column not in ("Why", "Name"))
    return table


_TEXT = {"Hub", "Name", "DC", "Province", "Prov.", "Last seen", "Why", "Reason", "Tenant", "Prec."}


def _wide(console: Console) -> bool:
    return console.width >= 120


def _title(report: dict[str, Any], what: str, console: Console) -> None:
    def short(stamp: str | None) -> str:
        return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else "—"

    period = report["period"]
    span = "24 h to --at" if period["end"] else "all data"
    where = ", ".join(f"{k} {v}" for k, v in report["filters"].items() if v) or "national"
    console.print(f"[bold]{what}[/] · snapshot {short(report['at'])} · {span} · {where}",
                  highlight=False)


def render_report(report: dict[str, Any], console: Console) -> None:
    """Print a `build_report` dict as rich tables."""
    _title(report, "Surplus report", console)
    national = report["national"]
    if national is None:
        console.print("no capacity data: no surplus snapshot yet")
    else:
        rng = national["range"]
        table = _table("National idle compute (PFLOPS)", "Prec.", "Now",
                       f"Min over {rng['minutes']} min", "Max")
        for p in PRECISIONS:
            table.add_row(p.upper(), _pf(national["idle_pflops"][p]), _pf(rng[p]["min"]),
                          _pf(rng[p]["max"]))
        console.print(table)
        energy = national["energy"]
        console.print(
            f"pools reporting {national['pools_reporting']}, stale {national['pools_stale']}; "
            f"devices idle {national['idle_devices']:,} of {national['online_devices']:,} online\n"
            f"green share {_pct(energy['green_share'])} (target {GREEN_SHARE_TARGET:.0%}), "
            f"PUE {energy['pue'] or 0:.3f}, carbon {energy['carbon_kg'] / 1000:,.2f} t",
            highlight=False,
        )
    wide = _wide(console)
    table = _table("Hubs (idle PFLOPS now; energy over the period)", "Hub",
                   *(["Name"] if wide else []), "FP16", "FP32", "FP64", "Online",
                   "Pools", "Green", "PUE (target)", "CO₂ t")
    for h in report["hubs"]:
        pue = "—" if h["pue"] is None else f"{h['pue']:.3f}"
        target = "" if h["pue_target"] is None else f" ({h['pue_target']:.2f})"
        table.add_row(h["hub"], *([h["name"]] if wide else []),
                      *(_pf(h["idle_pflops"][p]) for p in PRECISIONS),
                      _pf(h["online_pflops_fp16"]), f"{h['pools_reporting']}/{h['pools_stale']}",
                      _mark(_pct(h["green_share"]), h["green_share_met"]),
                      _mark(pue + target, h["pue_met"]), f"{h['carbon_kg'] / 1000:,.2f}")
    _show(console, table, report["hubs"])
    table = _table(f"Top {TOP_DCS} idle DCs (PFLOPS)", "#", "DC", *(["Name"] if wide else []),
                   "Hub", "Prov.", "FP16", "FP32", "FP64", "Devices", "Pools")
    for i, d in enumerate(report["top_dcs"], 1):
        table.add_row(str(i), d["dc_id"], *([d["name"]] if wide else []), d["hub"], d["province"],
                      *(_pf(d["idle_pflops"][p]) for p in PRECISIONS),
                      f"{d['idle_devices']:,}/{d['online_devices']:,}",
                      f"{d['pools_reporting']}/{d['pools_stale']}")
    _show(console, table, report["top_dcs"])
    table = _table(f"Stale DCs (stale pools, or silent over {SILENT_AFTER_S} s)", "DC", "Hub",
                   "Prov.", "Pools", "Last seen", "Age", "Spool", "Why")
    for d in report["stale_dcs"]:
        backlog = d["spool_backlog_events"]
        seen = d["last_seen"][5:16].replace("T", " ") if d["last_seen"] else "—"
        table.add_row(d["dc_id"], d["hub"], d["province"], f"{d['pools_reporting']}/{d['pools_stale']}",
                      seen, _age(d["age_s"]), "—" if backlog is None else f"{backlog:,}",
                      " ".join(d["reasons"]))
    _show(console, table, report["stale_dcs"])
    console.print("Pools: reporting/stale; Devices: idle/online; times UTC", style="dim")
    _tenant_table(report, f"Top {TOP_TENANTS} tenants by amount", console)
    table = _table("Dead letters", "Reason", "Count")
    for r in report["deadletters"]["by_reason"]:
        table.add_row(r["reason"], f"{r['count']:,}")
    _show(console, table, report["deadletters"]["by_reason"])


def render_tenants(report: dict[str, Any], console: Console) -> None:
    """Print a `build_tenant_report` dict: every tenant's usage and amount."""
    _title(report, "Tenant usage", console)
    _tenant_table(report, "Tenants by amount", console)


def _tenant_table(report: dict[str, Any], title: str, console: Console) -> None:
    table = _table(title, "Tenant", "Device hours", "Energy kWh", "Amount CNY", "DCs")
    table.show_footer = bool(report["tenants"])
    total = report["tenants_total"]
    footers = (f"all {total['tenants']}", f"{total['device_hours']:,.2f}",
               f"{total['energy_kwh']:,.2f}", f"{Decimal(total['amount_cny']):,.4f}", "")
    for column, footer in zip(table.columns, footers, strict=True):
        column.footer = footer
    for t in report["tenants"]:
        table.add_row(t["tenant_id"], f"{t['device_hours']:,.2f}", f"{t['energy_kwh']:,.2f}",
                      f"{Decimal(t['amount_cny']):,.4f}", str(t["dcs"]))
    _show(console, table, report["tenants"])


def _show(console: Console, table: Any, rows: list[Any]) -> None:
    if rows:
        console.print(table)
    else:
        console.print(f"[bold]{table.title}[/]: none")


@click.command(name="report")
@click.option("--url", envvar="CLICKHOUSE_URL", metavar="URL",
              help="The store: chdb:///path[?database=cpn] or http(s)://user:pass@host:8123/cpn "
                   "[env CLICKHOUSE_URL; default: chDB under var/chdb].")
@click.option("--at", "at_text", metavar="ISO-TIME",
              help="Report as of that minute (UTC unless the time has a zone): the latest snapshot "
                   "at or before it; the surplus range and the tenants cover the 24 h before it, "
                   "energy the whole hours within them. Default: the latest snapshot, and all "
                   "the data.")
@click.option("--hub", metavar="ID", help=f"Restrict the hub, DC and tenant tables to one hub "
                                          f"({', '.join(HUBS)}).")
@click.option("--dc", metavar="ID", help="Restrict the DC and tenant tables to one DC (and the hub "
                                         "table to its hub).")
@click.option("--tenants", "tenants_only", is_flag=True,
              help="Show only the tenants: usage and amounts per tenant (all of them).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON on stdout and nothing else (money as decimal strings).")
@click.option("--png", "png_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Also write national_surplus.png and green_share.png into DIR; print their paths.")
@click.option("--width-px", default=1200, show_default=True, type=click.IntRange(320, 8000),
              help="Width of the PNGs in pixels.")
@click.option("--height-px", default=600, show_default=True, type=click.IntRange(240, 8000),
              help="Height of the PNGs in pixels.")
def report(url: str | None, at_text: str | None, hub: str | None, dc: str | None,
           tenants_only: bool, as_json: bool, png_dir: Path | None, width_px: int,
           height_px: int) -> None:
    """National, hub and DC idle compute (surplus), green share and PUE against the hub targets,
    stale DCs, top tenants and dead letters, from ClickHouse.

    Exits 1 with "no data yet" on an empty store, 2 on bad options or an unreachable store. The
    embedded chDB store can be opened by one process at a time: stop a worker or demo using it
    first, or point --url at a ClickHouse server.
    """
    from clickhouse_connect.driver.exceptions import ClickHouseError

    at = parse_at(at_text) if at_text is not None else None
    try:
        _report(url, at, hub, dc, tenants_only, as_json, png_dir, width_px, height_px)
    except ClickHouseError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"ClickHouse query failed: {first}") from None


def _report(url: str | None, at: datetime | None, hub: str | None, dc: str | None,
            tenants_only: bool, as_json: bool, png_dir: Path | None, width_px: int,
            height_px: int) -> None:
    from surplus.paths import default_clickhouse_url
    from surplus.store import connect

    client, target = connect(url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url())
    db = target.database
    if tenants_only:
        data = build_tenant_report(client, db, hub=hub, dc=dc, at=at)
    else:
        data = build_report(client, db, hub=hub, dc=dc, at=at)
    pngs = []
    if png_dir is not None:
        pngs = write_pngs(client, db, png_dir, width_px=width_px, height_px=height_px,
                          hub=hub, dc=dc, at=at)
    if as_json:
        if pngs:
            data["charts"] = [str(p) for p in pngs]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    console = Console()
    (render_tenants if tenants_only else render_report)(data, console)
    for path in pngs:
        click.echo(f"wrote {path}")  # not through rich: a long path must not wrap
