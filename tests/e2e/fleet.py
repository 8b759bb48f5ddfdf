"""A generated fleet for the end-to-end tests: messages to publish and an independent oracle.

Deliberately shares no code with streams/: the oracle recomputes SPEC §4 from the events the
test publishes (surplus per minute, green energy per hour, ledger entries, dead letters) with
plain Python, so the worker is checked against the contract, not against itself.
"""

from __future__ import annotations

import bisect
import json
import random
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHANGHAI = timezone(timedelta(hours=8))
BASE = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai: jobs cross midnight there

HUBS = ["jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx"]
PROVINCE = {"jjj": "CN-HE", "yrd": "CN-SH", "gba": "CN-GD", "cy": "CN-SC", "nm": "CN-NM",
            "gz": "CN-GZ", "gs": "CN-GS", "nx": "CN-NX", "none": "CN-BJ"}
MODELS = ["nvidia-h100-sxm5-80gb", "huawei-ascend-910b2", "hygon-dcu-k100", "cambricon-mlu370-x8",
          "huawei-kunpeng-920-6426", "nvidia-a800-sxm4-80gb"]
CUSTOM = ("acme-npu-1", {"fp16": 200.0, "fp32": 50.0, "fp64": None})
TENANTS = ["rural-school", "startup-ai", "uni-lab", "foreign-co"]
JOB_MODELS = ["nvidia-h100-sxm5-80gb", "huawei-ascend-910b2", "biren-br100"]

PRICE_BOOK = """
[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "12.3456"
effective_from = 2026-01-01

[[price]]
device_model = "nvidia-h100-sxm5-80gb"
cny_per_device_hour = "11.1111"
effective_from = 2026-11-21

[[price]]
device_model = "huawei-ascend-910b2"
cny_per_device_hour = "6.00"
effective_from = 2026-01-01

[[price]]
device_model = "huawei-ascend-910b2"
tenant_id = "rural-school"
cny_per_device_hour = "1.7777"
effective_from = 2026-06-01

[[price]]
device_model = "nvidia-h100-sxm5-80gb"
tenant_id = "uni-lab"
cny_per_device_hour = "9.9999"
effective_from = 2026-11-21
"""


def catalogue_peaks() -> dict[str, dict[str, float | None]]:
    raw = tomllib.loads((REPO / "schemas" / "devices.toml").read_text())
    return {d["id"]: {p: d.get(p) for p in ("fp16", "fp32", "fp64")} for d in raw["device"]}


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(event_type: str, event_id: str, dc: str, t: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": f"//cpn/dc/{dc}", "type": event_type,
            "time": iso(t), "datacontenttype": "application/json", "data": data}


TOPIC = {"cpn.dc.v1": "registry", "cpn.capacity.v1": "capacity", "cpn.power.v1": "power",
         "cpn.job.v1": "jobs", "cpn.heartbeat.v1": "heartbeat"}


@dataclass
class Message:
    topic: str  # short name, without prefix
    key: bytes | None
    value: bytes
    event: dict[str, Any] | None = None  # None for poison
    poison: str | None = None  # the reason the oracle expects


@dataclass
class Fleet:
    messages: list[Message] = field(default_factory=list)

    @property
    def valid(self) -> list[dict[str, Any]]:
        return [m.event for m in self.messages if m.event is not None]

    def by_topic(self) -> Counter[str]:
        return Counter(m.topic for m in self.messages)


