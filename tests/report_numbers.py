"""Checks that the text report shows the figures of the JSON report in full (test helper).

`missing_figures` lists the figures of a `Report` dict that the text should show and does not
(each looked for, formatted as the report formats it, on a line naming its hub / DC / tenant);
`unexplained_numbers` lists the numbers printed in the text that are no figure of the report
(a number cut short, `3,982.` or `41.8…`, is one of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

RUN = re.compile(r"(?<![\w.,\-])\d[\d,.]*(?![\w\-])")  # a run of digits, commas and points
# times as printed, and the titles' own numbers ("Top 10 idle DCs")
STAMP = re.compile(r"Top \d+ |\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}|\d{2}-\d{2} \d{2}:\d{2}|\d{2}:\d{2}")


def _pf(value: float) -> str:
    return f"{value:,.2f}" if value >= 10 or value == 0 else f"{value:,.3f}"


def _numbers(value: Any) -> Iterator[float | Decimal]:
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _numbers(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _numbers(inner)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield value
    elif isinstance(value, str) and re.fullmatch(r"-?\d+\.\d{4}", value):
        yield Decimal(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
    elif isinstance(value, str) and value and not re.fullmatch(r"-?\d+\.\d{4}", value):
        yield value


def _shown(x: float | Decimal) -> set[str]:
    """Every way the report prints a figure: counts, PFLOPS, kWh, CNY, %, t, PUE, ages."""
    if isinstance(x, Decimal):
        return {f"{x:,.4f}"}
    f = float(x)
    out = {f"{f:,.0f}", f"{f:,.2f}", f"{f:,.3f}", _pf(f), f"{100 * f:.1f}", f"{100 * f:.0f}",
           f"{f / 1000:,.2f}", f"{f / 60:.0f}", f"{f / 3600:.1f}"}
    if isinstance(x, int):
        out.add(f"{x:,}")
    return out


def unexplained_numbers(text: str, report: Mapping[str, Any]) -> list[str]:
    """Numbers in `text` that are no figure of `report` as the report prints figures."""
    for s in sorted(set(_strings(report)), key=len, reverse=True):
        text = text.replace(s, " ")
    text = STAMP.sub(" ", text)
    allowed: set[str] = set()
    for x in _numbers(report):
        allowed |= _shown(x)
    tokens = (run.rstrip(".,") for run in RUN.findall(text))  # a sentence's comma or full stop
    return [token for token in tokens if token not in allowed]


def expected(report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(a word its line must hold, the figure as printed) for the figures the text shows."""
    national = report["national"]
    if national is not None:
        for p in ("fp16", "fp32", "fp64"):
            yield p.upper(), _pf(national["idle_pflops"][p])
            yield p.upper(), _pf(national["range"][p]["min"])
            yield p.upper(), _pf(national["range"][p]["max"])
        yield "Pools", f"{national['pools_reporting']:,}"
        yield "Pools", f"{national['pools_stale']:,}"
        for kind, label in (("accelerators", "Accelerators"), ("cpu_cores", "CPU cores")):
            for key in ("idle", "online", "allocated"):
                yield label, f"{national['devices'][kind][key]:,}"
        energy = national["energy"]
        if energy["green_share"] is not None:
            yield "Green share", f"{100 * energy['green_share']:.1f} %"
        if energy["pue"] is not None:
            yield "PUE", f"{energy['pue']:.3f}"
        yield "Carbon", f"{energy['carbon_kg'] / 1000:,.2f} t"
    for row, key in [(h, h["hub"]) for h in report["hubs"]] + [
            (d, d["dc_id"]) for d in report["top_dcs"]]:
        yield key, row["name"]
        for p in ("fp16", "fp32", "fp64"):
            yield key, _pf(row["idle_pflops"][p])
        for kind in ("accelerators", "cpu_cores"):
            split = row["devices"][kind]
            yield key, f"{split['idle']:,}/{split['online']:,}"
        yield key, f"{row['pools_reporting']:,}/{row['pools_stale']:,}"
    for h in report["hubs"]:
        yield h["hub"], _pf(h["online_pflops_fp16"])
        if h["green_share"] is not None:
            yield h["hub"], f"{100 * h['green_share']:.1f} %"
        if h["pue"] is not None:
            yield h["hub"], f"{h['pue']:.3f}"
        yield h["hub"], f"{h['carbon_kg'] / 1000:,.2f}"
    for d in report["stale_dcs"]:
        if d["name"]:
            yield d["dc_id"], d["name"]
        yield d["dc_id"], f"{d['pools_reporting']:,}/{d['pools_stale']:,}"
        if d["spool_backlog_events"] is not None:
            yield d["dc_id"], f"{d['spool_backlog_events']:,}"
        for reason in d["reasons"]:
            yield d["dc_id"], reason
    for t in report["tenants"]:
        yield t["tenant_id"], f"{t['device_hours']:,.2f}"
        yield t["tenant_id"], f"{t['energy_kwh']:,.2f}"
        yield t["tenant_id"], f"{Decimal(t['amount_cny']):,.4f}"
    total = report["tenants_total"]
    yield f"all {total['tenants']:,}", f"{Decimal(total['amount_cny']):,.4f}"
    if "unpriced_device_hours" in total:
        yield "Unpriced device-hours", f"{total['unpriced_device_hours']:,.2f}"
        if total["unpriced_share"] is not None:
            yield "Unpriced device-hours", f"({total['unpriced_share']:.1%})"
    for r in report["deadletters"]["by_reason"]:
        yield r["reason"], f"{r['count']:,}"


def missing_figures(text: str, report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The expected figures not found in full on a line of `text` that holds their word."""
    lines = text.splitlines()
    return [(word, figure) for word, figure in expected(report)
            if not any(_on(line, word) and _on(line, figure) for line in lines)]


def _on(line: str, word: str) -> bool:
    """`word` in `line` as a whole cell (not a piece of a longer number or name)."""
    return re.search(rf"(?<![\w.,\-]){re.escape(word)}(?![\w\-]|[.,]\d)", line) is not None
