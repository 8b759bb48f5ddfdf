"""The report as text: a `Report` or `TenantReport` dict on a console of any width. Presentation.

Every figure is printed in full: tables stack their column groups when the console is narrow
(surplus.text_tables), so `COLUMNS=80 surplus report | cat` loses nothing. Piped, rich prints
no colour and no control codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from schemas.hubs import GREEN_SHARE_TARGET
from surplus.report_build import PRECISIONS, SILENT_AFTER_S, TOP_DCS, TOP_TENANTS
from surplus.text_tables import Column, Group, Sheet, print_sheet

if TYPE_CHECKING:
    from rich.console import Console

_PF = ("FP16", "FP32", "FP64")


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


def _counts(split: Mapping[str, int]) -> str:
    return f"{split['idle']:,}/{split['online']:,}"


def _title(report: Mapping[str, Any], what: str, console: Console) -> None:
    def short(stamp: str | None) -> str:
        return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else "—"

    period = report["period"]
    span = ("24 h to --at" if report.get("requested_at") else
            "24 h to the latest data; --at for another time" if period["end"] else "all data")
    where = ", ".join(f"{k} {v}" for k, v in report["filters"].items() if v) or "national"
    console.print(f"[bold]{what}[/] · snapshot {short(report['at'])} · {span} · {where}",
                  highlight=False)


def _facts(console: Console, facts: list[tuple[str, str]]) -> None:
    """`label  value` lines, the labels padded to one width; a long value wraps at spaces."""
    width = max(len(label) for label, _ in facts)
    for label, value in facts:
        console.print(f"{label:<{width}}  {value}", highlight=False)


def _device_facts(devices: Mapping[str, Any]) -> list[tuple[str, str]]:
    acc, cpu = devices["accelerators"], devices["cpu_cores"]
    return [
        ("Accelerators", f"idle {acc['idle']:,} of {acc['online']:,} online, "
                         f"allocated {acc['allocated']:,}"),
        ("CPU cores", f"idle {cpu['idle']:,} of {cpu['online']:,} online, "
                      f"allocated {cpu['allocated']:,}"),
    ]


_DEVICES = Group("devices now, idle/online",
                 (Column("Accelerators"), Column("CPU cores"), Column("Pools")))


def render_report(report: Mapping[str, Any], console: Console) -> None:
    """Print a `build_report` dict within `console.width`; nothing is cut."""
    _title(report, "Surplus report", console)
    national = report["national"]
    if national is None:
        console.print("no capacity data: no surplus snapshot yet")
    else:
        rng = national["range"]
        sheet = Sheet("National idle compute (PFLOPS)", (Column("Prec.", text=True),),
                      (Group("now and over the period",
                             (Column("Now"), Column(f"Min over {rng['minutes']:,} min"),
                              Column("Max"))),))
        for p in PRECISIONS:
            sheet.add_row(p.upper(), _pf(national["idle_pflops"][p]), _pf(rng[p]["min"]),
                          _pf(rng[p]["max"]))
        print_sheet(console, sheet)
        energy = national["energy"]
        _facts(console, [
            ("Pools", f"reporting {national['pools_reporting']:,}, "
                      f"stale {national['pools_stale']:,}"),
            *_device_facts(national["devices"]),
            ("Green share", f"{_pct(energy['green_share'])} (target {GREEN_SHARE_TARGET:.0%})"),
            ("PUE", "—" if energy["pue"] is None else f"{energy['pue']:.3f}"),
            ("Carbon", f"{energy['carbon_kg'] / 1000:,.2f} t"),
        ])
        console.print()
    _hubs(report, console)
    _dcs(report, console)
    _stale(report, console)
    console.print("Devices: idle/online (a CPU pool's devices are cores).\n"
                  "Pools: reporting/stale. Times UTC.\n", style="dim")
    _tenant_table(report, f"Top {TOP_TENANTS} tenants by amount", console)
    console.print(_unpriced_line(report["tenants_total"]))
    sheet = Sheet("Dead letters", (Column("Reason", text=True),),
                  (Group("messages", (Column("Count"),)),))
    for r in report["deadletters"]["by_reason"]:
        sheet.add_row(r["reason"], f"{r['count']:,}")
    print_sheet(console, sheet)


def _hubs(report: Mapping[str, Any], console: Console) -> None:
    sheet = Sheet("Hubs", (Column("Hub", text=True),), (
        Group("names", (Column("Name", text=True),)),
        Group("idle PFLOPS now", (*(Column(p) for p in _PF), Column("Online FP16"))),
        _DEVICES,
        Group("energy over the period", (Column("Green"), Column("PUE (target)"),
                                         Column("CO₂ t"))),
    ))
    for h in report["hubs"]:
        pue = "—" if h["pue"] is None else f"{h['pue']:.3f}"
        target = "" if h["pue_target"] is None else f" ({h['pue_target']:.2f})"
        sheet.add_row(h["hub"], h["name"], *(_pf(h["idle_pflops"][p]) for p in PRECISIONS),
                      _pf(h["online_pflops_fp16"]), _counts(h["devices"]["accelerators"]),
                      _counts(h["devices"]["cpu_cores"]),
                      f"{h['pools_reporting']:,}/{h['pools_stale']:,}",
                      _mark(_pct(h["green_share"]), h["green_share_met"]),
                      _mark(pue + target, h["pue_met"]), f"{h['carbon_kg'] / 1000:,.2f}")
    print_sheet(console, sheet)


def _dcs(report: Mapping[str, Any], console: Console) -> None:
    sheet = Sheet(f"Top {TOP_DCS} idle DCs", (Column("#"), Column("DC", text=True)), (
        Group("names and places", (Column("Name", text=True), Column("Hub", text=True),
                                   Column("Prov.", text=True))),
        Group("idle PFLOPS now", tuple(Column(p) for p in _PF)),
        _DEVICES,
    ))
    for i, d in enumerate(report["top_dcs"], 1):
        sheet.add_row(str(i), d["dc_id"], d["name"], d["hub"], d["province"],
                      *(_pf(d["idle_pflops"][p]) for p in PRECISIONS),
                      _counts(d["devices"]["accelerators"]), _counts(d["devices"]["cpu_cores"]),
                      f"{d['pools_reporting']:,}/{d['pools_stale']:,}")
    print_sheet(console, sheet)


def _stale(report: Mapping[str, Any], console: Console) -> None:
    sheet = Sheet(f"Stale DCs (stale pools, or silent over {SILENT_AFTER_S} s)",
                  (Column("DC", text=True),), (
        Group("names and places", (Column("Name", text=True), Column("Hub", text=True),
                                   Column("Prov.", text=True))),
        Group("state", (Column("Pools"), Column("Last seen", text=True),
                        Column("Age"), Column("Spool"), Column("Why", text=True))),
    ))
    for d in report["stale_dcs"]:
        backlog = d["spool_backlog_events"]
        seen = d["last_seen"][5:16].replace("T", " ") if d["last_seen"] else "—"
        sheet.add_row(d["dc_id"], d["name"], d["hub"], d["province"],
                      f"{d['pools_reporting']:,}/{d['pools_stale']:,}", seen, _age(d["age_s"]),
                      "—" if backlog is None else f"{backlog:,}", " ".join(d["reasons"]))
    print_sheet(console, sheet)


def _unpriced_line(total: Mapping[str, Any]) -> str:
    share = total["unpriced_share"]
    return (f"Unpriced device-hours: {total['unpriced_device_hours']:,.2f} of "
            f"{total['device_hours']:,.2f}" + (f" ({share:.1%})" if share is not None else "")
            + "; no price in the price book, billed at 0\n")


def render_tenants(report: Mapping[str, Any], console: Console) -> None:
    """Print a `build_tenant_report` dict: every tenant's usage and amount."""
    _title(report, "Tenant usage", console)
    _tenant_table(report, "Tenants by amount", console)


def _tenant_table(report: Mapping[str, Any], title: str, console: Console) -> None:
    sheet = Sheet(title, (Column("Tenant", text=True),), (
        Group("usage and amount", (Column("Device hours"), Column("Energy kWh"),
                                   Column("Amount CNY"), Column("DCs"))),))
    total = report["tenants_total"]
    sheet.footer = (f"all {total['tenants']:,}", f"{total['device_hours']:,.2f}",
                    f"{total['energy_kwh']:,.2f}", f"{Decimal(total['amount_cny']):,.4f}", "")
    for t in report["tenants"]:
        sheet.add_row(t["tenant_id"], f"{t['device_hours']:,.2f}", f"{t['energy_kwh']:,.2f}",
                      f"{Decimal(t['amount_cny']):,.4f}", f"{t['dcs']:,}")
    print_sheet(console, sheet)
