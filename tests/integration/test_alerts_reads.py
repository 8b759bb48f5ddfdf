"""The alert evaluator's reads against a real store (chDB): what the rules see is the whole
store, whichever worker wrote which rows, and only the window a rule judges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.alerts.config import parse_rules
from streams.alerts.reads import StoreReads
from streams.alerts.rules import observe_all
from streams.alerts.snapshot import needs

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def insert(store: Any, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    store.client.insert(f"{store.database}.{table}", [[r[c] for c in columns] for r in rows],
                        column_names=columns)


def capacity(dc: str, pool: str, t: datetime, idle16: float, interval_s: int = 15) -> dict[str, Any]:
    return {"dc_id": dc, "pool_id": pool, "event_id": f"cap-{dc}-{pool}-{t.timestamp()}", "time": t,
            "interval_s": interval_s, "device_model": "m", "devices_total": 8, "devices_online": 8,
            "devices_allocated": 0, "idle_pflops_fp16": idle16, "idle_pflops_fp32": idle16 / 2,
            "idle_pflops_fp64": 0.0, "online_pflops_fp16": idle16, "received_at": t}


def registration(dc: str, hub: str) -> dict[str, Any]:
    return {"dc_id": dc, "event_id": f"reg-{dc}", "time": T0 - timedelta(days=1), "name": dc,
            "operator": "op", "province": "CN-GZ", "hub": hub, "lat": 0.0, "lon": 0.0,
            "racks_total": 1, "received_at": T0}


def power(dc: str, eid: str, t: datetime, facility: float, it: float, green: float) -> dict[str, Any]:
    return {"dc_id": dc, "event_id": eid, "time": t, "interval_s": 300, "it_energy_kwh": it,
            "facility_energy_kwh": facility, "green_energy_kwh": green, "received_at": t}


def test_surplus_is_read_from_every_workers_rows_at_one_minute(store: Any) -> None:
    insert(store, "registrations", [registration("a", "gz"), registration("b", "nm")])
    # "worker 1" wrote DC a's pool, "worker 2" DC b's: one store, one national figure
    insert(store, "capacity_samples", [capacity("a", "p1", s(50), 4.0)])
    insert(store, "capacity_samples", [capacity("b", "p1", s(55), 7.0),
                                       capacity("b", "p2", s(-120), 100.0)])  # stale at 10:01
    reads = StoreReads(store.client, store.database)
    minute = s(60)
    assert reads.national([minute]) == {minute: (11.0, 5.5, 0.0)}
    assert reads.hub_idle([minute]) == {minute: {"gz": (4.0, 2.0, 0.0), "nm": (7.0, 3.5, 0.0)}}
    assert reads.national([s(600)]) == {}  # no row for a minute nobody reported
    assert reads.newest_event() == s(55)
    assert reads.last_seen() == {"a": s(50), "b": s(55)}
    assert reads.hubs() == {"a": "gz", "b": "nm"}

    rules = parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                         "rule": [{"kind": "surplus_below", "threshold_pflops": 12, "for_s": 0,
                                   "settle_s": 0}]})
    now = s(75)
    snap = reads.snapshot(needs(rules, now, now), now, now, T0)
    [obs] = observe_all(rules, snap)
    assert obs.active and "11.000 PFLOPS at 2026-11-30T10:01:00Z" in obs.annotations["description"]


def test_energy_is_one_closed_hour_of_dc_green_hourly_with_duplicates_once(store: Any) -> None:
    insert(store, "power_samples", [power("a", "p1", s(600), 100, 90, 70),
                                    power("a", "p1", s(600), 100, 90, 70),  # a replayed event
                                    power("a", "p2", s(1200), 50, 45, 5),
                                    power("a", "p3", s(3700), 999, 999, 999)])  # the next hour
    got = StoreReads(store.client, store.database).energy([T0])
    assert got == {T0: {"a": (150.0, 135.0, 75.0)}}


def test_deadletter_counts_are_the_increase_of_every_workers_counters(store: Any) -> None:
    def metric(worker: str, t: datetime, name: str, value: float, label: str = "") -> dict[str, Any]:
        return {"ts": t, "worker": worker, "metric": name, "label": label, "value": value}

    insert(store, "pipeline_metrics", [
        # w1: 1000 in / 10 rejected before the window, 1600 / 70 at its end: +600 / +60
        metric("w1", s(-30), "events_in", 1000), metric("w1", s(-30), "rejected", 10, "schema"),
        metric("w1", s(290), "events_in", 1600), metric("w1", s(290), "rejected", 60, "schema"),
        metric("w1", s(290), "rejected", 10, "too_large"),  # a new reason: counted from zero
        # w2 restarted inside the window: its counter starts again from zero
        metric("w2", s(-10), "events_in", 5000), metric("w2", s(100), "events_in", 400),
        metric("w2", s(100), "rejected", 4, "schema"),
        # w3 said nothing in the window: nothing from it
        metric("w3", s(-20), "events_in", 70),
        metric("w1", s(400), "events_in", 9999),  # after the window
    ])
    counts = StoreReads(store.client, store.database).counts(s(0), s(300))
    assert (counts.events, counts.rejected) == (600 + 400, 60 + 4)


def test_unpriced_usage_is_read_from_the_ledger(store: Any) -> None:
    def entry(n: int, model: str, end: datetime, priced: int) -> dict[str, Any]:
        return {"entry_id": f"a/j/{n}", "dc_id": "a", "job_id": "j", "tenant_id": "t",
                "pool_id": "p", "device_model": model, "seq": n, "period_start": end,
                "period_end": end, "device_seconds": 60.0, "energy_kwh": 0.1, "priced": priced,
                "written_at": end}

    insert(store, "ledger_entries", [entry(1, "x1", s(0), 0), entry(2, "x1", s(60), 0),
                                     entry(3, "h100", s(60), 1), entry(4, "old", s(-7200), 0)])
    got = StoreReads(store.client, store.database).unpriced(s(-3600))
    assert got == {("a", "x1"): s(60)}
