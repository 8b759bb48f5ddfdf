"""`surplus place` and `surplus forecast refresh|backtest`: the dispatcher's question in the terminal. Wiring."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import click
from pydantic import ValidationError

from surplus.errors import UserError

URL_OPTION = click.option("--url", envvar="CLICKHOUSE_URL", metavar="URL",
                          help="the store: chdb:///path or http(s)://user:pass@host:8123/cpn "
                               "[env CLICKHOUSE_URL; default: chDB under var/chdb]")
AT_OPTION = click.option("--at", "at", metavar="TIME", default=None,
                         help="answer as of this UTC time (RFC 3339; default now: the latest snapshot minute)")


def _settings() -> Any:
    from surplus.dispatch.settings import DispatchSettings

    try:
        return DispatchSettings()
    except ValidationError as exc:
        error = exc.errors()[0]
        raise UserError(f"setting {'.'.join(map(str, error['loc']))}: {error['msg']}") from None


def _connect(url: str | None) -> tuple[Any, str]:
    from surplus.store import connect

    client, target = connect(url or _settings().clickhouse_url, create=False)
    return client, target.database


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--at {value!r}: not an RFC 3339 time such as 2026-03-01T08:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def first_error(exc: ValidationError) -> str:
    """One line naming the parameter: `devices: Input should be greater than or equal to 1`."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "request"
    return f"{where}: {error['msg']}"


def _prices() -> Any:
    from schemas.prices import PriceBook, PriceBookError

    try:
        return PriceBook.load()
    except PriceBookError as exc:
        raise UserError(str(exc)) from None


@click.command()
@click.option("--devices", type=int, required=True, help="N: devices wanted (cores for CPU pools)")
@click.option("--precision", type=click.Choice(["fp16", "fp32", "fp64"]), default="fp16", show_default=True)
@click.option("--device-model", default=None, help="only this catalogue model, e.g. nvidia-h100-sxm5-80gb")
@click.option("--min-tflops", type=float, default=None, help="peak TFLOPS per device at --precision, at least")
@click.option("--hours", type=int, default=1, show_default=True, help="H: hours the devices are wanted for")
@click.option("--origin", required=True, help="province the job comes from, ISO 3166-2:CN (e.g. CN-SH)")
@click.option("--max-latency-ms", type=float, default=None, help="estimated round trip from the origin, at most")
@click.option("--min-green-share", type=float, default=None, help="DC green share over the last 24 h, at least (0-1)")
@click.option("--max-price", default=None, help="CNY per device-hour, at most (a decimal)")
@click.option("--tenant-id", default=None, help="price for this tenant (its own price book entry, if any)")
@click.option("--rank", type=click.Choice(["cost", "carbon", "latency"]), default="cost", show_default=True)
@click.option("--limit", type=int, default=10, show_default=True, help="at most this many offers")
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON (SPEC §8 offer fields)")
@URL_OPTION
@AT_OPTION
def place(as_json: bool, url: str | None, at: str | None, **fields: Any) -> None:
    """The dispatcher's question: ranked offers of sellable idle devices for a request (SPEC §8).

    A pool offers when its sellable devices (the minimum over the next H hours of the forecast
    idle_p10, minus SURPLUS_SELL_HEADROOM of its online devices, never more than idle now) are
    at least N and it meets every limit. With no offers, the answer names the limit that
    excluded the most idle devices.
    """
    from surplus.dispatch.model import Request
    from surplus.dispatch.service import answer

    fields = {k: v for k, v in fields.items() if v is not None}
    if "max_price" in fields:
        try:
            fields["max_price"] = Decimal(fields["max_price"])
        except ArithmeticError:
            raise UserError(f"--max-price {fields['max_price']!r}: not a decimal such as 9.50") from None
    try:
        request = Request(**fields)
    except ValidationError as exc:
        raise UserError(f"bad request: {first_error(exc)}") from None
    settings = _settings()
    client, db = _connect(url)
    result = answer(client, db, request, _prices(), at=_at(at), headroom=settings.sell_headroom,
                    lookback_days=settings.forecast_lookback_days)
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    from rich.console import Console

    render_answer(result, Console())


