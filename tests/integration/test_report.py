"""Integration tests of `surplus report`: a small fleet loaded through the worker, then checked
against figures computed here from the generated events. Real chDB (or a ClickHouse server).

Run as a script (`python -m tests.integration.test_report chdb:///dir?database=cpn`) it loads
the same dataset into that store and exits: the subprocess tests need their own chDB path,
because chDB allows one data path per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.events import (
    Capacity,
    Heartbeat,
    Job,
    Power,
    Registration,
    SourcesKwh,
    make_event,
)
from schemas.prices import PriceBook

REPO = Path(__file__).resolve().parents[2]
BASE = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)
MINUTES = 120  # capacity and power every 60 s for two hours
INTERVAL_S = 60
PRICES_TOML = """
[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "20.00"
effective_from = 2024-01-01

[[price]]
device_model = "nvidia-a800-sxm4-80gb"
cny_per_device_hour = "8.40"
effective_from = 2024-01-01

[[price]]
device_model = "huawei-ascend-910b2"
cny_per_device_hour = "5.55"
effective_from = 2024-01-01

[[price]]
device_model = "nvidia-h20-96gb"
cny_per_device_hour = "6.00"
effective_from = 2024-01-01
"""


@dataclass(frozen=True)
class Pool:
    pool_id: str
    model: str
    total: int
    until_minute: int = MINUTES  # the pool stops reporting after this minute


@dataclass(frozen=True)
class Dc:
    dc_id: str
    hub: str
    province: str
    pools: tuple[Pool, ...]
    pue: float
    green_contract_ratio: float
    until_minute: int = MINUTES  # the whole agent falls silent after this minute


FLEET = (
    Dc("nm-alpha", "nm", "CN-NM", (Pool("gpu0", "nvidia-h100-sxm5-80gb", 64),
                                   Pool("cpu0", "huawei-kunpeng-920-6426", 1280)), 1.15, 0.6),
    Dc("nm-beta", "nm", "CN-NM", (Pool("npu0", "huawei-ascend-910b2", 128),), 1.18, 0.5),
    Dc("gz-alpha", "gz", "CN-GZ", (Pool("gpu0", "nvidia-a800-sxm4-80gb", 32),), 1.22, 0.3),
    Dc("gz-beta", "gz", "CN-GZ", (Pool("gpu0", "nvidia-h20-96gb", 96),
                                  Pool("gpu1", "nvidia-h20-96gb", 16, until_minute=90)), 1.25, 0.2),
    Dc("yrd-alpha", "yrd", "CN-SH", (Pool("gpu0", "nvidia-a100-sxm4-80gb", 48),), 1.35, 0.1),
    Dc("yrd-beta", "yrd", "CN-JS", (Pool("gpu0", "nvidia-h100-sxm5-80gb", 24),), 1.30, 0.05,
       until_minute=80),
)
# (dc_id, job_id, tenant_id, pool_id, model, devices, start minute, end minute)
JOBS = (
    ("nm-alpha", "job-1", "tenant-a", "gpu0", "nvidia-h100-sxm5-80gb", 8, 5, 95),
    ("nm-beta", "job-2", "tenant-b", "npu0", "huawei-ascend-910b2", 16, 10, 110),
    ("gz-alpha", "job-3", "tenant-a", "gpu0", "nvidia-a800-sxm4-80gb", 4, 0, 60),
    ("gz-beta", "job-4", "tenant-c", "gpu0", "nvidia-h20-96gb", 12, 30, 119),
    ("yrd-beta", "job-5", "tenant-b", "gpu0", "nvidia-h100-sxm5-80gb", 2, 20, 70),
)
JOB_STEP_MIN = 10


@dataclass
class Dataset:
    """The generated messages, in arrival order, and what the test knows about them."""

    records: list[tuple[str, str, bytes]] = field(default_factory=list)  # (topic, key, value)
    capacity: list[tuple[datetime, str, str, str, int, int]] = field(default_factory=list)
    power: list[tuple[datetime, str, float, float, float, float]] = field(default_factory=list)
    ledger: list[tuple[str, str, Decimal, Decimal, float]] = field(default_factory=list)
    poison: dict[str, int] = field(default_factory=dict)


def _at(minute: int, second: int = 0) -> datetime:
    return BASE + timedelta(minutes=minute, seconds=second)


def allocated(total: int, online: int, minute: int, index: int) -> int:
    return min(online, total * (20 + (minute * 7 + index * 13) % 60) // 100)


def build_dataset() -> Dataset:
    """A deterministic fleet: 6 DCs in 3 hubs, two hours of telemetry, 5 jobs, poison messages."""
    data = Dataset()
    add = data.records.append
    for dc in FLEET:
        reg = Registration(dc_id=dc.dc_id, name=f"{dc.dc_id} DC", operator="Test Op",
                           province=dc.province, hub=dc.hub, cluster=None, lat=40.0, lon=110.0,
                           racks_total=100)
        add(("cpn.registry", dc.dc_id, _json(make_event("cpn.dc.v1", f"reg-{dc.dc_id}", _at(0), reg))))
    prices = PriceBook.parse(PRICES_TOML)
    job_state: dict[str, tuple[int, float, float]] = {}  # job_id -> (seq, seconds, kwh)
    for minute in range(MINUTES):
        for i, dc in enumerate(FLEET):
            if minute > dc.until_minute:
                continue
            for j, pool in enumerate(dc.pools):
                if minute > pool.until_minute:
                    continue
                t = _at(minute, 5 + 7 * i + j)
                online = pool.total - (minute + j) % 3
                alloc = allocated(pool.total, online, minute, i + j)
                cap = Capacity(dc_id=dc.dc_id, pool_id=pool.pool_id, device_model=pool.model,
                               devices_total=pool.total, devices_online=online,
                               devices_allocated=alloc, busy_ratio=0.5, interval_s=INTERVAL_S)
                event_id = f"cap-{pool.pool_id}-{minute}"
                add(("cpn.capacity", dc.dc_id, _json(make_event("cpn.capacity.v1", event_id, t, cap))))
                data.capacity.append((t, dc.dc_id, pool.pool_id, pool.model, online, alloc))
            it = 10.0 + (minute + i) % 5
            facility = round(it * dc.pue, 6)
            contract = round(facility * dc.green_contract_ratio, 6)
            onsite = 1.0 if minute % 2 else 0.0
            grid = round(facility - contract - onsite, 6)
            share, grams = 0.25, 550.0
            power = Power(dc_id=dc.dc_id, interval_s=INTERVAL_S, it_energy_kwh=it,
                          facility_energy_kwh=facility,
                          sources_kwh=SourcesKwh(grid=grid, green_contract=contract,
                                                 onsite_renewable=onsite),
                          grid_renewable_share=share, grid_emission_g_per_kwh=grams)
            t = _at(minute, 30 + i)
            add(("cpn.power", dc.dc_id, _json(make_event("cpn.power.v1", f"pw-{minute}", t, power))))
            green = contract + onsite + grid * share
            data.power.append((t, dc.dc_id, facility, it, green, grid * grams / 1000))
            if minute % 5 == 0:
                hb = Heartbeat(dc_id=dc.dc_id, agent_version="1.0.0", boot_id="b1",
                               uptime_s=minute * 60.0, spool_backlog_events=minute % 7,
                               spool_oldest_age_s=0.0)
                add(("cpn.heartbeat", dc.dc_id,
                     _json(make_event("cpn.heartbeat.v1", f"hb-{minute}", _at(minute, 50), hb))))
        for dc_id, job_id, tenant, pool_id, model, devices, start, end in JOBS:
            if minute < start or minute > end or (minute - start) % JOB_STEP_MIN and minute != end:
                continue
            phase = "start" if minute == start else "end" if minute == end else "usage"
            seq = job_state.get(job_id, (-1, 0.0, 0.0))[0] + 1
            seconds = float(devices * (minute - start) * 60)
            kwh = round(seconds / 3600 * 0.7, 6)
            job = Job(dc_id=dc_id, job_id=job_id, tenant_id=tenant, pool_id=pool_id,
                      device_model=model, devices=devices, phase=phase, seq=seq,
                      device_seconds_total=seconds, energy_kwh_total=kwh,
                      status="succeeded" if phase == "end" else None)
            t = _at(minute, 40)
            raw = _json(make_event("cpn.job.v1", f"{job_id}-{seq}", t, job))
            add(("cpn.jobs", dc_id, raw))
            if seq == 2:  # a resend of the same event counts once
                add(("cpn.jobs", dc_id, raw))
            _, prev_seconds, prev_kwh = job_state.get(job_id, (-1, 0.0, 0.0))
            delta = Decimal(repr(seconds)) - Decimal(repr(prev_seconds))
            unit = prices.price(model, tenant, t.date())
            assert unit is not None
            amount = (delta * unit / 3600).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
            data.ledger.append((tenant, dc_id, amount, delta, kwh - prev_kwh))
            job_state[job_id] = (seq, seconds, kwh)
    poison = [
        ("undecodable", b"this is not json"),
        ("undecodable", b"[1, 2, 3]"),
        ("unknown_type", _json({**make_event("cpn.dc.v1", "x1", _at(1), _registration()),
                                "type": "cpn.nope.v1"})),
        ("inconsistent", _json(make_event("cpn.capacity.v1", "bad-1", _at(2), Capacity(
            dc_id="nm-alpha", pool_id="gpu0", device_model="nvidia-h100-sxm5-80gb",
            devices_total=4, devices_online=4, devices_allocated=4, interval_s=60)))
         .replace(b'"devices_allocated":4', b'"devices_allocated":9')),
    ]
    for reason, raw in poison:
        add(("cpn.capacity", "nm-alpha", raw))
        data.poison[reason] = data.poison.get(reason, 0) + 1
    return data


def _registration() -> Registration:
    return Registration(dc_id="nm-alpha", name="x", operator="x", province="CN-NM", hub="nm",
                        cluster=None, lat=0.0, lon=0.0, racks_total=1)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def load(client: Any, database: str, data: Dataset | None = None) -> Dataset:
    """Feed the dataset through the worker's batch handler into the store."""
    from streams.batch import Record
    from streams.sink import Sink
    from streams.worker import Handler

    data = data or build_dataset()
    handler = Handler(sink=Sink(client, database), catalogue=load_catalogue(),
                      prices=PriceBook.parse(PRICES_TOML), deadletter_topic="cpn.deadletter")
    records = [Record(topic, 0, offset, key.encode(), value)
               for offset, (topic, key, value) in enumerate(data.records)]

    async def run() -> None:
        for start in range(0, len(records), 1000):
            await handler(records[start : start + 1000])

    asyncio.run(run())
    return data


def load_url(url: str) -> None:
    from surplus.store import connect, migrate

    client, target = connect(url)
    migrate(client, target.database)
    load(client, target.database)


if __name__ == "__main__":
    load_url(sys.argv[1])
