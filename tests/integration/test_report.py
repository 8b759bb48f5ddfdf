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

pytestmark = pytest.mark.clickhouse

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
    # (tenant, dc_id, amount_cny, device_seconds, energy_kwh, period_end) per ledger entry
    ledger: list[tuple[str, str, Decimal, Decimal, float, datetime]] = field(default_factory=list)
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
            if minute < start or minute > end or ((minute - start) % JOB_STEP_MIN and minute != end):
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
            data.ledger.append((tenant, dc_id, amount, delta, kwh - prev_kwh, t))
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


# --- what the report should say, computed from the events -----------------------------------


def covered_minutes(t: datetime, interval_s: int) -> list[datetime]:
    """The whole minutes T with t in (T - 3*interval_s, T] (SPEC §4)."""
    first = t.replace(second=0, microsecond=0)
    if first < t:
        first += timedelta(minutes=1)
    out = []
    while first < t + timedelta(seconds=3 * interval_s):
        out.append(first)
        first += timedelta(minutes=1)
    return out


def last_minute(data: Dataset) -> datetime:
    return max(covered_minutes(t, INTERVAL_S)[-1] for t, *_ in data.capacity)


def snapshot(data: Dataset, ts: datetime) -> dict[str, dict[str, float]]:
    """Per DC at minute ts: idle PFLOPS per precision, reporting and stale pool counts."""
    catalogue = load_catalogue()
    latest: dict[tuple[str, str], tuple[datetime, str, int, int]] = {}
    known: set[tuple[str, str]] = set()
    for t, dc_id, pool_id, model, online, alloc in data.capacity:
        if ts - timedelta(hours=24) < t <= ts:
            known.add((dc_id, pool_id))
        fresh = ts - timedelta(seconds=3 * INTERVAL_S) < t <= ts
        if fresh and ((dc_id, pool_id) not in latest or latest[(dc_id, pool_id)][0] < t):
            latest[(dc_id, pool_id)] = (t, model, online, alloc)
    out: dict[str, dict[str, float]] = {}
    for dc_id, pool_id in known:
        row = out.setdefault(dc_id, {"fp16": 0.0, "fp32": 0.0, "fp64": 0.0,
                                     "reporting": 0, "stale": 0})
        if (dc_id, pool_id) not in latest:
            row["stale"] += 1
            continue
        _, model, online, alloc = latest[(dc_id, pool_id)]
        device = catalogue.get(model)
        assert device is not None
        row["reporting"] += 1
        for p in ("fp16", "fp32", "fp64"):
            row[p] += (online - alloc) * device.peak(p) / 1000
    return out


def national(data: Dataset, ts: datetime) -> dict[str, float]:
    per_dc = snapshot(data, ts).values()
    return {k: sum(row[k] for row in per_dc) for k in ("fp16", "fp32", "fp64", "reporting", "stale")}


def hub_energy(data: Dataset, hub: str, *, before: datetime | None = None) -> dict[str, float]:
    """Energy-weighted green share and PUE of a hub's power samples (sum over sum)."""
    dcs = {dc.dc_id for dc in FLEET if dc.hub == hub}
    rows = [r for r in data.power if r[1] in dcs and (before is None or r[0] < before)]
    facility = sum(r[2] for r in rows)
    return {"green_share": sum(r[4] for r in rows) / facility,
            "pue": facility / sum(r[3] for r in rows), "carbon_kg": sum(r[5] for r in rows)}