def render_answer(result: Any, console: Any) -> None:
    """The answer as a table that fits the console (column groups stack, nothing is cut), then
    the message and the exclusions."""
    from surplus.text_tables import Column, Group, Sheet, print_sheet

    req = result.request
    title = (f"{req.devices} x {req.precision} for {req.hours} h from {req.origin}, by {req.rank}"
             + (f" — as of {result.as_of:%Y-%m-%d %H:%M} UTC" if result.as_of else ""))
    sheet = Sheet(title, (Column("dc_id", text=True), Column("pool_id", text=True)), (
        Group("where and what", (Column("hub", text=True), Column("model", text=True))),
        Group("devices and price", (Column("idle now"), Column("sellable"), Column("CNY/dev-h"),
                                    Column("cost CNY"))),
        Group("energy and latency", (Column("green"), Column("PUE"), Column("kg CO2/h"),
                                     Column("RTT ms"))),
    ))
    for o in result.offers:
        sheet.add_row(o.dc_id, o.pool_id, o.hub, o.device_model, f"{o.devices_idle_now:,}",
                      f"{o.devices_sellable:,}", str(o.price_cny_per_device_hour), f"{o.cost_cny:,}",
                      "—" if o.green_share is None else f"{o.green_share:.0%}",
                      "—" if o.pue is None else f"{o.pue:.2f}",
                      "—" if o.carbon_kg_per_hour is None else f"{o.carbon_kg_per_hour:,.1f}",
                      f"{o.latency_ms:.1f}")
    if result.offers:
        print_sheet(console, sheet)
    console.print(result.message)
    for e in result.excluded:
        console.print(f"  excluded by {e.limit}: {e.pools} pool(s), {e.devices_idle:,} idle device(s)")


@click.group()
def forecast() -> None:
    """The forecast of idle devices per pool and hour (cpn.pool_idle_forecast)."""


@forecast.command()
@URL_OPTION
@AT_OPTION
def refresh(url: str | None, at: str | None) -> None:
    """Forecast every pool's idle devices for the next 169 hours (from the current one) and store it.

    Quantiles p10/p50/p90 of each pool's hourly idle devices by hour of week from the last
    SURPLUS_FORECAST_LOOKBACK_DAYS (default 28, at least 14 for the hour-of-week model) of minute
    snapshots; made_at is the latest snapshot minute, so a second run changes nothing.
    """
    from surplus.dispatch.service import refresh as do_refresh

    settings = _settings()
    client, db = _connect(url)
    made_at, rows = do_refresh(client, db, at=_at(at), lookback_days=settings.forecast_lookback_days,
                               headroom=settings.sell_headroom)
    if made_at is None:
        raise UserError("the store has no capacity snapshots yet: nothing to forecast")
    click.echo(f"forecast made at {made_at:%Y-%m-%d %H:%M} UTC: {rows:,} rows into {db}.pool_idle_forecast")


@forecast.command()
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True, help="held-out days (the latest)")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@URL_OPTION
@AT_OPTION
def backtest(days: int, as_json: bool, url: str | None, at: str | None) -> None:
    """Forecast the last DAYS days from the history before them and score it.

    p10 coverage: the share of (pool, hour) whose actual hourly idle devices were at or above
    idle_p10 (about 0.9 when calibrated); p90 coverage likewise at or below idle_p90; p50 error
    as the mean absolute error in devices and as a share of the actual devices (WAPE).
    """
    from surplus.dispatch.service import run_backtest

    settings = _settings()
    client, db = _connect(url)
    cutoff, end, score = run_backtest(client, db, days, at=_at(at), lookback_days=settings.forecast_lookback_days)
    if not score.hours:
        raise UserError(f"nothing to score: the store needs history before and during the last {days} day(s)")
    figures = {"held_out_from": cutoff.isoformat() if cutoff else None, "held_out_to": end.isoformat() if end else None,
               "days": days, "pools": score.pools, "hours": score.hours, "p10_coverage": score.p10_coverage,
               "p90_coverage": score.p90_coverage, "p50_mae_devices": score.p50_mae_devices,
               "p50_wape": score.p50_wape}
    if as_json:
        click.echo(json.dumps(figures))
        return
    click.echo(f"held out {cutoff:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {score.pools} pools, "
               f"{score.hours:,} pool-hours")
    click.echo(f"p10 coverage {score.p10_coverage:.3f} (target about 0.9)   p90 coverage {score.p90_coverage:.3f}")
    click.echo(f"p50 error: {score.p50_mae_devices:,.2f} devices mean absolute, "
               f"{(score.p50_wape or 0):.1%} of actual (WAPE)")
