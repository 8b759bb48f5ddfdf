"""`surplus api`: the dispatcher's HTTP API over the ranking core (FastAPI + uvicorn). Wiring.

    GET /v1/offers?devices=64&hours=8&origin=CN-SH&min_green_share=0.6   -> Answer (SPEC §8)
    GET /v1/surplus/now                                                   -> SurplusNow
    GET /healthz                                                          -> {"status": "ok", ...}
    GET /openapi.json                                                     -> the OpenAPI document

A bad query parameter gets a 422 whose `detail[].loc` names it (["query", "devices"]); an
unreachable store a 503. The process refreshes cpn.pool_idle_forecast at start and every
SURPLUS_FORECAST_REFRESH_S seconds (default 3600).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import click
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from schemas.prices import PriceBook
from surplus.dispatch import service
from surplus.dispatch.model import Answer, Request
from surplus.dispatch.settings import DispatchSettings

log = logging.getLogger("surplus.api")
T = TypeVar("T")


class HubModelSurplus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hub: str
    device_model: str
    pools: int
    idle_devices: int
    online_devices: int


class SurplusNow(BaseModel):
    """Idle and online devices of the pools reporting at the latest snapshot minute."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime | None
    pools_reporting: int
    idle_devices: int
    online_devices: int
    by_hub: list[HubModelSurplus]


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str
    store: str
    as_of: datetime | None
    forecast_made_at: datetime | None


class Problem(BaseModel):
    detail: str


class Backend:
    """The store connection and price book, shared by requests under one lock (a chDB client is
    not made for concurrent use), and the hourly forecast refresh."""

    def __init__(self, client: Any, database: str, prices: PriceBook, settings: DispatchSettings,
                 store_name: str) -> None:
        self.client, self.database, self.prices, self.settings = client, database, prices, settings
        self.store_name = store_name
        self.lock = threading.Lock()
        self.forecast_made_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            with self.lock:
                return fn(self.client, self.database, *args, **kwargs)
        except (ClickHouseError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise HTTPException(status_code=503, detail=f"the store cannot answer: {first}") from None

    def refresh(self) -> None:
        made_at, rows = self.run(service.refresh, lookback_days=self.settings.forecast_lookback_days,
                                 headroom=self.settings.sell_headroom)
        self.forecast_made_at = made_at
        log.info("forecast refreshed: made at %s, %d rows", made_at, rows)

    def start_refreshing(self, refresh_on_start: bool = True) -> None:
        def loop() -> None:
            if not refresh_on_start and self._stop.wait(self.settings.forecast_refresh_s):
                return
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception as exc:  # logged; the next turn tries again
                    log.warning("forecast refresh failed: %s", exc)
                if self._stop.wait(self.settings.forecast_refresh_s):
                    return

        self._thread = threading.Thread(target=loop, name="forecast-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def build_app(backend: Backend, *, refresh: bool = True) -> FastAPI:
    """The API over `backend`; with `refresh`, the forecast refresh thread runs while it serves."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if refresh:
            backend.start_refreshing()
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(title="Surplus dispatcher API", version="1",
                  description="Sellable idle compute of the national computing-power network (SPEC §8).",
                  lifespan=lifespan)
    unavailable: dict[int | str, dict[str, Any]] = {503: {"model": Problem, "description": "the store cannot answer"}}

    @app.get("/v1/offers", response_model=Answer, responses=unavailable)
    def offers(request: Annotated[Request, Query()]) -> Answer:
        """Ranked offers of sellable idle devices for the request in the query parameters."""
        return backend.run(service.answer, request, backend.prices, headroom=backend.settings.sell_headroom,
                           lookback_days=backend.settings.forecast_lookback_days)

    @app.get("/v1/surplus/now", response_model=SurplusNow, responses=unavailable)
    def surplus_now() -> SurplusNow:
        """Idle and online devices now, by hub and device model."""
        return SurplusNow.model_validate(backend.run(service.surplus_now))

    @app.get("/healthz", response_model=Health, responses=unavailable)
    def healthz() -> Health:
        """The store answers; the latest snapshot minute and forecast."""
        from surplus.dispatch.store import latest_minute

        return Health(status="ok", store=backend.store_name, as_of=backend.run(latest_minute),
                      forecast_made_at=backend.forecast_made_at)

    return app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="port to listen on")
@click.option("--url", envvar="CLICKHOUSE_URL", metavar="URL",
              help="the store (chdb:///path or http(s)://user:pass@host:8123/cpn) [env CLICKHOUSE_URL]")
def api(host: str, port: int, url: str | None) -> None:
    """The dispatcher's HTTP API: GET /v1/offers, /v1/surplus/now, /healthz; OpenAPI at /openapi.json.

    Refreshes the forecast at start and every SURPLUS_FORECAST_REFRESH_S seconds.
    """
    import uvicorn

    from surplus.dispatch.cli import _connect, _prices, _settings
    from surplus.store import redact

    settings = _settings()
    client, db = _connect(url)
    store_name = redact(url or settings.clickhouse_url)
    app = build_app(Backend(client, db, _prices(), settings, store_name))
    click.echo(f"surplus api on http://{host}:{port} (store {store_name}, database {db})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
