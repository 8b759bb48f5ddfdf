"""`surplus report`: the command. Wiring.

The report is built by surplus.report_build (figures from ClickHouse, shape declared in
surplus.report_model, `--format json` prints exactly that, `--format csv` one row per figure
by surplus.report_csv), drawn by surplus.report_render (text that fits any width) and
surplus.charts (PNGs). `surplus demo` ends with the same functions.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from schemas.hubs import HUBS
from surplus.errors import UserError
from surplus.report_build import build_report, build_tenant_report, parse_at, write_pngs
from surplus.report_render import render_report, render_tenants

FORMATS = ("text", "json", "csv")

__all__ = ["build_report", "build_tenant_report", "render_report", "render_tenants", "report",
           "write_pngs"]


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
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="text (default): tables that fit the terminal, or 80 columns when piped, "
                   "every figure in full; json: the declared JSON document on stdout and nothing "
                   "else (money as decimal strings); csv: one row per figure, columns "
                   "section,key,field,value.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--png", "png_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the charts (national_surplus.png, hub_surplus.png, "
                   "green_share.png) into DIR; print their paths.")
@click.option("--width-px", default=1200, show_default=True, type=click.IntRange(320, 8000),
              help="Width of the PNGs in pixels.")
@click.option("--height-px", default=600, show_default=True, type=click.IntRange(240, 8000),
              help="Height of the PNGs in pixels.")
@click.option("--progress-s", default=5.0, show_default=True, type=click.FloatRange(min=0),
              metavar="SECONDS",
              help="When stderr is not a terminal: a plain progress line on stderr at most this "
                   "often while the report is being built (0: one per step). On a terminal: a "
                   "spinner.")
def report(url: str | None, at_text: str | None, hub: str | None, dc: str | None,
           tenants_only: bool, fmt: str | None, as_json: bool, png_dir: Path | None,
           width_px: int, height_px: int, progress_s: float) -> None:
    """National, hub and DC idle compute (surplus), green share and PUE against the hub targets,
    stale DCs, top tenants and dead letters, from ClickHouse. The period is the 24 h to --at, or
    to the latest event time in the store: a report reads that day, never the whole history.

    Exits 1 with "no data yet" on an empty store, 2 on bad options or an unreachable store. The
    embedded chDB store can be opened by one process at a time: stop a worker or demo using it
    first, or point --url at a ClickHouse server.
    """
    from clickhouse_connect.driver.exceptions import ClickHouseError

    if as_json and fmt not in (None, "json"):
        raise UserError(f"--json and --format {fmt} disagree: give one of them")
    at = parse_at(at_text) if at_text is not None else None
    try:
        _report(url, at, hub, dc, tenants_only, "json" if as_json else fmt or "text", png_dir,
                width_px, height_px, progress_s)
    except ClickHouseError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"ClickHouse query failed: {first}") from None


def _report(url: str | None, at: datetime | None, hub: str | None, dc: str | None,
            tenants_only: bool, fmt: str, png_dir: Path | None, width_px: int,
            height_px: int, progress_s: float) -> None:
    from surplus.paths import default_clickhouse_url
    from surplus.progress import Progress
    from surplus.store import connect

    data: Any
    with Progress("surplus report", every_s=progress_s) as progress:
        progress.step("opening the store")
        client, target = connect(url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url(),
                                 create=False)
        db = target.database
        if tenants_only:
            progress.step("tenants")
            data = build_tenant_report(client, db, hub=hub, dc=dc, at=at)
        else:
            data = build_report(client, db, hub=hub, dc=dc, at=at, progress=progress.step)
        pngs = []
        if png_dir is not None:
            progress.step("charts")
            pngs = write_pngs(client, db, png_dir, width_px=width_px, height_px=height_px,
                              hub=hub, dc=dc, at=at, report=None if tenants_only else data)
    if pngs and fmt != "text":
        data["charts"] = [str(p) for p in pngs]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if fmt == "csv":
        from surplus.report_csv import to_csv

        click.echo(to_csv(data), nl=False)
        return
    from rich.console import Console

    console = Console()
    (render_tenants if tenants_only else render_report)(data, console)
    for path in pngs:
        click.echo(f"wrote {path}")  # not through rich: a long path must not wrap
