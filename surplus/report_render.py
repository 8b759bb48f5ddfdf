"""The report on a terminal: rich tables of a `Report` or `TenantReport` dict. Presentation."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from schemas.hubs import GREEN_SHARE_TARGET
from surplus.report_build import PRECISIONS, SILENT_AFTER_S, TOP_DCS, TOP_TENANTS

if TYPE_CHECKING:
    from rich.console import Console


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


def _title(report: Mapping[str, Any], what: str, console: Console) -> None:
    def short(stamp: str | None) -> str:
        return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else "—"

    period = report["period"]
    span = "24 h to --at" if period["end"] else "all data"
    where = ", ".join(f"{k} {v}" for k, v in report["filters"].items() if v) or "national"
    console.print(f"[bold]{what}[/] · snapshot {short(report['at'])} · {span} · {where}",
                  highlight=False)


def render_report(report: Mapping[str, Any], console: Console) -> None:
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


def render_tenants(report: Mapping[str, Any], console: Console) -> None:
    """Print a `build_tenant_report` dict: every tenant's usage and amount."""
    _title(report, "Tenant usage", console)
    _tenant_table(report, "Tenants by amount", console)


def _tenant_table(report: Mapping[str, Any], title: str, console: Console) -> None:
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