def tenant_amounts(data: Dataset, *, dcs: set[str] | None = None,
                   until: datetime | None = None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for tenant, dc_id, amount, _, _, end in data.ledger:
        if (dcs is None or dc_id in dcs) and (until is None or end <= until):
            out[tenant] = out.get(tenant, Decimal("0")) + amount
    return out


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(clickhouse_url: str, clickhouse_client: Any) -> Iterator[tuple[Any, Dataset]]:
    """One database with the dataset, shared by the read-only tests of this module."""
    import uuid

    from surplus.store import migrate
    from tests.conftest import Store, _with_database

    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database)
    data = load(clickhouse_client, database)
    yield Store(url=_with_database(clickhouse_url, database), database=database,
                client=clickhouse_client), data
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A chDB store of its own, loaded by a subprocess: chDB allows one data path per process."""
    url = f"chdb://{tmp_path_factory.mktemp('report') / 'chdb'}?database=cpn"
    run = subprocess.run([sys.executable, "-m", "tests.integration.test_report", url],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return url


def surplus(*args: str, timeout: float = 60,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("surplus")
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "COLUMNS")}
    env |= env_extra or {}
    return subprocess.run([str(exe), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


# --- in-process: build_report on the store fixture ------------------------------------------


def test_report_matches_figures_computed_from_the_events(store: Any) -> None:
    from surplus.report import build_report

    data = load(store.client, store.database)
    report = build_report(store.client, store.database)
    ts = last_minute(data)
    expected = national(data, ts)
    assert report["at"] == ts.isoformat().replace("+00:00", "Z")
    for p in ("fp16", "fp32", "fp64"):
        assert report["national"]["idle_pflops"][p] == pytest.approx(expected[p], rel=1e-9)
    assert report["national"]["pools_reporting"] == expected["reporting"] == 6
    assert report["national"]["pools_stale"] == expected["stale"] == 2
    series = [national(data, BASE + timedelta(minutes=m)) for m in range(1, MINUTES + 3)]
    for p in ("fp16", "fp32", "fp64"):
        assert report["national"]["range"][p]["min"] == pytest.approx(min(s[p] for s in series))
        assert report["national"]["range"][p]["max"] == pytest.approx(max(s[p] for s in series))
    hubs = {h["hub"]: h for h in report["hubs"]}
    assert set(hubs) == {"nm", "gz", "yrd"}
    for hub in hubs:
        energy = hub_energy(data, hub)
        assert hubs[hub]["green_share"] == pytest.approx(energy["green_share"], rel=1e-9)
        assert hubs[hub]["pue"] == pytest.approx(energy["pue"], rel=1e-9)
        assert hubs[hub]["carbon_kg"] == pytest.approx(energy["carbon_kg"], rel=1e-9)
    assert hubs["nm"]["pue_target"] == 1.2 and hubs["yrd"]["pue_target"] == 1.25
    assert hubs["yrd"]["pue_met"] is False and hubs["nm"]["pue_met"] is True
    assert all(h["green_share_met"] is False for h in hubs.values())
    amounts = tenant_amounts(data)
    top = max(amounts, key=lambda t: amounts[t])
    assert report["tenants"][0]["tenant_id"] == top
    assert Decimal(report["tenants"][0]["amount_cny"]) == amounts[top]
    assert report["tenants"][0]["amount_cny"] == str(amounts[top].quantize(Decimal("0.0001")))
    assert Decimal(report["tenants_total"]["amount_cny"]) == sum(amounts.values())
    json.dumps(report)  # JSON-ready as it is
    from surplus.report_model import validate

    validate(report)  # of the declared shape, every key and type


def test_top_and_stale_dcs(fleet: tuple[Any, Dataset]) -> None:
    from surplus.report import build_report

    store, data = fleet
    report = build_report(store.client, store.database)
    per_dc = snapshot(data, last_minute(data))
    ranked = sorted((dc for dc in per_dc if per_dc[dc]["reporting"]),
                    key=lambda dc: (-per_dc[dc]["fp16"], dc))
    assert [d["dc_id"] for d in report["top_dcs"]] == ranked
    for row in report["top_dcs"]:
        assert row["idle_pflops"]["fp16"] == pytest.approx(per_dc[row["dc_id"]]["fp16"])
    assert report["top_dcs"][0]["province"] == "CN-NM"
    stale = {d["dc_id"]: d for d in report["stale_dcs"]}
    assert set(stale) == {"yrd-beta", "gz-beta"}
    assert stale["yrd-beta"]["reasons"] == ["stale_pools", "silent"]
    assert stale["gz-beta"]["reasons"] == ["stale_pools"]
    assert (stale["gz-beta"]["pools_reporting"], stale["gz-beta"]["pools_stale"]) == (1, 1)
    # yrd-beta's last event: the power sample of minute 80 (heartbeat at :50 of minute 80)
    last = _at(80, 50)
    assert stale["yrd-beta"]["last_seen"] == last.isoformat().replace("+00:00", "Z")
    data_time = max(_at(119, 40), *(t for t, *_ in data.power))  # a job end or a power sample
    assert stale["yrd-beta"]["age_s"] == pytest.approx((data_time - last).total_seconds())
    assert report["deadletters"]["total"] == sum(data.poison.values())
    assert {r["reason"]: r["count"] for r in report["deadletters"]["by_reason"]} == data.poison


def test_default_period_is_the_24_h_to_the_latest_data(fleet: tuple[Any, Dataset],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Without --at the report is bounded (SPEC §5): 24 h to the latest event time or snapshot
    minute, the energy of the 24 hours up to the one under way, the same snapshot and tenants as
    --at that time, and the title says which."""
    from surplus.cli import main
    from surplus.report import build_report

    store, data = fleet
    report = build_report(store.client, store.database)
    data_time = max(_at(119, 40), *(t for t, *_ in data.power))
    snapshot_minute = datetime.fromisoformat(report["at"].replace("Z", "+00:00"))
    end = max(data_time, snapshot_minute)  # the last samples stand for minutes after their time
    assert report["period"]["end"] == end.isoformat().replace("+00:00", "Z")
    assert report["period"]["start"] == (end - timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    assert report["requested_at"] is None
    hour = end.replace(minute=0, second=0, microsecond=0)
    assert report["period"]["hours"] == [(hour - timedelta(hours=23)).isoformat().replace("+00:00", "Z"),
                                         hour.isoformat().replace("+00:00", "Z")]
    assert report["national"]["range"]["last_ts"] == report["at"]  # every minute up to the snapshot
    at = build_report(store.client, store.database, at=end)
    for key in ("at", "tenants", "tenants_total", "top_dcs"):
        assert report[key] == at[key], key  # type: ignore[literal-required]
    assert main(["report", "--url", store.url]) == 0
    assert "24 h to the latest data" in capsys.readouterr().out


def test_at_reports_as_of_that_minute(fleet: tuple[Any, Dataset]) -> None:
    from surplus.report import build_report

    store, data = fleet
    at = _at(61, 30)
    report = build_report(store.client, store.database, at="2025-03-10T09:01:30+08:00")
    ts = _at(61)
    assert report["at"] == "2025-03-10T01:01:00Z"
    assert report["requested_at"] == "2025-03-10T01:01:30Z"
    expected = national(data, ts)
    for p in ("fp16", "fp32", "fp64"):
        assert report["national"]["idle_pflops"][p] == pytest.approx(expected[p], rel=1e-9)
    assert report["national"]["range"]["last_ts"] == "2025-03-10T01:01:00Z"
    # energy: the whole hours of the 24 h before --at, i.e. hour 00:00 only
    hubs = {h["hub"]: h for h in report["hubs"]}
    assert hubs["gz"]["green_share"] == pytest.approx(
        hub_energy(data, "gz", before=_at(60))["green_share"], rel=1e-9)
    amounts = tenant_amounts(data, until=at)
    assert {t["tenant_id"]: Decimal(t["amount_cny"]) for t in report["tenants"]} == amounts
    # yrd-beta still spoke at 01:01: not silent then
    assert "silent" not in {r for d in report["stale_dcs"] for r in d["reasons"]}
    before = build_report(store.client, store.database, at=_at(30, 59))
    assert before["at"] == "2025-03-10T00:30:00Z"


def test_hub_and_dc_restrict_the_tables(fleet: tuple[Any, Dataset]) -> None:
    from surplus.report import build_report

    store, data = fleet
    whole = build_report(store.client, store.database)
    gz = build_report(store.client, store.database, hub="gz")
    assert [h["hub"] for h in gz["hubs"]] == ["gz"]
    assert {d["dc_id"] for d in gz["top_dcs"]} == {"gz-alpha", "gz-beta"}
    assert [d["dc_id"] for d in gz["stale_dcs"]] == ["gz-beta"]
    amounts = tenant_amounts(data, dcs={"gz-alpha", "gz-beta"})
    assert {t["tenant_id"]: Decimal(t["amount_cny"]) for t in gz["tenants"]} == amounts
    assert gz["national"] == whole["national"]  # the national figures stay national
    one = build_report(store.client, store.database, dc="nm-alpha")
    assert one["filters"] == {"hub": None, "dc": "nm-alpha"}
    assert [d["dc_id"] for d in one["top_dcs"]] == ["nm-alpha"]
    assert [h["hub"] for h in one["hubs"]] == ["nm"]
    assert one["stale_dcs"] == []
    assert {t["tenant_id"]: Decimal(t["amount_cny"]) for t in one["tenants"]} == tenant_amounts(
        data, dcs={"nm-alpha"})


def test_bad_filters_are_one_line_user_errors(fleet: tuple[Any, Dataset]) -> None:
    from surplus.errors import UserError
    from surplus.report import build_report

    store, _ = fleet
    for kwargs, words in (
        ({"hub": "mars"}, "not a hub"),
        ({"dc": "no-such-dc"}, "no such DC"),
        ({"dc": "Bad DC!"}, "not a DC id"),
        ({"dc": "nm-alpha", "hub": "gz"}, "is in hub 'nm'"),
        ({"at": "yesterday"}, "not an ISO 8601 time"),
        ({"at": "2020-01-01T00:00Z"}, "no surplus snapshot at or before"),
    ):
        with pytest.raises(UserError, match=words) as caught:
            build_report(store.client, store.database, **kwargs)
        assert "\n" not in str(caught.value)


def test_tenants_only(fleet: tuple[Any, Dataset], capsys: pytest.CaptureFixture[str]) -> None:
    from surplus.cli import main

    store, data = fleet
    assert main(["report", "--tenants", "--json", "--url", store.url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"at", "requested_at", "period", "filters", "tenants", "tenants_total"}
    from surplus.report_model import validate

    validate(report, tenants_only=True)
    amounts = tenant_amounts(data)
    assert {t["tenant_id"]: Decimal(t["amount_cny"]) for t in report["tenants"]} == amounts
    assert main(["report", "--tenants", "--url", store.url]) == 0
    out = capsys.readouterr().out
    assert "Tenants by amount" in out and "tenant-a" in out and "Hubs" not in out


def test_terminal_report_via_the_cli(fleet: tuple[Any, Dataset],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from surplus.cli import main

    store, _ = fleet
    assert main(["report", "--url", store.url, "--hub", "nm"]) == 0
    out = capsys.readouterr().out
    for title in ("National idle compute", "Hubs", "Top 10 idle DCs", "Stale DCs", "tenants",
                  "Dead letters"):
        assert title in out
    assert "nm-alpha" in out and "gz-alpha" not in out


def test_empty_store_says_so(store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from surplus.cli import main

    assert main(["report", "--url", store.url]) == 2  # nothing to report: not "differences found"
    err = capsys.readouterr().err
    assert err.strip() == "surplus: error: no data yet: run `surplus demo` or a worker"


# --- subprocess: the console script on a store of its own -----------------------------------


def test_json_from_the_console_script(own_store: str) -> None:
    run = surplus("report", "--json", "--url", own_store)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)  # stdout is the JSON and nothing else
    from surplus.report_model import json_schema, validate

    validate(report)
    assert set(json_schema()["required"]) == set(report)
    data = build_dataset()
    expected = national(data, last_minute(data))
    for p in ("fp16", "fp32", "fp64"):
        assert report["national"]["idle_pflops"][p] == pytest.approx(expected[p], rel=1e-9)
    hubs = {h["hub"]: h for h in report["hubs"]}
    assert hubs["yrd"]["green_share"] == pytest.approx(hub_energy(data, "yrd")["green_share"])
    amounts = tenant_amounts(data)
    top = max(amounts, key=lambda t: amounts[t])
    assert (report["tenants"][0]["tenant_id"], report["tenants"][0]["amount_cny"]) == (
        top, str(amounts[top]))


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_png_charts_of_the_asked_size(own_store: str, tmp_path: Path) -> None:
    run = surplus("report", "--png", str(tmp_path / "charts"), "--width-px", "900",
                  "--height-px", "450", "--url", own_store)
    assert run.returncode == 0, run.stderr
    written = [Path(line.split(" ", 1)[1]) for line in run.stdout.splitlines()
               if line.startswith("wrote ")]
    assert sorted(p.name for p in written) == ["green_share.png", "hub_surplus.png",
                                               "national_surplus.png"]
    for path in written:
        assert path.stat().st_size > 1000
        assert _png_size(path) == (900, 450)


def test_write_pngs_default_size(fleet: tuple[Any, Dataset], tmp_path: Path) -> None:
    from surplus.report import write_pngs

    store, _ = fleet
    paths = write_pngs(store.client, store.database, tmp_path, at=_at(90))
    assert [_png_size(p) for p in paths] == [(1200, 600)] * 3


@pytest.mark.parametrize("at", ["yesterday", "2025-13-40T99:00"])
def test_bad_at_is_one_line_without_traceback(at: str) -> None:
    run = surplus("report", "--at", at, "--url", "chdb:///nonexistent/never-opened")
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "--at" in run.stderr and run.stdout == ""


def test_empty_store_from_the_console_script(tmp_path: Path) -> None:
    missing = surplus("report", "--url", f"chdb://{tmp_path / 'missing'}")
    assert missing.returncode == 2 and missing.stderr.startswith(f"surplus: error: no store at {tmp_path / 'missing'}")
    assert missing.stderr.count("\n") == 1 and not (tmp_path / "missing").exists()
    assert surplus("db", "migrate", "--url", f"chdb://{tmp_path / 'empty'}").returncode == 0
    run = surplus("report", "--url", f"chdb://{tmp_path / 'empty'}")
    assert run.returncode == 2
    assert run.stderr == "surplus: error: no data yet: run `surplus demo` or a worker\n"


# --- the text report piped, the other formats, progress -------------------------------------


def test_piped_text_at_80_columns_has_every_figure_of_the_json(own_store: str) -> None:
    """`COLUMNS=80 surplus report | cat`: every figure in full, hub and DC names complete."""
    from tests.report_numbers import missing_figures, unexplained_numbers

    text = surplus("report", "--url", own_store, env_extra={"COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    as_json = surplus("report", "--url", own_store, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text.stdout and "\x1b" not in text.stdout
    assert missing_figures(text.stdout, report) == []
    assert unexplained_numbers(text.stdout, report) == []
    for name in ("Inner Mongolia hub", "Guizhou hub", "Yangtze River Delta hub", "nm-alpha DC",
                 "yrd-beta DC"):
        assert name in text.stdout
    devices = report["national"]["devices"]
    assert f"CPU cores     idle {devices['cpu_cores']['idle']:,} of " in text.stdout


def test_formats_json_alias_and_csv(own_store: str) -> None:
    import csv
    import io

    as_json = surplus("report", "--url", own_store, "--json")
    formatted = surplus("report", "--url", own_store, "--format", "json")
    assert as_json.returncode == formatted.returncode == 0
    assert json.loads(as_json.stdout) == json.loads(formatted.stdout)
    report = json.loads(formatted.stdout)
    run = surplus("report", "--url", own_store, "--format", "csv")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    cells = {(r["section"], r["key"], r["field"]): r["value"] for r in rows}
    assert float(cells[("national", "", "idle_pflops.fp16")]) == report["national"]["idle_pflops"]["fp16"]
    for hub in report["hubs"]:
        assert float(cells[("hubs", hub["hub"], "green_share")]) == hub["green_share"]
    assert cells[("stale_dcs", "yrd-beta", "reasons.1")] == "silent"
    tenant = report["tenants"][0]
    assert cells[("tenants", tenant["tenant_id"], "amount_cny")] == tenant["amount_cny"]
    both = surplus("report", "--url", own_store, "--json", "--format", "csv")
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "--json" in both.stderr


def test_progress_lines_on_stderr_when_piped(own_store: str) -> None:
    run = surplus("report", "--url", own_store, "--progress-s", "0")
    assert run.returncode == 0, run.stderr
    steps = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in run.stderr.splitlines()]
    assert all(line.startswith("surplus report: ") for line in run.stderr.splitlines())
    for step in ("opening the store", "national figures", "hubs", "stale DCs", "tenants",
                 "dead letters"):
        assert step in steps
    assert "\x1b" not in run.stderr and "\r" not in run.stderr
    assert "Surplus report" in run.stdout and "surplus report:" not in run.stdout


def test_devices_split_into_accelerators_and_cpu_cores(fleet: tuple[Any, Dataset]) -> None:
    from surplus.report import build_report

    store, data = fleet
    catalogue = load_catalogue()
    report = build_report(store.client, store.database)
    ts = last_minute(data)
    latest: dict[tuple[str, str], tuple[datetime, str, int, int]] = {}
    for t, dc_id, pool_id, model, online, alloc in data.capacity:
        if ts - timedelta(seconds=3 * INTERVAL_S) < t <= ts and (
                (dc_id, pool_id) not in latest or latest[(dc_id, pool_id)][0] < t):
            latest[(dc_id, pool_id)] = (t, model, online, alloc)
    expected = {"accelerators": [0, 0, 0], "cpu_cores": [0, 0, 0]}
    for _, model, online, alloc in latest.values():
        device = catalogue.get(model)
        assert device is not None
        kind = "cpu_cores" if device.kind == "cpu" else "accelerators"
        expected[kind] = [a + b for a, b in zip(expected[kind], (online - alloc, online, alloc),
                                                 strict=True)]
    national = report["national"]
    got = {kind: [national["devices"][kind][k] for k in ("idle", "online", "allocated")]
           for kind in expected}
    assert got == expected and expected["cpu_cores"][1] > 0 and expected["accelerators"][1] > 0
    for row in (national, *report["hubs"], *report["top_dcs"]):
        for key in ("idle", "online", "allocated"):
            assert row[f"{key}_devices"] == sum(row["devices"][k][key] for k in expected)
    nm_alpha = next(d for d in report["top_dcs"] if d["dc_id"] == "nm-alpha")
    assert nm_alpha["devices"]["cpu_cores"]["online"] > 1000  # the Kunpeng pool's cores


def test_charts_from_the_store_mark_the_silent_dc_and_stack_the_hubs(
        fleet: tuple[Any, Dataset]) -> None:
    """The figures drawn from the store's own series (what --png saves), read before saving."""
    from surplus import charts
    from surplus import report_queries as q
    from surplus.report import build_report

    store, data = fleet
    report = build_report(store.client, store.database)
    scope = q.Scope(ts=datetime.fromisoformat(report["at"].replace("Z", "+00:00")))
    stale = report["stale_dcs"]
    national = charts.national_surplus_figure(q.national_series(store.client, store.database, scope),
                                              stale_dcs=stale)
    silent = [line for line in national.axes[0].get_lines() if line.get_gid() == "silent:yrd-beta"]
    assert len(silent) == 1 and silent[0].get_xdata()[0] == _at(80, 50)  # yrd-beta's last event
    assert "1 with stale pools: gz-beta" in national.get_suptitle()
    series = q.hub_series(store.client, store.database, scope)
    hubs = charts.hub_surplus_figure(series, stale_dcs=stale)
    ax = hubs.axes[0]
    assert len(ax.collections) == 3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "yrd: Yangtze River Delta (stale: yrd-beta)" in labels
    assert "gz: Guizhou (stale: gz-beta)" in labels
    # the stack's top is the national idle FP16 at every minute
    top = {row["ts"]: 0.0 for row in series}
    for row in series:
        top[row["ts"]] += row["idle_pflops_fp16"]
    ts = last_minute(data)
    assert top[ts] == pytest.approx(report["national"]["idle_pflops"]["fp16"])
    # power every 60 s from 00:00:30 to 01:59:35: both hours whole
    coverage = q.power_coverage(store.client, store.database, scope)
    assert coverage is not None and coverage[2] == INTERVAL_S
    green = charts.green_share_figure(q.green_series(store.client, store.database, scope),
                                      coverage=coverage, stale_dcs=stale)
    assert not any(str(line.get_gid()).startswith("partial:") for line in green.axes[0].get_lines())
    assert charts.partial_hours([BASE, BASE + timedelta(hours=1), BASE + timedelta(hours=2)],
                                coverage) == {BASE + timedelta(hours=2)}
