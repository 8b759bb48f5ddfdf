"""`surplus api` over a real store (chDB): the endpoints, 422s that name the parameter, and a
schemathesis run against /openapi.json (bounded examples) with no server error and no response
that breaks its schema."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(1200)]  # loads 15 simulated days
END = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)  # a Monday morning


def load_history(client: Any, database: str, days: int = 15, dcs: int = 8) -> int:
    """A simulated fleet's history, fed through the worker's batch handler (no broker needed)."""
    from agents.backfill import HISTORY_INTERVALS, without_jobs
    from agents.collectors.simulator import SimulatedDataCenter
    from agents.fleet import national_fleet
    from agents.records import serialise
    from schemas.catalogue import load_catalogue
    from schemas.prices import PriceBook
    from schemas.topics import TOPIC_OF_TYPE
    from streams.batch import Record
    from streams.sink import Sink
    from streams.worker import Handler

    handler = Handler(sink=Sink(client, database), catalogue=load_catalogue(), prices=PriceBook.load(),
                      deadletter_topic="cpn.deadletter")
    start = END - timedelta(days=days)
    records = []
    for dc in map(without_jobs, national_fleet(dcs, seed=2)):
        for e in SimulatedDataCenter(dc.dc, dc.sim, HISTORY_INTERVALS, start=start).events_between(start, END):
            topic = "cpn." + TOPIC_OF_TYPE[e["type"]]
            records.append(Record(topic, 0, len(records), dc.dc.dc_id.encode(), serialise(e)))

    async def run() -> None:
        for i in range(0, len(records), 5000):
            await handler(records[i : i + 5000])

    asyncio.run(run())
    return len(records)


@pytest.fixture(scope="module")
def backend(clickhouse_client: Any) -> Iterator[Any]:
    from schemas.prices import PriceBook
    from surplus.dispatch.api import Backend
    from surplus.dispatch.service import refresh
    from surplus.dispatch.settings import DispatchSettings
    from surplus.store import migrate

    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database)
    assert load_history(clickhouse_client, database) > 10_000
    made_at, rows = refresh(clickhouse_client, database)
    assert made_at is not None and rows > 0
    yield Backend(clickhouse_client, database, PriceBook.load(), DispatchSettings(), "chdb (test)")
    with contextlib.suppress(Exception):
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
def app(backend: Any) -> Any:
    from surplus.dispatch.api import build_app

    return build_app(backend, refresh=False)


@pytest.fixture(scope="module")
def http(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


def test_offers_match_the_spec_fields(http: Any) -> None:
    got = http.get("/v1/offers", params={"devices": 8, "hours": 4, "origin": "CN-SH"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["offers"] and body["request"]["precision"] == "fp16" and body["request"]["limit"] == 10
    offer = body["offers"][0]
    assert set(offer) == {"dc_id", "pool_id", "hub", "province", "device_model", "devices_idle_now",
                          "devices_sellable", "price_cny_per_device_hour", "cost_cny", "green_share", "pue",
                          "carbon_kg_per_hour", "latency_ms"}
    assert Decimal(offer["cost_cny"]) == 8 * 4 * Decimal(offer["price_cny_per_device_hour"])
    costs = [Decimal(o["cost_cny"]) for o in body["offers"]]
    assert costs == sorted(costs)


def test_nothing_fits_says_which_limit(http: Any) -> None:
    body = http.get("/v1/offers", params={"devices": 8, "origin": "CN-SH", "max_price": "0.01"}).json()
    assert body["offers"] == [] and body["excluded_most_by"] == "max_price"


@pytest.mark.parametrize(("params", "name"), [
    ({"devices": 0, "origin": "CN-SH"}, "devices"),
    ({"devices": "many", "origin": "CN-SH"}, "devices"),
    ({"origin": "CN-SH"}, "devices"),
    ({"devices": 8, "origin": "CN-ZZ"}, "origin"),
    ({"devices": 8}, "origin"),
    ({"devices": 8, "origin": "CN-SH", "hours": 1000}, "hours"),
    ({"devices": 8, "origin": "CN-SH", "rank": "fastest"}, "rank"),
    ({"devices": 8, "origin": "CN-SH", "min_green_share": "2"}, "min_green_share"),
    ({"devices": 8, "origin": "CN-SH", "max_price": "cheap"}, "max_price"),
    ({"devices": 8, "origin": "CN-SH", "colour": "blue"}, "colour"),
])
def test_bad_parameters_get_a_422_naming_them(http: Any, params: dict[str, object], name: str) -> None:
    got = http.get("/v1/offers", params=params)
    assert got.status_code == 422
    assert ["query", name] in [e["loc"] for e in got.json()["detail"]]


def test_surplus_now_and_health(http: Any) -> None:
    now = http.get("/v1/surplus/now").json()
    assert now["pools_reporting"] > 0 and now["idle_devices"] == sum(r["idle_devices"] for r in now["by_hub"])
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["as_of"] == now["as_of"]
    assert "/v1/offers" in http.get("/openapi.json").json()["paths"]


def test_refresh_twice_changes_nothing(backend: Any) -> None:
    from surplus.dispatch.service import refresh

    def table() -> list[tuple[Any, ...]]:
        return list(backend.client.query(
            f"SELECT made_at, dc_id, pool_id, hour, idle_p10, idle_p50, idle_p90 FROM {backend.database}"
            ".pool_idle_forecast FINAL ORDER BY dc_id, pool_id, hour").result_rows)

    before = table()
    made_at, rows = refresh(backend.client, backend.database)
    assert rows == len(before) and table() == before
    assert {r[0] for r in before} == {made_at.replace(tzinfo=None)} or {r[0] for r in before} == {made_at}


def test_the_refresh_thread_fills_the_forecast(backend: Any) -> None:
    backend.forecast_made_at = None
    backend.start_refreshing()
    try:
        for _ in range(600):
            if backend.forecast_made_at is not None:
                break
            asyncio.run(asyncio.sleep(0.1))
    finally:
        backend.stop()
        backend._stop.clear()
    assert backend.forecast_made_at is not None


def test_api_conforms_to_its_openapi(app: Any) -> None:
    """Every operation, bounded examples: no 5xx, every status documented, every body valid."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/v1/offers", "/v1/surplus/now", "/healthz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60 if operation.path == "/v1/offers" else 5, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate()

        check()
