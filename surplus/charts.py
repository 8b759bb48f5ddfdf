"""PNG charts for `surplus report --png`: national idle PFLOPS, idle PFLOPS by hub and hourly green
share by hub, over time. I/O (files).

Drawn with matplotlib's Agg canvas directly (no pyplot, no global figure state), at an exact
pixel size: the figure is `width_px / DPI` by `height_px / DPI` inches, saved at `DPI`. Each
`*_figure` function returns the matplotlib Figure (tests read its artists); `*_png` saves it.

- DCs that went silent (the report's stale DCs with reason "silent") are marked where they were
  last seen; DCs with stale pools are named in the title.
- Hours that the power data cover only in part (the first and the last hour of a run, most
  often) are drawn hollow and labelled "partial".
- The time axis spans at least `MIN_SPAN`, with 3 to 8 ticks that `ConciseDateFormatter` labels
  (seconds or minutes for a short run, hours, days for a month), the date once in the offset.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.hubs import GREEN_SHARE_TARGET, HUBS
from surplus.paths import make_dir

DPI = 100
PRECISIONS = (("fp16", "FP16"), ("fp32", "FP32"), ("fp64", "FP64"))
MIN_SPAN = timedelta(minutes=15)
HOUR = timedelta(hours=1)
DARK = "tab:red"
MAX_MARKED = 6  # silent DCs drawn one by one; more are counted in the title


def _figure(width_px: int, height_px: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Any, path: Path) -> Path:
    """Write the figure as a PNG of its exact pixel size; the path."""
    make_dir(path.parent, "the charts directory")
    with warnings.catch_warnings():
        # a small canvas may leave constrained layout no room: draw it anyway, at the size asked
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        figure.savefig(path, dpi=DPI, format="png")
    return path


def time_axis(ax: Any, start: datetime | None, end: datetime | None) -> None:
    """Limits of at least MIN_SPAN around the data, and ticks readable from minutes to months."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    if start is not None and end is not None:
        if end - start < MIN_SPAN:
            pad = (MIN_SPAN - (end - start)) / 2
            start, end = start - pad, end + pad
        ax.set_xlim(start, end)
    locator = AutoDateLocator(minticks=4, maxticks=9)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _silent(stale_dcs: Sequence[Mapping[str, Any]]) -> list[tuple[str, datetime]]:
    out = []
    for d in stale_dcs:
        if "silent" in d.get("reasons", ()) and d.get("last_seen"):
            seen = d["last_seen"]
            if isinstance(seen, str):
                seen = datetime.fromisoformat(seen.replace("Z", "+00:00"))
            out.append((str(d["dc_id"]), seen))
    return sorted(out, key=lambda item: item[1])


def _stale_note(stale_dcs: Sequence[Mapping[str, Any]]) -> str:
    silent = [d["dc_id"] for d in stale_dcs if "silent" in d.get("reasons", ())]
    pools = [d["dc_id"] for d in stale_dcs if "silent" not in d.get("reasons", ())]
    parts = []
    if silent:
        parts.append(f"{len(silent)} DC(s) silent: {', '.join(silent[:MAX_MARKED])}"
                     + (" …" if len(silent) > MAX_MARKED else ""))
    if pools:
        parts.append(f"{len(pools)} with stale pools: {', '.join(pools[:MAX_MARKED])}"
                     + (" …" if len(pools) > MAX_MARKED else ""))
    return "; ".join(parts)


def _mark_silent(axes: Sequence[Any], stale_dcs: Sequence[Mapping[str, Any]],
                 span: tuple[datetime, datetime] | None) -> int:
    """A dashed red line where each silent DC was last seen (within the span); how many."""
    marked = 0
    for dc_id, seen in _silent(stale_dcs)[:MAX_MARKED]:
        if span is not None and not span[0] <= seen <= span[1]:
            continue
        for i, ax in enumerate(axes):
            ax.axvline(seen, color=DARK, linestyle="--", linewidth=1,
                       label=f"{dc_id} last seen (silent since)" if i == 0 else None, gid=f"silent:{dc_id}")
        axes[0].annotate(f"{dc_id} dark", xy=(seen, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2, -2), textcoords="offset points", rotation=90, ha="left",
                         va="top", fontsize=7, color=DARK)
        marked += 1
    return marked


