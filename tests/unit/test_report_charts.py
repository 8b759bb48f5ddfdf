"""Unit tests of the report's charts: what each figure draws (read from its artists before it is
saved), readable time axes from minutes to months, exact pixel sizes; no store needed."""

from __future__ import annotations

import itertools
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from surplus.charts import (
    MIN_SPAN,
    green_share_figure,
    green_share_png,
    hub_surplus_figure,
    hub_surplus_png,
    national_surplus_figure,
    national_surplus_png,
    partial_hours,
)

T0 = datetime(2025, 3, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def national(minutes: int, step: int = 1) -> list[dict[str, Any]]:
    return [{"ts": T0 + timedelta(minutes=m), "idle_pflops_fp16": 100.0 + m % 7,
             "idle_pflops_fp32": 8.0, "idle_pflops_fp64": 0.5} for m in range(0, minutes, step)]


SILENT = {"dc_id": "yrd-beta", "hub": "yrd", "reasons": ["stale_pools", "silent"],
          "last_seen": (T0 + timedelta(minutes=80)).isoformat().replace("+00:00", "Z")}
STALE_POOLS = {"dc_id": "gz-beta", "hub": "gz", "reasons": ["stale_pools"],
               "last_seen": (T0 + timedelta(minutes=119)).isoformat().replace("+00:00", "Z")}


def _ticks(figure: Any, ax: Any) -> list[Any]:
    """The major tick labels inside the axis limits, after drawing."""
    figure.canvas.draw()
    low, high = ax.get_xlim()
    return [t.label1 for t in ax.xaxis.get_major_ticks() if low <= t.get_loc() <= high]


@pytest.mark.parametrize(("minutes", "step", "unit"), [
    (2, 1, ":"),  # a two-minute run: minutes, not seconds over a one-minute axis
    (240, 1, ":"),  # the demo's four simulated hours
    (3 * 24 * 60, 10, None),
    (31 * 24 * 60, 30, None),  # a month: days
])
@pytest.mark.parametrize(("width", "height"), [(1200, 600), (480, 320)])
def test_time_axis_is_readable_from_minutes_to_a_month(minutes: int, step: int, unit: str | None,
                                                      width: int, height: int) -> None:
    figure = national_surplus_figure(national(minutes, step), width_px=width, height_px=height)
    ax = figure.axes[-1]
    labels = _ticks(figure, ax)
    texts = [label.get_text() for label in labels]
    assert 3 <= len(labels) <= 9, texts
    assert all(texts) and all(a != b for a, b in itertools.pairwise(texts)), texts
    if unit:
        assert all(unit in t for t in texts[:1]), texts
    renderer = figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in labels]
    for left, right in itertools.pairwise(boxes):
        assert left.x1 <= right.x0, f"tick labels overlap: {texts}"
    low, high = ax.get_xlim()
    assert high - low >= MIN_SPAN / timedelta(days=1) - 1e-9
    assert ax.xaxis.get_offset_text().get_text() or minutes > 2 * 24 * 60  # the date, once


def test_a_single_hour_is_an_hour_wide_not_years() -> None:
    # before: one hourly point made matplotlib widen the axis to years (2025 ... 2029)
    figure = green_share_figure([{"hour": T0, "hub": "nm", "green_share": 0.5}])
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    assert high - low == pytest.approx(1 / 24)
    assert next(t.get_text() for t in _ticks(figure, ax)) == "00:00"


def test_silent_dcs_are_marked_where_they_were_last_seen() -> None:
    figure = national_surplus_figure(national(120), stale_dcs=[SILENT, STALE_POOLS])
    seen = T0 + timedelta(minutes=80)
    for ax in figure.axes:
        lines = [line for line in ax.get_lines() if line.get_gid() == "silent:yrd-beta"]
        assert len(lines) == 1 and lines[0].get_xdata()[0] == seen
    assert "yrd-beta dark" in [t.get_text() for t in figure.axes[0].texts]
    title = figure.get_suptitle()
    assert "1 DC(s) silent: yrd-beta" in title and "1 with stale pools: gz-beta" in title
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["yrd-beta last seen (silent since)"]