def generate(seed: int = 7, *, dcs: int = 12, minutes: int = 150, duplicate_share: float = 0.10,
             poison: bool = True, regression: bool = True) -> Fleet:
    rnd = random.Random(seed)
    per_dc: dict[str, list[Message]] = defaultdict(list)
    late: dict[str, list[Message]] = defaultdict(list)  # published after the shuffle

    def as_message(event: dict[str, Any]) -> Message:
        dc = event["data"]["dc_id"]
        return Message(TOPIC[event["type"]], dc.encode(), json.dumps(event).encode(), event)

    def add(event: dict[str, Any]) -> None:
        per_dc[event["data"]["dc_id"]].append(as_message(event))

    for i in range(dcs):
        dc = f"dc-{i:02d}"
        hub = HUBS[i % len(HUBS)] if i < dcs - 1 else "none"
        registered = i != dcs - 2  # one DC never registers: it counts under hub `none`
        if registered:
            add(envelope("cpn.dc.v1", f"reg-{dc}-0", dc, BASE - timedelta(minutes=5), {
                "dc_id": dc, "name": f"DC {i}", "operator": "op", "province": PROVINCE[hub], "hub": hub,
                "cluster": None, "lat": 30.0 + i, "lon": 100.0 + i, "racks_total": 100 + i}))
        if i == 0:  # re-registers later in another hub: the latest wins
            add(envelope("cpn.dc.v1", f"reg-{dc}-1", dc, BASE + timedelta(minutes=30), {
                "dc_id": dc, "name": "DC 0 renamed", "operator": "op", "province": "CN-NX", "hub": "nx",
                "cluster": "zhongwei", "lat": 37.5, "lon": 105.2, "racks_total": 300}))
        for p in range(3):
            pool = f"pool-{p}"
            model = MODELS[(i + p) % len(MODELS)]
            peak = None
            if i % 5 == 4 and p == 2:
                model, peak = CUSTOM
            interval = [15, 30, 60][(i + p) % 3]
            total = rnd.randint(16, 512)
            offset_ms = rnd.choice([0, 250, 999, 59_999])
            gap = range(40 * 60, 65 * 60) if (i == 3 and p == 0) else range(0)  # goes quiet 25 min
            stop = minutes * 60 if not (i == 5 and p == 1) else 70 * 60  # stops for good at 70'
            k = 0
            while k * interval < stop:
                s = k * interval
                k += 1
                if s in gap or any(s // 60 * 60 == g for g in gap):
                    continue
                t = BASE + timedelta(seconds=s, milliseconds=offset_ms)
                online = total - rnd.randint(0, 3)
                allocated = min(online, int(online * rnd.uniform(0.3, 0.95)))
                data: dict[str, Any] = {"dc_id": dc, "pool_id": pool, "device_model": model,
                                        "devices_total": total, "devices_online": online,
                                        "devices_allocated": allocated, "busy_ratio": round(rnd.random(), 3),
                                        "interval_s": interval}
                if peak is not None:
                    data["peak_tflops_per_device"] = peak
                add(envelope("cpn.capacity.v1", f"cap-{pool}-{s}", dc, t, data))
        for s in range(0, minutes * 60, 300):
            t = BASE + timedelta(seconds=s + 300)
            it = round(rnd.uniform(50, 400), 3)
            facility = round(it * rnd.uniform(1.1, 1.6), 3)
            green_c = round(facility * rnd.uniform(0, 0.4), 3)
            onsite = round(facility * rnd.uniform(0, 0.1), 3)
            grid = round(facility - green_c - onsite, 3)
            add(envelope("cpn.power.v1", f"pwr-{s}", dc, t, {
                "dc_id": dc, "interval_s": 300, "it_energy_kwh": it, "facility_energy_kwh": facility,
                "sources_kwh": {"grid": grid, "green_contract": green_c, "onsite_renewable": onsite},
                "grid_renewable_share": round(rnd.uniform(0.05, 0.8), 3),
                "grid_emission_g_per_kwh": round(rnd.uniform(140, 800), 1)}))
        for s in range(0, minutes * 60, 120):
            add(envelope("cpn.heartbeat.v1", f"hb-{s}", dc, BASE + timedelta(seconds=s), {
                "dc_id": dc, "agent_version": "0.1.0", "boot_id": f"boot-{dc}", "uptime_s": float(s),
                "spool_backlog_events": rnd.randint(0, 5), "spool_oldest_age_s": 0.0}))
        for j in range(3):
            job = f"job-{i}-{j}"
            tenant = TENANTS[(i + j) % len(TENANTS)]
            model = JOB_MODELS[(i + j) % len(JOB_MODELS)]
            devices = rnd.choice([1, 1, 2, 8, 64])
            start = rnd.randint(0, minutes * 60 // 2)
            length = rnd.randint(3, 40) * 60
            seq = 0
            seconds_total = 0.0
            energy_total = 0.0
            base = {"dc_id": dc, "job_id": job, "tenant_id": tenant, "pool_id": "pool-0",
                    "device_model": model, "devices": devices}
            add(envelope("cpn.job.v1", f"job-{job}-0", dc, BASE + timedelta(seconds=start), {
                **base, "phase": "start", "seq": 0, "device_seconds_total": 0, "energy_kwh_total": 0}))
            for u in range(60, length + 1, 60):
                seq += 1
                seconds_total += devices * 60
                energy_total = round(energy_total + devices * 60 * 0.7 / 3600 * rnd.uniform(0.8, 1.2), 6)
                phase = "end" if u + 60 > length else "usage"
                data = {**base, "phase": phase, "seq": seq, "device_seconds_total": seconds_total,
                        "energy_kwh_total": energy_total}
                if phase == "end":
                    data["status"] = rnd.choice(["succeeded", "failed", "cancelled"])
                add(envelope("cpn.job.v1", f"job-{job}-{seq}", dc, BASE + timedelta(seconds=start + u), data))
            if regression and i == 1 and j == 0:  # a counter that falls at a higher seq
                late[dc].append(as_message(envelope("cpn.job.v1", f"job-{job}-{seq + 1}", dc,
                             BASE + timedelta(seconds=start + length + 60),
                             {**base, "phase": "usage", "seq": seq + 1,
                              "device_seconds_total": max(0.0, seconds_total - 60),
                              "energy_kwh_total": energy_total})))

    fleet = Fleet()
    for dc, messages in per_dc.items():
        dups = [m for m in messages if rnd.random() < duplicate_share]
        messages = messages + [Message(m.topic, m.key, m.value, m.event) for m in dups]
        rnd.shuffle(messages)  # order shuffled within each DC
        per_dc[dc] = messages + late[dc]
    queues = list(per_dc.values())
    while any(queues):  # interleave the DCs
        q = rnd.choice([q for q in queues if q])
        fleet.messages.append(q.pop(0))
    if poison:
        fleet.messages.extend(poison_messages())
    return fleet


def poison_messages() -> list[Message]:
    def ok(**changes: Any) -> dict[str, Any]:
        e = envelope("cpn.capacity.v1", "poison-x", "dc-00", BASE, {
            "dc_id": "dc-00", "pool_id": "pool-x", "device_model": "nvidia-h100-sxm5-80gb",
            "devices_total": 10, "devices_online": 9, "devices_allocated": 5, "interval_s": 60})
        for k, v in changes.items():
            if k.startswith("data_"):
                e["data"][k[5:]] = v
            else:
                e[k] = v
        return e

    far = datetime.now(UTC) + timedelta(hours=2)
    cases = [
        ("too_large", b'{"pad": "' + b"x" * (70 * 1024) + b'"}'),
        ("undecodable", b"\xff\xfe\xfa not utf-8"),
        ("undecodable", b"{ not json"),
        ("undecodable", b"[1, 2, 3]"),
        ("unknown_type", json.dumps(ok(type="cpn.gossip.v1")).encode()),
        ("schema", json.dumps(ok(data_extra=1)).encode()),
        ("schema", json.dumps(ok(time="2026-11-20T14:30:00")).encode()),
        ("schema", json.dumps(ok(data_busy_ratio=1.5)).encode()),
        ("inconsistent", json.dumps(ok(data_devices_allocated=99)).encode()),
        ("inconsistent", json.dumps(ok(source="//cpn/dc/dc-01")).encode()),
        ("future_time", json.dumps(ok(time=iso(far))).encode()),
        ("unknown_device_model", json.dumps(ok(data_device_model="acme-unknown-9")).encode()),
    ]
    return [Message("capacity", b"dc-00", raw, None, reason) for reason, raw in cases]


# --- the oracle ----------------------------------------------------------------------------


def t_of(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def unique(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e["type"] == event_type:
            seen.setdefault((e["source"], e["id"]), e)
    return list(seen.values())


def datacenters(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for e in unique(events, "cpn.dc.v1"):
        dc = e["data"]["dc_id"]
        if dc not in latest or t_of(e) > latest[dc][0]:
            latest[dc] = (t_of(e), e["data"])
    return {dc: data for dc, (_, data) in latest.items()}


def surplus(events: list[dict[str, Any]]) -> dict[str, dict[Any, dict[str, float]]]:
    """national / hub / dc snapshots per minute (SPEC §4), keyed by ts (and hub or dc)."""
    peaks = catalogue_peaks()
    regs = datacenters(events)
    pools: dict[tuple[str, str], list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
    for e in unique(events, "cpn.capacity.v1"):
        pools[(e["data"]["dc_id"], e["data"]["pool_id"])].append((t_of(e), e))
    for samples in pools.values():
        samples.sort(key=lambda s: (s[0], s[1]["id"]))
    first = min(s[0][0] for s in pools.values())
    last = max(s[-1][0] for s in pools.values())
    t = first.replace(second=0, microsecond=0)
    out: dict[str, dict[Any, dict[str, float]]] = {"national": {}, "hub": {}, "dc": {}}
    while t <= last + timedelta(hours=3):
        levels: dict[str, dict[Any, dict[str, float]]] = {"national": {}, "hub": {}, "dc": {}}
        for (dc, _pool), samples in pools.items():
            times = [s[0] for s in samples]
            i = bisect.bisect_right(times, t) - 1
            if i < 0 or times[i] <= t - timedelta(hours=24):
                continue  # not known at t
            hub = regs.get(dc, {}).get("hub", "none")
            keys = {"national": t, "hub": (t, hub), "dc": (t, dc)}
            # the latest sample with time in (t - 3*interval, t]
            j = i
            reporting = None
            while j >= 0 and times[j] > t - timedelta(hours=1, minutes=1):
                e = samples[j][1]
                if times[j] > t - timedelta(seconds=3 * e["data"]["interval_s"]):
                    reporting = e
                    break
                j -= 1
            for level, key in keys.items():
                row = levels[level].setdefault(key, Counter())
                if reporting is None:
                    row["pools_stale"] += 1
                    continue
                d = reporting["data"]
                pk = d.get("peak_tflops_per_device") or peaks[d["device_model"]]
                idle = d["devices_online"] - d["devices_allocated"]
                row["pools_reporting"] += 1
                row["idle_devices"] += idle
                row["online_devices"] += d["devices_online"]
                row["allocated_devices"] += d["devices_allocated"]
                for p in ("fp16", "fp32", "fp64"):
                    row[f"idle_pflops_{p}"] += idle * (pk.get(p) or 0.0) / 1000
                row["online_pflops_fp16"] += d["devices_online"] * (pk.get("fp16") or 0.0) / 1000
        for level, rows in levels.items():
            for key, row in rows.items():
                if row["pools_reporting"] > 0:
                    out[level][key] = dict(row)
        t += timedelta(minutes=1)
    return out


HOURLY_FIGURES = ("idle_pflops_fp16", "idle_pflops_fp32", "idle_pflops_fp64")


def hourly(minutes: dict[str, dict[Any, dict[str, float]]]) -> dict[str, dict[Any, dict[str, float]]]:
    """SPEC §5 hourly relations over the minute snapshots of `surplus()`, keyed by hour (and hub or dc)."""
    out: dict[str, dict[Any, dict[str, float]]] = {}
    for level, rows in minutes.items():
        groups: dict[Any, list[dict[str, float]]] = defaultdict(list)
        for key, row in rows.items():
            t = key if level == "national" else key[0]
            hour = t.replace(minute=0, second=0, microsecond=0)
            groups[hour if level == "national" else (hour, key[1])].append(row)
        level_out: dict[Any, dict[str, float]] = {}
        for key, group in groups.items():
            n = len(group)
            figures: dict[str, float] = {"minutes": n}
            for f in HOURLY_FIGURES:
                values = [r.get(f, 0.0) for r in group]
                figures[f"{f}_avg"] = sum(values) / n
                figures[f"{f}_min"] = min(values)
                figures[f"{f}_max"] = max(values)
            figures["online_pflops_fp16_avg"] = sum(r.get("online_pflops_fp16", 0.0) for r in group) / n
            figures["idle_devices_avg"] = sum(r.get("idle_devices", 0) for r in group) / n
            level_out[key] = figures
        out[level] = level_out
    return out


def green(events: list[dict[str, Any]]) -> dict[str, dict[Any, dict[str, float]]]:
    regs = datacenters(events)
    out: dict[str, dict[Any, dict[str, float]]] = {"national": {}, "hub": {}, "dc": {}}
    for e in unique(events, "cpn.power.v1"):
        d = e["data"]
        s = d["sources_kwh"]
        hour = t_of(e).replace(minute=0, second=0, microsecond=0)
        hub = regs.get(d["dc_id"], {}).get("hub", "none")
        for level, key in (("national", hour), ("hub", (hour, hub)), ("dc", (hour, d["dc_id"]))):
            row = out[level].setdefault(key, Counter())
            row["facility_kwh"] += d["facility_energy_kwh"]
            row["it_kwh"] += d["it_energy_kwh"]
            row["green_kwh"] += s["green_contract"] + s["onsite_renewable"] + s["grid"] * d["grid_renewable_share"]
            row["carbon_kg"] += s["grid"] * d["grid_emission_g_per_kwh"] / 1000
    for rows in out.values():
        for row in rows.values():
            row["green_share"] = row["green_kwh"] / row["facility_kwh"]
            row["pue"] = row["facility_kwh"] / row["it_kwh"]
    return out


def price(book: str, model: str, tenant: str, on: date) -> Decimal | None:
    entries = tomllib.loads(book)["price"]

    def best(candidates: list[dict[str, Any]]) -> Decimal | None:
        valid = [c for c in candidates if c["effective_from"] <= on]
        return Decimal(max(valid, key=lambda c: c["effective_from"])["cny_per_device_hour"]) if valid else None

    own = best([c for c in entries if c["device_model"] == model and c.get("tenant_id") == tenant])
    return own if own is not None else best([c for c in entries if c["device_model"] == model
                                            and "tenant_id" not in c])


def ledger(fleet: Fleet, book: str = PRICE_BOOK) -> tuple[dict[str, dict[str, Any]], int]:
    """Entries by id, and the number of counter_regression dead letters, in arrival order."""
    state: dict[tuple[str, str], tuple[int, Decimal, Decimal, datetime]] = {}
    entries: dict[str, dict[str, Any]] = {}
    regressions = 0
    for m in fleet.messages:
        if m.event is None or m.event["type"] != "cpn.job.v1":
            continue
        d = m.event["data"]
        key = (d["dc_id"], d["job_id"])
        secs, energy = Decimal(repr(float(d["device_seconds_total"]))), Decimal(repr(float(d["energy_kwh_total"])))
        prev = state.get(key)
        if prev is not None and d["seq"] <= prev[0]:
            continue
        if prev is not None and (secs < prev[1] or energy < prev[2]):
            regressions += 1
            continue
        t = t_of(m.event)
        ds = secs - (prev[1] if prev else 0)
        de = energy - (prev[2] if prev else 0)
        p = price(book, d["device_model"], d["tenant_id"], t.astimezone(SHANGHAI).date())
        amount = (ds / 3600 * p).quantize(Decimal("0.0001"), ROUND_HALF_EVEN) if p is not None else Decimal(0)
        entries[f"{d['dc_id']}/{d['job_id']}/{d['seq']}"] = {
            "tenant_id": d["tenant_id"], "dc_id": d["dc_id"], "seq": d["seq"],
            "period_start": prev[3] if prev else t, "period_end": t,
            "device_seconds": ds, "energy_kwh": de, "amount_cny": amount}
        state[key] = (d["seq"], secs, energy, t)
    return entries, regressions


def tenant_daily(entries: dict[str, dict[str, Any]]) -> dict[tuple[date, str, str], dict[str, Any]]:
    out: dict[tuple[date, str, str], dict[str, Any]] = {}
    for e in entries.values():
        key = (e["period_end"].astimezone(SHANGHAI).date(), e["tenant_id"], e["dc_id"])
        row = out.setdefault(key, {"device_hours": Decimal(0), "energy_kwh": Decimal(0), "amount_cny": Decimal(0)})
        row["device_hours"] += e["device_seconds"] / 3600
        row["energy_kwh"] += e["energy_kwh"]
        row["amount_cny"] += e["amount_cny"]
    return out


def deadletters(fleet: Fleet, book: str = PRICE_BOOK) -> Counter[str]:
    counts = Counter(m.poison for m in fleet.messages if m.poison)
    _, regressions = ledger(fleet, book)
    if regressions:
        counts["counter_regression"] += regressions
    return counts