def national_surplus_figure(series: Sequence[dict[str, Any]], *,
                            stale_dcs: Sequence[Mapping[str, Any]] = (), width_px: int = 1200,
                            height_px: int = 600) -> Any:
    """Idle PFLOPS FP16 / FP32 / FP64 per minute, one panel each (their scales differ)."""
    figure = _figure(width_px, height_px)
    axes = figure.subplots(len(PRECISIONS), 1, sharex=True, squeeze=False)[:, 0]
    times: list[datetime] = [row["ts"] for row in series]
    colours = ("tab:blue", "tab:orange", "tab:purple")
    for ax, (key, label), colour in zip(axes, PRECISIONS, colours, strict=True):
        ax.plot(times, [row[f"idle_pflops_{key}"] for row in series], color=colour,
                linewidth=1.2, marker="o" if len(series) < 30 else None, markersize=3)
        ax.set_ylabel(f"{label}\nPFLOPS", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_ylim(bottom=0)
    span = (times[0], times[-1]) if times else None
    if _mark_silent(list(axes), stale_dcs, span):
        axes[0].legend(fontsize=7, loc="lower left")
    time_axis(axes[-1], *(span or (None, None)))
    axes[-1].set_xlabel("time (UTC)", fontsize=8)
    note = _stale_note(stale_dcs)
    figure.suptitle("National idle compute (surplus), PFLOPS" + (f"\n{note}" if note else ""),
                    fontsize=10)
    if not series:
        axes[0].text(0.5, 0.5, "no data", transform=axes[0].transAxes, ha="center")
    return figure


def hub_surplus_figure(series: Sequence[dict[str, Any]], *,
                       stale_dcs: Sequence[Mapping[str, Any]] = (), width_px: int = 1200,
                       height_px: int = 600) -> Any:
    """Idle FP16 PFLOPS stacked by hub over time: the national figure broken down by hub.

    `series`: rows with `ts`, `hub`, `idle_pflops_fp16`; a hub without a row at a time has
    nothing idle then. A hub's legend names its stale DCs.
    """
    figure = _figure(width_px, height_px)
    ax = figure.subplots()
    times = sorted({row["ts"] for row in series})
    at = {t: i for i, t in enumerate(times)}
    by_hub: dict[str, list[float]] = {}
    for row in series:
        by_hub.setdefault(row["hub"], [0.0] * len(times))[at[row["ts"]]] = float(row["idle_pflops_fp16"])
    hubs = sorted(by_hub, key=lambda h: (-sum(by_hub[h]), h))  # the largest at the bottom
    stale: dict[str, list[str]] = {}
    for d in stale_dcs:
        stale.setdefault(str(d["hub"]), []).append(str(d["dc_id"]))
    labels = [_hub_label(h) + (f" (stale: {', '.join(stale[h][:3])}"
                               + (" …" if len(stale[h]) > 3 else "") + ")" if h in stale else "")
              for h in hubs]
    if hubs:
        ax.stackplot(times, *(by_hub[h] for h in hubs), labels=labels, alpha=0.85)
    span = (times[0], times[-1]) if times else None
    _mark_silent([ax], stale_dcs, span)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("idle FP16 PFLOPS, stacked by hub", fontsize=8)
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    time_axis(ax, *(span or (None, None)))
    if hubs:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    note = _stale_note(stale_dcs)
    ax.set_title("Idle compute by hub (FP16)" + (f"\n{note}" if note else ""), fontsize=10)
    if not series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    return figure


def partial_hours(hours: Sequence[datetime], coverage: tuple[datetime, datetime, float] | None
                  ) -> set[datetime]:
    """The hours the power data cover only in part.

    `coverage`: (the start of the first sample's interval, the time of the last sample, the
    longest interval in seconds). An hour holds the samples timed in [hour, hour + 1 h); it is
    whole when the data start by its start and reach its last interval.
    """
    if coverage is None:  # not known: none marked
        return set()
    first, last, interval_s = coverage
    return {h for h in hours if first > h or last < h + HOUR - timedelta(seconds=interval_s)}


def green_share_figure(series: Sequence[dict[str, Any]], *,
                       coverage: tuple[datetime, datetime, float] | None = None,
                       stale_dcs: Sequence[Mapping[str, Any]] = (),
                       width_px: int = 1200, height_px: int = 600) -> Any:
    """Hourly green-energy share per hub (legend: "gz: Guizhou"), the 80 % target dashed.

    Each hour is drawn at its middle; partial hours (see `partial_hours`) hollow and labelled;
    silent DCs marked where they were last seen (their hub's hours after it lack their energy).
    """
    from matplotlib.lines import Line2D

    figure = _figure(width_px, height_px)
    ax = figure.subplots()
    by_hub: dict[str, list[dict[str, Any]]] = {}
    for row in series:
        by_hub.setdefault(row["hub"], []).append(row)
    hours = sorted({row["hour"] for row in series})
    partial = partial_hours(hours, coverage)
    for hub, rows in sorted(by_hub.items()):
        xs = [row["hour"] + HOUR / 2 for row in rows]
        shares = [100 * row["green_share"] if row["green_share"] is not None else float("nan")
                  for row in rows]
        (line,) = ax.plot(xs, shares, linewidth=1.2, label=_hub_label(hub))
        whole = [(x, y) for x, y, row in zip(xs, shares, rows, strict=True)
                 if row["hour"] not in partial]
        part = [(x, y) for x, y, row in zip(xs, shares, rows, strict=True) if row["hour"] in partial]
        if whole:
            ax.plot(*zip(*whole, strict=True), linestyle="none", marker="o", markersize=4,
                    color=line.get_color(), gid=f"whole:{hub}")
        if part:
            ax.plot(*zip(*part, strict=True), linestyle="none", marker="o", markersize=6,
                    markerfacecolor="white", color=line.get_color(), gid=f"partial:{hub}")
    for h in sorted(partial):
        ax.axvspan(h, h + HOUR, color="0.5", alpha=0.08, linewidth=0)
        ax.annotate("partial", xy=(h + HOUR / 2, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, -2), textcoords="offset points", ha="center", va="top",
                    fontsize=7, color="0.35")
    ax.axhline(100 * GREEN_SHARE_TARGET, color="green", linestyle="--", linewidth=1,
               label=f"target {GREEN_SHARE_TARGET:.0%}")
    _mark_silent([ax], stale_dcs, (hours[0], hours[-1] + HOUR) if hours else None)
    handles, labels = ax.get_legend_handles_labels()
    if partial:
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                              color="0.3"))
        labels.append("partial hour (data cover part of it)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("green share of facility energy, %", fontsize=8)
    ax.set_xlabel("hour (UTC)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    time_axis(ax, hours[0] if hours else None, hours[-1] + HOUR if hours else None)
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    note = _stale_note(stale_dcs)
    ax.set_title("Green-energy share by hub, hourly" + (f"\n{note}" if note else ""), fontsize=10)
    if not series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    return figure


def national_surplus_png(series: Sequence[dict[str, Any]], path: Path, *,
                         stale_dcs: Sequence[Mapping[str, Any]] = (), width_px: int = 1200,
                         height_px: int = 600) -> Path:
    """`national_surplus_figure` saved as a PNG; the path."""
    return save(national_surplus_figure(series, stale_dcs=stale_dcs, width_px=width_px,
                                        height_px=height_px), path)


def hub_surplus_png(series: Sequence[dict[str, Any]], path: Path, *,
                    stale_dcs: Sequence[Mapping[str, Any]] = (), width_px: int = 1200,
                    height_px: int = 600) -> Path:
    """`hub_surplus_figure` saved as a PNG; the path."""
    return save(hub_surplus_figure(series, stale_dcs=stale_dcs, width_px=width_px,
                                   height_px=height_px), path)


def green_share_png(series: Sequence[dict[str, Any]], path: Path, *,
                    coverage: tuple[datetime, datetime, float] | None = None,
                    stale_dcs: Sequence[Mapping[str, Any]] = (),
                    width_px: int = 1200, height_px: int = 600) -> Path:
    """`green_share_figure` saved as a PNG; the path."""
    return save(green_share_figure(series, coverage=coverage, stale_dcs=stale_dcs,
                                   width_px=width_px, height_px=height_px), path)


def _hub_label(hub: str) -> str:
    known = HUBS.get(hub)
    return f"{hub}: {known.short_name}" if known else hub
