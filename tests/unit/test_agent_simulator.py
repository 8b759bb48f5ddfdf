"""The simulated data center: every event valid (many seeds), reproducible, realistic shapes."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.collectors.simulator import SimulatedDataCenter, SimulatorCollector
from agents.fleet import national_fleet
from agents.records import serialise
from agents.settings import DataCenter, Intervals
from agents.simdata import GRIDS
from agents.simsettings import PoolSpec, SimulatorSettings
from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.reasons import Reject

T0 = datetime(2026, 11, 16, 0, 0, 7, 250000, tzinfo=UTC)  # a Monday, off the grid on purpose
DC = DataCenter(dc_id="gz-guian-01", name="Gui'an 1", operator="Example Co", province="CN-GZ",
                hub="gz", cluster="guian", lat=26.42, lon=106.3, racks_total=2000)
POOLS = [PoolSpec(pool_id="h100", device_model="nvidia-h100-sxm5-80gb", devices=256),
         PoolSpec(pool_id="910b", device_model="huawei-ascend-910b2", devices=512, profile="inference"),
         PoolSpec(pool_id="k100", device_model="hygon-dcu-k100", devices=64, profile="batch"),
         PoolSpec(pool_id="cpu", device_model="huawei-kunpeng-920-6426", devices=4096, profile="cloud")]
SIM = SimulatorSettings(enabled=True, seed=11, pools=POOLS, pue=1.25, green_contract_share=0.3,
                        onsite_renewable_share=0.04)
CPU_MODELS = [d.id for d in load_catalogue().devices.values() if d.unit == "core"]
ACCEL_MODELS = [d.id for d in load_catalogue().devices.values() if d.unit == "device"]


def events(sim: SimulatorSettings = SIM, hours: float = 3, dc: DataCenter = DC) -> list[dict[str, object]]:
    return SimulatedDataCenter(dc, sim, start=T0).events_between(T0, T0 + timedelta(hours=hours))


def assert_all_valid(evs: list[dict[str, object]], dc_id: str) -> None:
    now = max(datetime.fromisoformat(e["time"]) for e in evs) + timedelta(seconds=1)
    for e in evs:
        result = decode(serialise(e), now=now, key=dc_id)
        assert not isinstance(result, Reject), (result, e)


def test_every_event_type_is_valid_and_ids_are_unique() -> None:
    evs = events(hours=6)
    assert_all_valid(evs, DC.dc_id)
    assert {e["type"] for e in evs} == {"cpn.dc.v1", "cpn.capacity.v1", "cpn.power.v1", "cpn.job.v1"}
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids))
    assert all(len(i) <= 128 for i in ids)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), devices=st.integers(1, 3000), cpu=st.sampled_from(CPU_MODELS),
       accel=st.sampled_from(ACCEL_MODELS), profile=st.sampled_from(["training", "inference", "cloud", "batch"]),
       province=st.sampled_from([*GRIDS, "CN-XZ"]), green=st.floats(0, 0.6), onsite=st.floats(0, 0.4),
       failures=st.floats(0, 0.5), share=st.floats(0, 1))
def test_property_any_seed_and_pool_mix_gives_valid_events(
        seed: int, devices: int, cpu: str, accel: str, profile: str, province: str, green: float,
        onsite: float, failures: float, share: float) -> None:
    sim = SimulatorSettings(enabled=True, seed=seed, green_contract_share=green,
                            onsite_renewable_share=onsite, pools=[
                                PoolSpec(pool_id="acc", device_model=accel, devices=devices,
                                         profile=profile, failure_rate_per_device_day=failures,
                                         metered_share=share),
                                PoolSpec(pool_id="cpu", device_model=cpu, devices=devices * 16,
                                         profile="cloud", metered_share=share / 4)])
    dc = DC.model_copy(update={"province": province})
    assert_all_valid(events(sim, hours=1, dc=dc), DC.dc_id)


def test_same_seed_same_events_however_time_is_sliced() -> None:
    whole = events(hours=2)
    sim = SimulatedDataCenter(DC, SIM, start=T0)
    sliced: list[dict[str, object]] = []
    t = T0
    while t < T0 + timedelta(hours=2):
        step = timedelta(seconds=[7, 61, 15, 300][len(sliced) % 4])
        sliced += sim.events_between(t, min(t + step, T0 + timedelta(hours=2)))
        t += step
    assert [serialise(e) for e in sliced] == [serialise(e) for e in whole]
    other = events(SIM.model_copy(update={"seed": 12}), hours=2)
    assert [serialise(e) for e in other] != [serialise(e) for e in whole]


def test_simulation_only_moves_forward() -> None:
    sim = SimulatedDataCenter(DC, SIM, start=T0)
    sim.events_between(T0, T0 + timedelta(minutes=5))
    with pytest.raises(ValueError, match="only moves forward"):
        sim.events_between(T0, T0 + timedelta(minutes=10))
    later = sim.events_between(T0 + timedelta(minutes=20), T0 + timedelta(minutes=21))
    assert all(datetime.fromisoformat(e["time"]) >= T0 + timedelta(minutes=20) for e in later)


def test_jobs_have_realistic_sizes_durations_and_statuses() -> None:
    evs = events(SIM.model_copy(update={"pools": POOLS[:1]}), hours=24 * 4)
    jobs: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in evs:
        if e["type"] == "cpn.job.v1":
            jobs[e["data"]["job_id"]].append(e["data"])
    ended = [v for v in jobs.values() if v[-1]["phase"] == "end" and v[0]["phase"] == "start"]
    assert len(ended) > 300
    for seq in jobs.values():
        assert [d["seq"] for d in seq] == list(range(len(seq)))
        totals = [d["device_seconds_total"] for d in seq]
        assert totals == sorted(totals) and totals[0] == 0
        assert [d["energy_kwh_total"] for d in seq] == sorted(d["energy_kwh_total"] for d in seq)
    sizes = [v[0]["devices"] for v in ended]
    assert statistics.median(sizes) == 1 and max(sizes) >= 32  # median 1 GPU, heavy tail
    durations = [v[-1]["device_seconds_total"] / v[-1]["devices"] for v in ended]
    assert 60 <= statistics.median(durations) <= 15 * 60
    assert statistics.mean(durations) > 3 * statistics.median(durations)  # heavy tail
    status = Counter(v[-1]["status"] for v in ended)
    share = {k: n / len(ended) for k, n in status.items()}
    assert 0.47 < share["succeeded"] < 0.67 and 0.22 < share["failed"] < 0.40
    assert 0.06 < share["cancelled"] < 0.19
    assert len({v[0]["tenant_id"] for v in ended}) >= 3


def test_power_sources_sum_and_follow_the_province() -> None:
    evs = events(hours=24)
    power = [e["data"] for e in evs if e["type"] == "cpn.power.v1"]
    assert len(power) == 24 * 60
    for p in power:
        s = p["sources_kwh"]
        assert s["grid"] + s["green_contract"] + s["onsite_renewable"] == pytest.approx(
            p["facility_energy_kwh"], rel=1e-6)
        assert p["facility_energy_kwh"] >= p["it_energy_kwh"] > 0
        assert p["grid_emission_g_per_kwh"] == 498.9  # Guizhou 2022: 0.4989 kg/kWh
    pue = sum(p["facility_energy_kwh"] for p in power) / sum(p["it_energy_kwh"] for p in power)
    assert pue == pytest.approx(1.25, abs=0.02)
    assert sum(p["sources_kwh"]["onsite_renewable"] for p in power) > 0  # solar by day
    night = [p for p, e in zip(power, [e for e in evs if e["type"] == "cpn.power.v1"], strict=True)
             if datetime.fromisoformat(e["time"]).hour in (14, 15, 16)]  # 22-24 h in Shanghai
    assert all(p["sources_kwh"]["onsite_renewable"] == 0 for p in night)
    sichuan = events(SIM.model_copy(update={"pools": POOLS[:1]}), hours=1,
                     dc=DC.model_copy(update={"province": "CN-SC"}))
    share = [e["data"]["grid_renewable_share"] for e in sichuan if e["type"] == "cpn.power.v1"]
    assert min(share) >= 0.82  # hydro 79 % + wind 3 % (+ solar by day); nuclear is not counted


def test_capacity_follows_the_diurnal_curve_and_devices_fail() -> None:
    sim = SIM.model_copy(update={"pools": [POOLS[0].model_copy(update={
        "failure_rate_per_device_day": 0.05, "metered_share": 0.2})]})
    cap = [e for e in events(sim, hours=24 * 7) if e["type"] == "cpn.capacity.v1"]
    assert len(cap) == 7 * 24 * 240
    online = [e["data"]["devices_online"] for e in cap]
    assert min(online) < 256 and max(online) == 256
    by_day: dict[int, list[float]] = defaultdict(list)
    for e in cap:
        t = datetime.fromisoformat(e["time"]) + timedelta(hours=8)
        by_day[t.weekday()].append(e["data"]["devices_allocated"] / e["data"]["devices_online"])
    assert statistics.mean(by_day[6]) < statistics.mean(by_day[3]) - 0.1  # Sunday is quiet


def test_grid_aligned_cadences() -> None:
    evs = events(hours=1)
    cap_times = sorted({e["time"] for e in evs if e["type"] == "cpn.capacity.v1"})
    assert all(datetime.fromisoformat(t).second % 15 == 0 for t in cap_times)
    assert len(cap_times) == 240
    (reg,) = [e for e in evs if e["type"] == "cpn.dc.v1"]
    assert datetime.fromisoformat(reg["time"]) == T0.replace(microsecond=250000)
    first_power = min(datetime.fromisoformat(e["time"]) for e in evs if e["type"] == "cpn.power.v1")
    assert first_power == datetime(2026, 11, 16, 0, 1, tzinfo=UTC)


def test_collector_returns_events_up_to_now() -> None:
    collector = SimulatorCollector(DC, SIM, Intervals(), start=T0)
    first = collector.collect(T0 + timedelta(seconds=52.5))  # 00:00:59.75: ticks at :15, :30, :45
    assert Counter(e["type"] for e in first)["cpn.capacity.v1"] == 3 * len(POOLS)
    assert not [e for e in first if e["type"] == "cpn.dc.v1"]  # the agent registers, not the collector
    assert collector.collect(T0) == []  # time going back yields nothing


def test_national_fleet_spans_the_hubs_with_mixed_hardware() -> None:
    fleet = national_fleet(24, seed=5)
    assert fleet == national_fleet(24, seed=5)
    assert {d.dc.hub for d in fleet} == {"jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx"}
    assert len({d.dc.dc_id for d in fleet}) == 24
    vendors = {p.device_model.split("-")[0] for d in fleet for p in d.sim.pools}
    assert {"nvidia", "huawei", "hygon", "cambricon"} <= vendors
    for d in fleet[:8]:
        evs = SimulatedDataCenter(d.dc, d.sim, start=T0).events_between(T0, T0 + timedelta(minutes=10))
        assert_all_valid(evs, d.dc.dc_id)


def test_a_sim_clock_of_the_past_never_passes_the_present() -> None:
    """The demo's clock (SimClock(not_after_now=True)) waits for the present instead of running past it."""
    from datetime import UTC, datetime, timedelta

    from agents.clock import SimClock

    ahead = SimClock(datetime.now(UTC) + timedelta(hours=1), speed=1.0, not_after_now=True)
    assert ahead.now() <= datetime.now(UTC)
    fast = SimClock(datetime.now(UTC) - timedelta(seconds=1), speed=1e9, not_after_now=True)
    assert abs((fast.now() - datetime.now(UTC)).total_seconds()) < 1
    free = SimClock(datetime.now(UTC) - timedelta(seconds=1), speed=1e9)
    assert free.now() > datetime.now(UTC) + timedelta(seconds=10), "without the cap it runs ahead"
