"""Unit tests of the report's PNG charts: exact pixel sizes and empty data, no store needed."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from surplus.charts import green_share_png, national_surplus_png

T0 = datetime(2025, 3, 10, tzinfo=UTC)


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


@pytest.mark.parametrize(("width", "height"), [(1200, 600), (1234, 567), (320, 240)])
def test_national_chart_has_the_asked_size(tmp_path: Path, width: int, height: int) -> None:
    series = [{"ts": T0 + timedelta(minutes=m), "idle_pflops_fp16": 100.0 + m,
               "idle_pflops_fp32": 8.0, "idle_pflops_fp64": 0.5} for m in range(180)]
    path = national_surplus_png(series, tmp_path / "n.png", width_px=width, height_px=height)
    assert png_size(path) == (width, height)


def test_green_chart_by_hub(tmp_path: Path) -> None:
    series = [{"hour": T0 + timedelta(hours=h), "hub": hub, "green_share": share}
              for h in range(6) for hub, share in (("nm", 0.85), ("yrd", None if h == 2 else 0.3))]
    path = green_share_png(series, tmp_path / "sub" / "g.png")
    assert png_size(path) == (1200, 600)


def test_charts_of_no_data_still_draw(tmp_path: Path) -> None:
    assert png_size(national_surplus_png([], tmp_path / "n.png")) == (1200, 600)
    assert png_size(green_share_png([], tmp_path / "g.png", width_px=640, height_px=480)) == (640, 480)
