"""The text report at any width: every figure in full, names complete, lines within the width.

The report dict has the demo's proportions (8 hubs with their full names, 48 DCs, hundreds of
thousands of CPU cores, thousands of PFLOPS): at 80 columns the old tables cut `Online
3,982.…` and `Green 41.8…` and dropped the hub and DC names.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

import pytest
from rich.console import Console

from schemas.hubs import HUBS
from surplus.report_model import validate
from surplus.report_render import render_report, render_tenants
from surplus.text_tables import Column, Group, Sheet, layout, print_sheet
from tests.report_numbers import missing_figures, unexplained_numbers


def _split(rng: random.Random, scale: int) -> dict[str, Any]:
    out = {}
    for kind, n in (("accelerators", scale), ("cpu_cores", 20 * scale)):
        online = rng.randint(n // 2, n)
        allocated = rng.randint(0, online)
        out[kind] = {"idle": online - allocated, "online": online, "allocated": allocated}
    return out


def _surplus(rng: random.Random, scale: int) -> dict[str, Any]:
    devices = _split(rng, scale)
    fp16 = rng.uniform(0.5, 4000.0)
    return {"idle_pflops": {"fp16": fp16, "fp32": fp16 / 7.3, "fp64": fp16 / 91.0},
            "online_pflops_fp16": fp16 * rng.uniform(1.0, 3.0),
            "idle_devices": sum(d["idle"] for d in devices.values()),
            "online_devices": sum(d["online"] for d in devices.values()),
            "allocated_devices": sum(d["allocated"] for d in devices.values()),
            "devices": devices, "pools_reporting": rng.randint(1, 900),
            "pools_stale": rng.randint(0, 40)}


def _energy(rng: random.Random) -> dict[str, Any]:
    facility = rng.uniform(1e4, 9e6)
    it = facility / rng.uniform(1.05, 1.6)
    green = facility * rng.uniform(0.05, 0.95)
    return {"facility_kwh": facility, "it_kwh": it, "green_kwh": green,
            "carbon_kg": rng.uniform(1e3, 4e6), "green_share": green / facility,
            "pue": facility / it}


def demo_sized_report(seed: int = 1) -> dict[str, Any]:
    """A report of the demo's size and shape, every key of the declared type."""
    rng = random.Random(seed)
    hubs = []
    for hub_id, hub in HUBS.items():
        row = {"hub": hub_id, "name": hub.name, **_surplus(rng, 3000), **_energy(rng)}
        row |= {"green_share_target": 0.8, "green_share_met": row["green_share"] >= 0.8,
                "pue_target": hub.pue_target,
                "pue_met": None if hub.pue_target is None else row["pue"] <= hub.pue_target}
        hubs.append(row)
    dcs = [{"dc_id": f"jjj-zhangjiakou-{i:02d}", "name": f"Zhangjiakou DC {i}", "hub": "jjj",
            "province": "CN-HE", **_surplus(rng, 800)} for i in range(1, 11)]
    return {
        "at": "2026-12-03T14:02:00Z", "requested_at": None,
        "period": {"start": None, "end": None, "hours": None},
        "filters": {"hub": None, "dc": None}, "data_time": "2026-12-03T14:01:58Z",
        "targets": {"green_share": 0.8, "silent_after_s": 180},
        "national": {
            "ts": "2026-12-03T14:02:00Z", **_surplus(rng, 12530),
            "range": {"first_ts": "2026-11-12T14:00:00Z", "last_ts": "2026-12-03T14:02:00Z",
                      "minutes": 30_362, "fp16": {"min": 1234.5678, "max": 3982.4567},
                      "fp32": {"min": 170.25, "max": 545.5}, "fp64": {"min": 7.0, "max": 43.75}},
            "energy": _energy(rng),
        },
        "hubs": hubs,
        "top_dcs": dcs,
        "stale_dcs": [{"dc_id": "gba-shaoguan-03", "name": "Shaoguan DC 3", "hub": "gba",
                       "province": "CN-GD", "pools_reporting": 0, "pools_stale": 7,
                       "last_seen": "2026-12-03T13:00:05Z", "age_s": 3713.0,
                       "spool_backlog_events": 12_345, "reasons": ["stale_pools", "silent"]}],
        "tenants": [{"tenant_id": f"tenant-{name}", "device_hours": rng.uniform(10, 2e6),
                     "energy_kwh": rng.uniform(10, 5e6),
                     "amount_cny": f"{rng.uniform(1, 9e7):.4f}", "dcs": rng.randint(1, 48)}
                    for name in ("acme-research", "beihang-ai", "panda-llm", "sky")],
        "tenants_total": {"device_hours": 4e6, "energy_kwh": 9.5e6, "amount_cny": "123456789.1234",
                          "unpriced_device_hours": 1_234_567.891, "unpriced_share": 0.3086, "tenants": 4},
        "deadletters": {"total": 1_234_567, "by_reason": [
            {"reason": "undecodable", "count": 1_234_560}, {"reason": "bad_signature", "count": 7}]},
    }


