"""Unit tests of the report's pure parts: --at parsing, energy ratios, hub targets, rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from schemas.hubs import GREEN_SHARE_TARGET, HUBS
from surplus.errors import UserError
from surplus.report_build import _energy, iso, parse_at
from surplus.report_render import render_report, render_tenants

REFERENCE = Path(__file__).resolve().parents[2] / "schemas" / "reference" / "catalogue.json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-10T14:30", datetime(2025, 3, 10, 14, 30, tzinfo=UTC)),
        ("2025-03-10 14:30:15Z", datetime(2025, 3, 10, 14, 30, 15, tzinfo=UTC)),
        ("2025-03-10T22:30+08:00", datetime(2025, 3, 10, 14, 30, tzinfo=UTC)),
        ("2025-03-10", datetime(2025, 3, 10, tzinfo=UTC)),
    ],
)
def test_parse_at(text: str, expected: datetime) -> None:
    parsed = parse_at(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "now", "2025-13-01T00:00", "10/03/2025 14:30"])
def test_parse_at_rejects_with_one_line(text: str) -> None:
    with pytest.raises(UserError, match="--at") as caught:
        parse_at(text)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


def test_iso_is_utc_with_z() -> None:
    assert iso(datetime(2025, 3, 10, 22, 30, tzinfo=timezone(timedelta(hours=8)))) == "2025-03-10T14:30:00Z"
    assert iso(None) is None


def test_energy_ratios_are_sums_over_sums() -> None:
    # two hours: 90 % green of 10 kWh, then 10 % green of 90 kWh -> 18 %, not the mean 50 %
    hours = [(10.0, 8.0, 9.0), (90.0, 60.0, 9.0)]
    total = {"facility_kwh": sum(h[0] for h in hours), "it_kwh": sum(h[1] for h in hours),
             "green_kwh": sum(h[2] for h in hours), "carbon_kg": 1.5}
    energy = _energy(total)
    assert energy["green_share"] == pytest.approx(0.18)
    assert energy["pue"] == pytest.approx(100 / 68)
    assert _energy({"facility_kwh": 0, "it_kwh": 0, "green_kwh": 0, "carbon_kg": 0})["pue"] is None


def test_hub_targets_follow_the_reference() -> None:
    hubs = json.loads(REFERENCE.read_text(encoding="utf-8"))["hubs"]
    assert {h["id"]: (h["name_en"], h["pue_target"]) for h in hubs} == {
        k: (h.name, h.pue_target) for k, h in HUBS.items() if k != "none"}
    assert GREEN_SHARE_TARGET == 0.8


def _surplus(fp16: float) -> dict[str, Any]:
    return {"idle_pflops": {"fp16": fp16, "fp32": fp16 / 10, "fp64": fp16 / 20},
            "online_pflops_fp16": 2 * fp16, "idle_devices": 10, "online_devices": 20,
            "allocated_devices": 10,
            "devices": {"accelerators": {"idle": 4, "online": 8, "allocated": 4},
                        "cpu_cores": {"idle": 6, "online": 12, "allocated": 6}},
            "pools_reporting": 2, "pools_stale": 1}


REPORT: dict[str, Any] = {
    "at": "2025-03-10T02:02:00Z", "requested_at": None,
    "period": {"start": None, "end": None, "hours": None},
    "filters": {"hub": None, "dc": None}, "data_time": "2025-03-10T01:59:40Z",
    "targets": {"green_share": 0.8, "silent_after_s": 180},
    "national": {
        "ts": "2025-03-10T02:02:00Z", **_surplus(65.7),
        "range": {"first_ts": "2025-03-10T00:01:00Z", "last_ts": "2025-03-10T02:02:00Z",
                  "minutes": 122, "fp16": {"min": 50.0, "max": 116.2},
                  "fp32": {"min": 3.3, "max": 8.1}, "fp64": {"min": 0.8, "max": 2.7}},
        "energy": {"facility_kwh": 100.0, "it_kwh": 80.0, "green_kwh": 50.0, "carbon_kg": 20.0,
                   "green_share": 0.5, "pue": 1.25},
    },
    "hubs": [{"hub": "nm", "name": "Inner Mongolia hub", **_surplus(48.7), "facility_kwh": 1.0,
              "it_kwh": 1.0, "green_kwh": 0.9, "carbon_kg": 0.0, "green_share": 0.9, "pue": 1.1,
              "green_share_target": 0.8, "green_share_met": True, "pue_target": 1.2,
              "pue_met": True}],
    "top_dcs": [{"dc_id": "nm-alpha", "name": "Alpha", "hub": "nm", "province": "CN-NM",
                 **_surplus(15.8)}],
    "stale_dcs": [{"dc_id": "yrd-beta", "name": "", "hub": "yrd", "province": "CN-JS",
                   "pools_reporting": 0, "pools_stale": 1, "last_seen": "2025-03-10T01:20:50Z",
                   "age_s": 2330.0, "spool_backlog_events": 3, "reasons": ["stale_pools", "silent"]}],
    "tenants": [{"tenant_id": "tenant-a", "device_hours": 16.0, "energy_kwh": 11.2,
                 "amount_cny": "1234.5000", "dcs": 2}],
    "tenants_total": {"device_hours": 16.0, "energy_kwh": 11.2, "amount_cny": "1234.5000",
                      "unpriced_device_hours": 0.0, "unpriced_share": 0.0, "tenants": 1},
    "deadletters": {"total": 3, "by_reason": [{"reason": "undecodable", "count": 3}]},
}


@pytest.mark.parametrize("width", [80, 160])
def test_render_report(width: int) -> None:
    console = Console(record=True, width=width, color_system=None)
    render_report(REPORT, console)
    text = console.export_text()
    for needle in ("65.70", "116.20", "nm-alpha", "yrd-beta", "39 min", "1,234.5000",
                   "undecodable", "90.0 %", "1.100 (1.20)"):
        assert needle in text
    assert "Inner Mongolia hub" in text  # names complete at any width
    assert max(len(line) for line in text.splitlines()) <= width


def test_render_empty_sections() -> None:
    console = Console(record=True, width=100, color_system=None)
    render_report({**REPORT, "national": None, "hubs": [], "top_dcs": [], "stale_dcs": [],
                   "tenants": [], "deadletters": {"total": 0, "by_reason": []}}, console)
    text = console.export_text()
    assert "no surplus snapshot yet" in text and "Stale DCs (stale pools, or silent over 180 s): none" in text


def test_render_tenants_only() -> None:
    console = Console(record=True, width=100, color_system=None)
    render_tenants({k: REPORT[k] for k in ("at", "requested_at", "period", "filters", "tenants",
                                           "tenants_total")}, console)
    text = console.export_text()
    assert "tenant-a" in text and "all 1" in text and "Hubs" not in text