def test_no_stale_dc_no_mark() -> None:
    figure = national_surplus_figure(national(120))
    assert not any(str(line.get_gid()).startswith("silent:") for line in figure.axes[0].get_lines())
    assert "silent" not in figure.get_suptitle()


def test_hub_chart_stacks_idle_capacity_by_hub() -> None:
    series = [{"ts": T0 + timedelta(minutes=m), "hub": hub, "idle_pflops_fp16": value}
              for m in range(60) for hub, value in (("nm", 40.0), ("gz", 10.0), ("yrd", 5.0))
              if not (hub == "yrd" and m > 30)]  # yrd: nothing reporting after minute 30
    figure = hub_surplus_figure(series, stale_dcs=[SILENT])
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["nm: Inner Mongolia", "gz: Guizhou",
                          "yrd: Yangtze River Delta (stale: yrd-beta)"]
    assert len(ax.collections) == 3  # one band per hub
    top = ax.collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(55.0)  # the bands add up to the national figure
    assert ax.get_ylabel() == "idle FP16 PFLOPS, stacked by hub"


def test_partial_hours() -> None:
    hours = [T0 + h * HOUR for h in range(4)]
    # samples every 300 s from 00:35 to 03:20
    coverage = (T0 + timedelta(minutes=30), T0 + timedelta(hours=3, minutes=20), 300.0)
    assert partial_hours(hours, coverage) == {hours[0], hours[3]}
    whole = (T0 - timedelta(minutes=5), T0 + timedelta(hours=3, minutes=55), 300.0)
    assert partial_hours(hours, whole) == set()
    assert partial_hours(hours, None) == set()


def test_partial_hours_are_hollow_and_labelled() -> None:
    series = [{"hour": T0 + h * HOUR, "hub": hub, "green_share": share}
              for h in range(4) for hub, share in (("nm", 0.85), ("yrd", None if h == 2 else 0.3))]
    coverage = (T0 + timedelta(minutes=30), T0 + timedelta(hours=3, minutes=20), 300.0)
    figure = green_share_figure(series, coverage=coverage)
    ax = figure.axes[0]
    partial = [line for line in ax.get_lines() if str(line.get_gid()).startswith("partial:")]
    assert {line.get_gid() for line in partial} == {"partial:nm", "partial:yrd"}
    assert all(line.get_markerfacecolor() == "white" and len(line.get_xdata()) == 2
               for line in partial)
    assert [t.get_text() for t in ax.texts].count("partial") == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "partial hour (data cover part of it)" in labels and "nm: Inner Mongolia" in labels
    whole = [line for line in ax.get_lines() if line.get_gid() == "whole:nm"]
    assert len(whole[0].get_xdata()) == 2


def test_green_chart_marks_silent_dcs() -> None:
    series = [{"hour": T0 + h * HOUR, "hub": "yrd", "green_share": 0.3} for h in range(2)]
    figure = green_share_figure(series, stale_dcs=[SILENT, STALE_POOLS])
    ax = figure.axes[0]
    assert [line.get_gid() for line in ax.get_lines() if str(line.get_gid()).startswith("silent:")] == [
        "silent:yrd-beta"]
    assert "1 DC(s) silent: yrd-beta" in ax.get_title()
    assert "yrd-beta last seen (silent since)" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize(("width", "height"), [(1200, 600), (1234, 567), (320, 240)])
def test_charts_have_the_asked_size(tmp_path: Path, width: int, height: int) -> None:
    size = {"width_px": width, "height_px": height}
    assert png_size(national_surplus_png(national(180), tmp_path / "n.png", stale_dcs=[SILENT],
                                         **size)) == (width, height)
    hubs = [{"ts": T0 + timedelta(minutes=m), "hub": "nm", "idle_pflops_fp16": 1.0} for m in range(9)]
    assert png_size(hub_surplus_png(hubs, tmp_path / "h.png", **size)) == (width, height)


def test_charts_of_no_data_still_draw(tmp_path: Path) -> None:
    assert png_size(national_surplus_png([], tmp_path / "n.png")) == (1200, 600)
    assert png_size(hub_surplus_png([], tmp_path / "h.png")) == (1200, 600)
    assert png_size(green_share_png([], tmp_path / "sub" / "g.png", width_px=640,
                                    height_px=480)) == (640, 480)
