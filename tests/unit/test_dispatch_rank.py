"""The ranking core (SPEC §8): every limit, the ranking keys and tie-break, exact cost, excluded-by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.prices import PriceBook
from surplus.dispatch.model import Request
from surplus.dispatch.rank import PoolView, rank_offers, sellable, window

NOW = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
BOOK = PriceBook.parse('''
[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "12.35"
effective_from = 2026-01-01

[[price]]
device_model = "nvidia-h100-sxm5-80gb"
tenant_id = "acme"
cny_per_device_hour = "7.10"
effective_from = 2026-01-01

[[price]]
device_model = "huawei-ascend-910b2"
cny_per_device_hour = "6.00"
effective_from = 2026-01-01
''')


def pool(dc_id: str = "yrd-a", pool_id: str = "h100", *, model: str = "nvidia-h100-sxm5-80gb", idle: int = 200,
         online: int = 400, p10: float = 150.0, lat: float = 31.2, lon: float = 121.4, green: float | None = 0.7,
         pue: float | None = 1.25, carbon: float | None = 0.4, fp16: float = 989.0, tdp: float | None = 700.0,
         hours: int = 48) -> PoolView:
    first = NOW.replace(minute=0)
    return PoolView(dc_id=dc_id, pool_id=pool_id, hub="yrd", province="CN-SH", lat=lat, lon=lon, device_model=model,
                    idle_now=idle, online_now=online, peak_tflops={"fp16": fp16, "fp32": 60.0, "fp64": 30.0},
                    tdp_w=tdp, idle_p10={first + timedelta(hours=i): p10 for i in range(hours)},
                    green_share=green, pue=pue, carbon_kg_per_facility_kwh=carbon)


def ask(**kw: object) -> Request:
    return Request(**{"devices": 64, "origin": "CN-SH", **kw})


def test_an_offer_carries_every_field_and_exact_cost() -> None:
    answer = rank_offers(ask(hours=8), [pool()], BOOK, NOW)
    (offer,) = answer.offers
    assert offer.cost_cny == Decimal("6323.20") and isinstance(offer.cost_cny, Decimal)
    assert offer.price_cny_per_device_hour == Decimal("12.35")
    assert offer.devices_sellable == 150 - 20 and offer.devices_idle_now == 200
    assert offer.carbon_kg_per_hour == pytest.approx(64 * 0.7 * 1.25 * 0.4)
    assert offer.latency_ms < 2
    assert answer.excluded == [] and answer.as_of == NOW
    dumped = answer.model_dump(mode="json")["offers"][0]
    assert dumped["cost_cny"] == "6323.20", "money is a decimal string in JSON"


@given(st.integers(1, 10_000), st.integers(1, 168), st.decimals("0", "999.99", places=2))
def test_cost_is_exact_decimal(n: int, h: int, price: Decimal) -> None:
    book = PriceBook.parse(f'[[price]]\ndevice_model = "nvidia-h100-sxm5-80gb"\ncny_per_device_hour = "{price}"\n'
                           "effective_from = 2026-01-01\n")
    answer = rank_offers(ask(devices=n, hours=h), [pool(idle=20_000, online=20_000, p10=20_000, hours=200)], book, NOW)
    assert answer.offers[0].cost_cny == Decimal(n) * Decimal(h) * price


def test_sellable_is_min_p10_minus_rounded_up_headroom_capped_by_idle_now() -> None:
    assert sellable([150.0, 90.5, 120.0], online=60, idle_now=500, headroom=Decimal("0.05")) == 90 - 3
    assert sellable([150.0], online=61, idle_now=500, headroom=Decimal("0.05")) == 150 - 4  # 3.05 -> 4
    assert sellable([150.0], online=400, idle_now=50, headroom=Decimal("0.05")) == 50
    assert sellable([1.0], online=400, idle_now=50, headroom=Decimal("0.05")) == 0
    assert sellable([37.0], online=40, idle_now=37, headroom=Decimal("0")) == 37


def test_window_covers_every_hour_the_job_touches() -> None:
    assert len(window(NOW, 8)) == 9 and window(NOW, 8)[0] == NOW.replace(minute=0)
    assert len(window(NOW.replace(minute=0), 8)) == 8


def test_devices_limit_uses_the_minimum_over_the_hours() -> None:
    p = pool(p10=150.0)
    p.idle_p10[NOW.replace(minute=0) + timedelta(hours=5)] = 70.0  # a dip in hour 5: 70 - 20 < 64
    assert rank_offers(ask(hours=4), [p], BOOK, NOW).offers
    answer = rank_offers(ask(hours=8), [p], BOOK, NOW)
    assert answer.offers == [] and answer.excluded_most_by == "devices"


def test_no_forecast_for_the_hours_excludes() -> None:
    answer = rank_offers(ask(hours=100), [pool(hours=48)], BOOK, NOW)
    assert answer.offers == [] and answer.excluded_most_by == "forecast"


@pytest.mark.parametrize(("request_kw", "pool_kw", "limit"), [
    ({"precision": "fp64"}, {"model": "huawei-ascend-910b2"}, None),
    ({"device_model": "huawei-ascend-910b2"}, {}, "device_model"),
    ({"min_tflops": 1000.0}, {}, "min_tflops"),
    ({"max_latency_ms": 5.0}, {"lat": 40.0, "lon": 112.0}, "max_latency_ms"),
    ({"min_green_share": 0.8}, {}, "min_green_share"),
    ({"min_green_share": 0.1}, {"green": None}, "min_green_share"),
    ({"max_price": Decimal("10")}, {}, "max_price"),
    ({}, {"model": "biren-br100"}, "unpriced"),
])
def test_each_limit_excludes_and_is_named(request_kw: dict[str, object], pool_kw: dict[str, object],
                                          limit: str | None) -> None:
    if limit is None:  # precision: a pool with no figure at that precision
        p = pool(**pool_kw)  # type: ignore[arg-type]
        p = PoolView(**{**{f: getattr(p, f) for f in p.__slots__}, "peak_tflops": {"fp16": 376.0, "fp32": 0.0, "fp64": 0.0}})  # type: ignore[arg-type]
        limit = "precision"
    else:
        p = pool(**pool_kw)  # type: ignore[arg-type]
    if request_kw:
        assert rank_offers(ask(), [p], BOOK, NOW).offers, "the pool offers without the limit"
    answer = rank_offers(ask(**request_kw), [p], BOOK, NOW)
    assert answer.offers == []
    assert answer.excluded_most_by == limit and limit in answer.message
    assert answer.excluded[0].pools == 1 and answer.excluded[0].devices_idle == p.idle_now


def test_tenant_price_is_used_for_cost_and_for_the_price_limit() -> None:
    cap = Decimal("10")
    assert rank_offers(ask(max_price=cap), [pool()], BOOK, NOW).excluded_most_by == "max_price"
    answer = rank_offers(ask(max_price=cap, tenant_id="acme", hours=2), [pool()], BOOK, NOW)
    (offer,) = answer.offers
    assert offer.price_cny_per_device_hour == Decimal("7.10") and offer.cost_cny == Decimal("908.80")
    other = rank_offers(ask(max_price=cap, tenant_id="someone-else"), [pool()], BOOK, NOW)
    assert other.offers == [] and other.excluded_most_by == "max_price"


def test_ranking_keys_and_tie_break() -> None:
    pools = [
        pool("b-dc", "p2", lat=31.2, lon=121.4, carbon=0.5),  # near, 12.35
        pool("b-dc", "p1", lat=31.2, lon=121.4, carbon=0.5),  # same figures: tie broken by pool_id
        pool("a-dc", "x", model="huawei-ascend-910b2", lat=30.6, lon=104.1, carbon=0.1, fp16=376.0, tdp=400.0),
        pool("c-dc", "y", lat=38.5, lon=106.2, carbon=None),
    ]
    by_cost = [(o.dc_id, o.pool_id) for o in rank_offers(ask(), pools, BOOK, NOW).offers]
    assert by_cost == [("a-dc", "x"), ("b-dc", "p1"), ("b-dc", "p2"), ("c-dc", "y")]
    by_carbon = [(o.dc_id, o.pool_id) for o in rank_offers(ask(rank="carbon"), pools, BOOK, NOW).offers]
    assert by_carbon == [("a-dc", "x"), ("b-dc", "p1"), ("b-dc", "p2"), ("c-dc", "y")]  # unknown carbon last
    by_latency = [(o.dc_id, o.pool_id) for o in rank_offers(ask(rank="latency"), pools, BOOK, NOW).offers]
    assert by_latency == [("b-dc", "p1"), ("b-dc", "p2"), ("c-dc", "y"), ("a-dc", "x")]  # Yinchuan is nearer than Chengdu
    assert len(rank_offers(ask(limit=2), pools, BOOK, NOW).offers) == 2


def test_excluded_by_names_the_limit_with_the_most_idle_devices() -> None:
    pools = [pool("a", "1", idle=500, online=500, p10=10.0),  # devices
             pool("b", "1", idle=50, online=100, green=0.1),  # green share (and devices: 50 - 5 < 64)
             pool("c", "1", idle=90, online=90, green=0.1)]  # green share only
    answer = rank_offers(ask(min_green_share=0.5), pools, BOOK, NOW)
    assert answer.offers == []
    assert [(e.limit, e.pools, e.devices_idle) for e in answer.excluded] == [
        ("devices", 2, 550), ("min_green_share", 2, 140)]
    assert answer.excluded_most_by == "devices" and "'devices'" in answer.message


def test_no_snapshot_no_offers() -> None:
    answer = rank_offers(ask(), [], BOOK, None)
    assert answer.offers == [] and answer.excluded_most_by is None and "no pool is reporting" in answer.message


@pytest.mark.parametrize(("field", "value"), [
    ("devices", 0), ("precision", "fp8"), ("hours", 0), ("hours", 169), ("origin", "CN-XX"),
    ("min_green_share", 1.5), ("max_price", Decimal("-1")), ("rank", "speed"), ("limit", 0),
    ("tenant_id", "Not Valid"), ("device_model", "NVIDIA H100"), ("min_tflops", 0),
])
def test_bad_requests_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        ask(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_request_defaults_follow_the_spec() -> None:
    r = Request(devices=1, origin="CN-GD")
    assert (r.precision, r.hours, r.rank, r.limit) == ("fp16", 1, "cost", 10)
    assert r.device_model is r.min_tflops is r.max_latency_ms is r.min_green_share is r.max_price is r.tenant_id is None
