"""Rule evaluation, pure: live state + observations + stream time -> alert transitions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.alerts.config import RulesFile, parse_rules
from streams.alerts.evaluate import Step, step
from streams.alerts.live import LiveState
from streams.alerts.model import AlertState, fingerprint
from streams.alerts.rules import observe_all

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class FakeBatch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unpriced: Counter[tuple[str, str]] = field(default_factory=Counter)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def heartbeat(dc: str, t: datetime) -> dict[str, Any]:
    return {"dc_id": dc, "time": t}


def registration(dc: str, hub: str, t: datetime = T0) -> dict[str, Any]:
    return {"dc_id": dc, "hub": hub, "time": t}


def capacity(dc: str, pool: str, t: datetime, idle16: float, interval_s: int = 15) -> dict[str, Any]:
    return {"dc_id": dc, "pool_id": pool, "time": t, "interval_s": interval_s,
            "idle_pflops_fp16": idle16, "idle_pflops_fp32": idle16 / 2, "idle_pflops_fp64": 0.0}


def power(dc: str, eid: str, t: datetime, facility: float, it: float, green: float) -> dict[str, Any]:
    return {"dc_id": dc, "event_id": eid, "time": t, "facility_energy_kwh": facility,
            "it_energy_kwh": it, "green_energy_kwh": green}


def rules(*rule: dict[str, Any]) -> RulesFile:
    return parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                        "rule": list(rule)})


class Harness:
    """Live state + alert states, stepped at given wall/stream times."""

    def __init__(self, config: RulesFile, idle_after_s: float = 60) -> None:
        self.rules = config
        self.live = LiveState(started_at=T0 - timedelta(hours=2), idle_after_s=idle_after_s)
        self.states: dict[str, AlertState] = {}

    def feed(self, wall: datetime, **rows: list[dict[str, Any]]) -> None:
        self.live.observe(FakeBatch(rows=rows, accepted=Counter(x=sum(map(len, rows.values())))), wall)

    def tick(self, wall: datetime) -> Step:
        now = self.live.advance(wall)
        assert now is not None
        ids = {r.id for r in self.rules.rule}
        result = step(self.states, observe_all(self.rules, self.live, now, wall), ids, now)
        self.states = result.states
        return result


def test_fingerprint_is_stable_and_order_free() -> None:
    a = fingerprint({"alertname": "X", "dc_id": "a"})
    assert a == fingerprint({"dc_id": "a", "alertname": "X"})
    assert a != fingerprint({"alertname": "X", "dc_id": "b"})
    assert len(a) == 16 and int(a, 16) >= 0


def test_dc_silent_fires_after_for_s_of_event_time_then_resolves() -> None:
    h = Harness(rules({"kind": "dc_silent", "for_s": 120}))
    h.feed(s(0), heartbeats=[heartbeat("dc-a", s(0)), heartbeat("dc-b", s(0))],
           registrations=[registration("dc-a", "gz")])
    assert not h.tick(s(1)).fired
    h.feed(s(119), heartbeats=[heartbeat("dc-b", s(119))])
    assert not h.tick(s(119)).fired
    h.feed(s(125), heartbeats=[heartbeat("dc-b", s(125))])
    fired = h.tick(s(125)).fired
    assert [a.labels for a in fired] == [
        {"alertname": "DcSilent", "severity": "warning", "dc_id": "dc-a", "hub": "gz"}
    ]
    assert fired[0].starts_at == s(125)
    assert not h.tick(s(126)).fired  # firing once, not at every tick
    h.feed(s(130), heartbeats=[heartbeat("dc-a", s(130))])
    resolved = h.tick(s(130)).resolved
    assert [a.fingerprint for a in resolved] == [fired[0].fingerprint]
    assert resolved[0].status == "resolved" and resolved[0].ends_at == s(130)


def test_silence_is_measured_on_event_time_not_on_arrival() -> None:
    h = Harness(rules({"kind": "dc_silent", "for_s": 120}))
    old = T0 - timedelta(days=2)
    # a backfill: both DCs' events from two days ago arrive now, fast
    for i in range(0, 600, 30):
        h.feed(T0 + timedelta(seconds=i / 100),
               heartbeats=[heartbeat("dc-a", old + timedelta(seconds=i)),
                           heartbeat("dc-b", old + timedelta(seconds=i))])
        assert not h.tick(T0 + timedelta(seconds=i / 100)).fired


def test_the_stream_clock_follows_the_wall_clock_when_idle() -> None:
    live = LiveState(started_at=T0, idle_after_s=60)
    old = T0 - timedelta(days=1)
    live.observe(FakeBatch(rows={"heartbeats": [heartbeat("dc-a", old)]}), T0)
    assert live.advance(s(10)) == old
    assert live.advance(s(60)) == s(60)  # idle: nothing more is coming, "now" is now
    live.observe(FakeBatch(rows={"heartbeats": [heartbeat("dc-a", old)]}), s(61))
    assert live.advance(s(62)) == s(60)  # never backwards


def test_green_share_is_energy_weighted_per_hub_not_a_mean_of_ratios() -> None:
    h = Harness(rules({"kind": "green_share_below", "scope": "hub"}))
    h.feed(s(0), registrations=[registration("big", "nm"), registration("small", "nm")])
    hour = T0.replace(minute=30)
    # big: 1000 kWh at 70 % green; small: 10 kWh at 100 % -> mean of ratios 85 %, weighted 70.3 %
    h.feed(s(1), power_samples=[power("big", "p1", hour, 1000, 900, 700),
                                power("small", "p2", hour, 10, 9, 10),
                                power("small", "p2", hour, 10, 9, 10)])  # a duplicate counts once
    h.feed(s(4000), heartbeats=[heartbeat("big", s(3600 + 400))])
    fired = h.tick(s(4000)).fired
    assert [a.labels["hub"] for a in fired] == ["nm"]
    assert "70.3%" in fired[0].annotations["summary"]
    assert "facility 1010.0 kWh" in fired[0].annotations["description"]


def test_an_hour_is_judged_only_after_it_closed_and_settled() -> None:
    h = Harness(rules({"kind": "green_share_below", "scope": "dc", "settle_s": 300}))
    h.feed(s(0), power_samples=[power("dc-a", "p1", s(60), 100, 90, 10)])
    h.feed(s(3700), heartbeats=[heartbeat("dc-a", s(3700))])
    assert not h.tick(s(3700)).fired  # 10:00-11:00 ended 100 s ago, settles at 11:05
    h.feed(s(3901), heartbeats=[heartbeat("dc-a", s(3901))])
    fired = h.tick(s(3901)).fired
    assert [(a.labels["dc_id"], a.labels["hub"]) for a in fired] == [("dc-a", "none")]


def test_pue_threshold_defaults_to_the_hubs_target() -> None:
    h = Harness(rules({"kind": "pue_above", "scope": "dc", "settle_s": 0}))
    h.feed(s(0), registrations=[registration("west", "gz"), registration("east", "jjj")])
    h.feed(s(1), power_samples=[power("west", "w", s(60), 122, 100, 0),   # 1.22 > 1.2 (gz)
                                power("east", "e", s(60), 122, 100, 0)])  # 1.22 <= 1.25 (jjj)
    h.feed(s(3601), heartbeats=[heartbeat("west", s(3601))])
    fired = h.tick(s(3601)).fired
    assert [a.labels["dc_id"] for a in fired] == ["west"]
    assert "target 1.20" in fired[0].annotations["summary"]


def test_surplus_below_waits_for_s_and_counts_only_fresh_samples() -> None:
    h = Harness(rules({"kind": "surplus_below", "threshold_pflops": 10, "for_s": 60}))
    h.feed(s(0), capacity_samples=[capacity("a", "p1", s(0), 4), capacity("b", "p1", s(0), 4)])
    assert h.tick(s(0)).fired == []  # 8 < 10, pending
    assert h.states and next(iter(h.states.values())).status == "pending"
    h.feed(s(30), capacity_samples=[capacity("a", "p1", s(30), 4), capacity("b", "p1", s(30), 7)])
    assert h.tick(s(30)).states == {}  # 11 >= 10: the pending alert is forgotten
    h.feed(s(40), capacity_samples=[capacity("a", "p1", s(40), 4)])
    h.feed(s(80), capacity_samples=[capacity("a", "p1", s(80), 4)])
    # b's last sample (t=30, interval 15) is stale at t=80: only a's 4 PFLOPS count
    assert h.tick(s(80)).fired == []
    h.feed(s(141), capacity_samples=[capacity("a", "p1", s(141), 4)])
    fired = h.tick(s(141)).fired
    assert [a.labels for a in fired] == [
        {"alertname": "SurplusBelow", "severity": "warning", "scope": "national"}
    ]
    assert "4.000 PFLOPS" in fired[0].annotations["description"]


def test_surplus_above_per_hub() -> None:
    h = Harness(rules({"kind": "surplus_above", "scope": "hub", "threshold_pflops": 5, "for_s": 0}))
    h.feed(s(0), registrations=[registration("a", "gz"), registration("b", "nm")])
    h.feed(s(1), capacity_samples=[capacity("a", "p1", s(1), 6), capacity("b", "p1", s(1), 1)])
    assert [a.labels["hub"] for a in h.tick(s(1)).fired] == ["gz"]


def test_deadletter_rate_per_minute_and_share() -> None:
    h = Harness(rules({"kind": "deadletter_rate_above", "per_minute": 10, "window_s": 60},
                      {"kind": "deadletter_rate_above", "share": 0.5, "min_events": 10,
                       "severity": "critical", "window_s": 60}))
    h.live.observe(FakeBatch(rows={"heartbeats": [heartbeat("a", s(0))]},
                             accepted=Counter({"cpn.heartbeat.v1": 9}),
                             rejected=Counter(schema=11)), s(0))
    fired = h.tick(s(1)).fired
    assert sorted(a.labels["severity"] for a in fired) == ["critical", "warning"]
    h.feed(s(200), heartbeats=[heartbeat("a", s(200))])
    assert len(h.tick(s(200)).resolved) == 2


def test_unpriced_usage_fires_and_clears() -> None:
    h = Harness(rules({"kind": "unpriced_usage", "clear_after_s": 600}))
    h.live.observe(FakeBatch(rows={"job_events": [heartbeat("a", s(0))]},
                             unpriced=Counter({("a", "acme-x1"): 2})), s(0))
    fired = h.tick(s(0)).fired
    assert fired[0].labels["device_model"] == "acme-x1"
    h.feed(s(700), heartbeats=[heartbeat("a", s(700))])
    assert len(h.tick(s(700)).resolved) == 1


def test_no_data_keeps_an_alert_and_a_removed_rule_resolves_it() -> None:
    h = Harness(rules({"kind": "surplus_below", "threshold_pflops": 10, "for_s": 0}))
    h.feed(s(0), capacity_samples=[capacity("a", "p1", s(0), 1)])
    assert len(h.tick(s(0)).fired) == 1
    h.feed(s(300), heartbeats=[heartbeat("a", s(300))])  # no capacity sample is fresh any more
    assert h.tick(s(300)).resolved == []
    h.rules = rules({"kind": "dc_silent"})
    assert len(h.tick(s(301)).resolved) == 1


def test_keep_firing_for_s_delays_the_resolve() -> None:
    h = Harness(rules({"kind": "surplus_above", "threshold_pflops": 1, "for_s": 0,
                      "keep_firing_for_s": 60}))
    h.feed(s(0), capacity_samples=[capacity("a", "p1", s(0), 2)])
    assert len(h.tick(s(0)).fired) == 1
    h.feed(s(10), capacity_samples=[capacity("a", "p1", s(10), 0)])
    assert h.tick(s(10)).resolved == []
    h.feed(s(61), capacity_samples=[capacity("a", "p1", s(61), 0)])
    assert len(h.tick(s(61)).resolved) == 1
