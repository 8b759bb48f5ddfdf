"""PNG charts for `surplus report --png`: national idle PFLOPS and hub green share over time. I/O (files).

Drawn with matplotlib's Agg canvas directly (no pyplot, no global figure state), at an exact
pixel size: the figure is `width_px / DPI` by `height_px / DPI` inches, saved at `DPI`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.hubs import GREEN_SHARE_TARGET, HUBS

DPI = 100
PRECISIONS = (("fp16", "FP16"), ("fp32", "FP32"), ("fp64", "FP64"))


def _figure(width_px: int, height_px: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # a small canvas may leave constrained layout no room: draw it anyway, at the size asked
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        figure.savefig(path, dpi=DPI, format="png")
    return path


def national_surplus_png(
    series: Sequence[dict[str, Any]], path: Path, *, width_px: int = 1200, height_px: int = 600
) -> Path:
    """Idle PFLOPS FP16 / FP32 / FP64 per minute, one panel each (their scales differ)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    figure = _figure(width_px, height_px)
    axes = figure.subplots(len(PRECISIONS), 1, sharex=True, squeeze=False)[:, 0]
    times: list[datetime] = [row["ts"] for row in series]
    colours = ("tab:blue", "tab:orange", "tab:purple")
    for ax, (key, label), colour in zip(axes, PRECISIONS, colours, strict=True):
        ax.plot(times, [row[f"idle_pflops_{key}"] for row in series], color=colour, linewidth=1.2)
        ax.set_ylabel(f"{label}\nPFLOPS", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_ylim(bottom=0)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes[-1].set_xlabel("time (UTC)", fontsize=8)
    figure.suptitle("National idle compute (surplus), PFLOPS", fontsize=10)
    if not series:
        axes[0].text(0.5, 0.5, "no data", transform=axes[0].transAxes, ha="center")
    return _save(figure, path)


def green_share_png(
    series: Sequence[dict[str, Any]],
    path: Path,
    *,
    width_px: int = 1200,
    height_px: int = 600,
) -> Path:
    """Hourly green-energy share per hub (legend: "gz: Guizhou"), the 80 % target dashed."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    figure = _figure(width_px, height_px)
    ax = figure.subplots()
    by_hub: dict[str, list[dict[str, Any]]] = {}
    for row in series:
        by_hub.setdefault(row["hub"], []).append(row)
    for hub, rows in sorted(by_hub.items()):
        shares = [100 * row["green_share"] if row["green_share"] is not None else float("nan")
                  for row in rows]
        ax.plot([row["hour"] for row in rows], shares, marker="o", markersize=3, linewidth=1.2,
                label=_hub_label(hub))
    ax.axhline(100 * GREEN_SHARE_TARGET, color="green", linestyle="--", linewidth=1,
               label=f"target {GREEN_SHARE_TARGET:.0%}")
    ax.set_ylim(0, 100)
    ax.set_ylabel("green share of facility energy, %", fontsize=8)
    ax.set_xlabel("hour (UTC)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Green-energy share by hub, hourly", fontsize=10)
    if not series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    return _save(figure, path)


def _hub_label(hub: str) -> str:
    known = HUBS.get(hub)
    return f"{hub}: {known.short_name}" if known else hub