def _render(report: dict[str, Any], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    render_report(report, console)
    return out.getvalue()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("width", [80, 100, 132, 200])
def test_every_figure_in_full_at_any_width(seed: int, width: int) -> None:
    report = demo_sized_report(seed)
    validate(report)
    text = _render(report, width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text and "\x1b" not in text
    assert missing_figures(text, report) == []
    assert unexplained_numbers(text, report) == []
    for hub in HUBS.values():
        assert hub.name in text  # "Guangdong-Hong Kong-Macao Greater Bay Area hub" too


def test_a_cut_number_is_caught() -> None:
    """The check itself: a figure cut as the old tables cut it is reported."""
    report = demo_sized_report()
    text = _render(report, 120)
    online = f"{report['hubs'][0]['online_pflops_fp16']:,.2f}"
    cut = text.replace(online, online[:6] + "…", 1)
    assert missing_figures(cut, report) != [] and unexplained_numbers(cut, report) != []


def test_devices_are_split_into_accelerators_and_cpu_cores() -> None:
    report = demo_sized_report()
    text = _render(report, 80)
    acc = report["national"]["devices"]["accelerators"]
    cpu = report["national"]["devices"]["cpu_cores"]
    assert re.search(rf"^Accelerators +idle {acc['idle']:,} of {acc['online']:,} online", text, re.M)
    assert re.search(rf"^CPU cores +idle {cpu['idle']:,} of {cpu['online']:,} online", text, re.M)
    assert "Devices idle" not in text  # the old line, cores and accelerators mixed


def test_wide_console_keeps_one_table_per_section() -> None:
    text = _render(demo_sized_report(), 240)
    assert "Hubs\n" in text and "Hubs: " not in text


def test_tenants_only_at_80_columns() -> None:
    report = demo_sized_report()
    text_io = io.StringIO()
    render_tenants(report, Console(file=text_io, width=80, color_system=None))
    text = text_io.getvalue()
    for t in report["tenants"]:
        assert t["tenant_id"] in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_sheet_stacks_groups_then_columns_then_blocks() -> None:
    sheet = Sheet("T", (Column("Key", text=True),), (
        Group("a", (Column("A1"), Column("A2"))), Group("b", (Column("B1"),))))
    sheet.add_row("k1", "1,111,111.11", "2,222,222.22", "3,333,333.33")
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert layout(sheet, 200, console) == [("T", [0, 1, 2, 3])]
    assert layout(sheet, 32, console) == [("T: a", [0, 1, 2]), ("T: b", [0, 3])]
    assert layout(sheet, 20, console) == [("T: a", [0, 1]), ("T: a", [0, 2]), ("T: b", [0, 3])]
    assert layout(sheet, 10, console) is None
    out = io.StringIO()
    print_sheet(Console(file=out, width=10, color_system=None), sheet)
    assert "A1: 1,111,111.11" not in out.getvalue()  # 16 columns: folded, but never cut
    assert "1,111,111.11".replace(",", "") in out.getvalue().replace(",", "").replace("\n", "")


def test_sheet_rejects_a_row_of_the_wrong_width() -> None:
    sheet = Sheet("T", (Column("Key", text=True),), (Group("a", (Column("A1"),)),))
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        sheet.add_row("only one")


def test_the_dispatchers_answer_fits_80_columns() -> None:
    # before: 12 columns squeezed into 80 cut the model names and the costs
    from datetime import UTC, datetime
    from decimal import Decimal

    from surplus.dispatch.cli import render_answer
    from surplus.dispatch.model import Answer, Offer, Request

    offers = [Offer(dc_id=f"gba-shaoguan-{i:02d}", pool_id=f"gpu-pool-{i}", hub="gba",
                    province="CN-GD", device_model="huawei-ascend-910b2", devices_idle_now=1234 + i,
                    devices_sellable=640 + i, price_cny_per_device_hour=Decimal("12.3456"),
                    cost_cny=Decimal("63211.4567") * (i + 1), green_share=0.618, pue=1.234,
                    carbon_kg_per_hour=1234.5, latency_ms=23.4) for i in range(3)]
    answer = Answer(as_of=datetime(2026, 12, 3, 14, 2, tzinfo=UTC),
                    request=Request(devices=64, hours=8, origin="CN-SH", min_green_share=0.6),
                    offers=offers, pools_considered=9, excluded=[], excluded_most_by=None,
                    message="3 offers")
    out = io.StringIO()
    render_answer(answer, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for o in offers:
        for cell in (o.dc_id, o.pool_id, o.device_model, f"{o.cost_cny:,}", f"{o.devices_sellable:,}",
                     "12.3456", "62%", "1.23", "1,234.5", "23.4"):
            assert any(o.dc_id in line and cell in line for line in text.splitlines()), cell
