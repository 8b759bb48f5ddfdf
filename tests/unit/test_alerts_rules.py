"""Rule evaluation, pure: a snapshot of the store + stream time -> alert transitions.

The harness stands for the store: what the evaluator's bounded reads would return (the DCs'
last event times, the hours of `dc_green_hourly`, the minutes of the surplus relations, the
workers' counters, unpriced ledger entries); `tick` builds the Snapshot the way
`StoreReads.snapshot` does, from the windows `needs` names, and steps the state machine.
The reads themselves are tested against a real store in tests/integration/test_alerts_engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streams.alerts.config import RulesFile, parse_rules
from streams.alerts.evaluate import Step, step
from streams.alerts.model import AlertState, fingerprint
from streams.alerts.rules import observe_all
from streams.alerts.snapshot import (
    Counts,
    Energy,
    Idle,
    Snapshot,
    StreamClock,
    minute_of,
    needs,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rules(*rule: dict[str, object]) -> RulesFile:
    return parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                        "rule": list(rule)})


@dataclass
class Store:
    """What the store holds, as the evaluator's reads return it."""

    hubs: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    energy: dict[datetime, dict[str, Energy]] = field(default_factory=dict)
    national: dict[datetime, Idle] = field(default_factory=dict)
    hub_idle: dict[datetime, dict[str, Idle]] = field(default_factory=dict)
    counts: list[tuple[datetime, int, int]] = field(default_factory=list)  # (wall, events, rejected)
    unpriced: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def seen(self, dc: str, t: datetime) -> None:
        self.last_seen[dc] = max(t, self.last_seen.get(dc, t))

    def newest(self) -> datetime | None:
        return max(self.last_seen.values(), default=None)

    def idle(self, t: datetime, fp16: float, hub: str | None = None) -> None:
        """The surplus relations' row for minute `t` (national, or one hub's)."""
        value = (fp16, fp16 / 2, 0.0)
        if hub is None:
            self.national[minute_of(t)] = value
        else:
            self.hub_idle.setdefault(minute_of(t), {})[hub] = value


class Harness:
    """A store + alert states, stepped at given wall times."""

    def __init__(self, config: RulesFile, idle_after_s: float = 60) -> None:
        self.rules = config
        self.store = Store()
        self.started_at = T0 - timedelta(hours=2)
        self.clock = StreamClock(started_at=self.started_at, idle_after_s=idle_after_s)
        self.states: dict[str, AlertState] = {}

    def snapshot(self, now: datetime, wall: datetime) -> Snapshot:
        need = needs(self.rules, now, wall)
        st = self.store
        deadletter = {}
        for w in need.deadletter_windows_s:
            inside = [(e, r) for t, e, r in st.counts if wall - timedelta(seconds=w) < t <= wall]
            deadletter[w] = Counts(sum(e for e, _ in inside), sum(r for _, r in inside))
        since = need.unpriced_since
        return Snapshot(
            now=now, wall=wall, started_at=self.started_at, hubs=dict(st.hubs),
            last_seen=dict(st.last_seen) if need.silence else {},
            energy={h: st.energy.get(h, {}) for h in need.energy_hours},
            national={m: st.national[m] for m in need.national_minutes if m in st.national},
            hub_idle={m: st.hub_idle.get(m, {}) for m in need.hub_minutes},
            deadletter=deadletter,
            unpriced={k: t for k, t in st.unpriced.items() if since is not None and t > since},
        )

    def tick(self, wall: datetime) -> Step:
        now = self.clock.advance(self.store.newest(), wall)
        assert now is not None
        ids = {r.id for r in self.rules.rule}
        result = step(self.states, observe_all(self.rules, self.snapshot(now, wall)), ids, now)
        self.states = result.states
        return result


def test_fingerprint_is_stable_and_order_free() -> None:
    a = fingerprint({"alertname": "X", "dc_id": "a"})
    assert a == fingerprint({"dc_id": "a", "alertname": "X"})
    assert a != fingerprint({"alertname": "X", "dc_id": "b"})
    assert len(a) == 16 and int(a, 16) >= 0


def test_dc_silent_fires_after_for_s_of_event_time_then_resolves() -> None:
    h = Harness(rules({"kind": "dc_silent", "for_s": 120}))
    h.store.hubs["dc-a"] = "gz"
    h.store.seen("dc-a", s(0))
    h.store.seen("dc-b", s(0))
    assert not h.tick(s(1)).fired
    h.store.seen("dc-b", s(119))
    assert not h.tick(s(119)).fired
    h.store.seen("dc-b", s(125))
    fired = h.tick(s(125)).fired
    assert [a.labels for a in fired] == [
        {"alertname": "DcSilent", "severity": "warning", "dc_id": "dc-a", "hub": "gz"}
    ]
    assert fired[0].starts_at == s(125)
    assert not h.tick(s(126)).fired  # firing once, not at every tick
    h.store.seen("dc-a", s(130))
    resolved = h.tick(s(130)).resolved
    assert [a.fingerprint for a in resolved] == [fired[0].fingerprint]
    assert resolved[0].status == "resolved" and resolved[0].ends_at == s(130)


def test_silence_is_measured_on_event_time_not_on_arrival() -> None:
    h = Harness(rules({"kind": "dc_silent", "for_s": 120}))
    old = T0 - timedelta(days=2)
    # a backfill: both DCs' events from two days ago arrive now, fast
    for i in range(0, 600, 30):
        h.store.seen("dc-a", old + timedelta(seconds=i))
        h.store.seen("dc-b", old + timedelta(seconds=i))
        assert not h.tick(T0 + timedelta(seconds=i / 100)).fired


def test_the_stream_clock_follows_the_wall_clock_when_idle() -> None:
    clock = StreamClock(started_at=T0, idle_after_s=60)
    old = T0 - timedelta(days=1)
    assert clock.advance(None, s(10)) is None  # nothing in the store yet
    assert clock.advance(old, s(10)) == old
    assert clock.advance(old, s(69)) == old
    assert clock.advance(old, s(70)) == s(70)  # idle: nothing more is coming, "now" is now
    assert clock.advance(old + timedelta(seconds=1), s(71)) == s(70)  # never backwards
    assert clock.advance(s(200), s(100)) == s(100)  # never past the wall clock


def test_green_share_is_energy_weighted_per_hub_not_a_mean_of_ratios() -> None:
    h = Harness(rules({"kind": "green_share_below", "scope": "hub"}))
    h.store.hubs.update(big="nm", small="nm")
    # big: 1000 kWh at 70 % green; small: 10 kWh at 100 % -> mean of ratios 85 %, weighted 70.3 %
    h.store.energy[T0] = {"big": (1000, 900, 700), "small": (10, 9, 10)}
    h.store.seen("big", s(3600 + 400))
    fired = h.tick(s(4000)).fired
    assert [a.labels["hub"] for a in fired] == ["nm"]
    assert "70.3%" in fired[0].annotations["summary"]
    assert "facility 1010.0 kWh" in fired[0].annotations["description"]


def test_an_hour_is_judged_only_after_it_closed_and_settled() -> None:
    h = Harness(rules({"kind": "green_share_below", "scope": "dc", "settle_s": 300}))
    h.store.energy[T0] = {"dc-a": (100, 90, 10)}
    h.store.seen("dc-a", s(3700))
    assert not h.tick(s(3700)).fired  # 10:00-11:00 ended 100 s ago, settles at 11:05
    assert needs(h.rules, s(3700), s(3700)).energy_hours == {T0 - timedelta(hours=1)}
    h.store.seen("dc-a", s(3901))
    fired = h.tick(s(3901)).fired
    assert [(a.labels["dc_id"], a.labels["hub"]) for a in fired] == [("dc-a", "none")]
    assert needs(h.rules, s(3901), s(3901)).energy_hours == {T0}  # one hour is read, no more


def test_pue_threshold_defaults_to_the_hubs_target() -> None:
    h = Harness(rules({"kind": "pue_above", "scope": "dc", "settle_s": 0}))
    h.store.hubs.update(west="gz", east="jjj")
    h.store.energy[T0] = {"west": (122, 100, 0),   # 1.22 > 1.2 (gz)
                          "east": (122, 100, 0)}   # 1.22 <= 1.25 (jjj)
    h.store.seen("west", s(3601))
    fired = h.tick(s(3601)).fired
    assert [a.labels["dc_id"] for a in fired] == ["west"]
    assert "target 1.20" in fired[0].annotations["summary"]


def test_surplus_below_waits_for_s_and_judges_the_settled_minute() -> None:
    h = Harness(rules({"kind": "surplus_below", "threshold_pflops": 10, "for_s": 60,
                       "settle_s": 60}))
    h.store.idle(s(-60), 8)
    h.store.seen("a", s(0))
    assert h.tick(s(0)).fired == []  # 8 < 10 at 09:59, pending
    assert h.states and next(iter(h.states.values())).status == "pending"
    h.store.idle(s(0), 11)
    h.store.seen("a", s(60))
    assert h.tick(s(60)).states == {}  # 11 >= 10 at 10:00: the pending alert is forgotten
    h.store.idle(s(60), 4)
    h.store.idle(s(120), 4)
    h.store.idle(s(180), 4)  # written, but not settled yet at 10:03:10
    h.store.seen("a", s(120))
    assert h.tick(s(120)).fired == []
    h.store.seen("a", s(190))
    fired = h.tick(s(190)).fired
    assert [a.labels for a in fired] == [
        {"alertname": "SurplusBelow", "severity": "warning", "scope": "national"}
    ]
    assert "4.000 PFLOPS at 2026-03-01T10:02:00Z" in fired[0].annotations["description"]
    assert needs(h.rules, s(190), s(190)).national_minutes == {s(120)}


def test_surplus_above_per_hub() -> None:
    h = Harness(rules({"kind": "surplus_above", "scope": "hub", "threshold_pflops": 5, "for_s": 0,
                       "settle_s": 0}))
    h.store.idle(s(0), 6, hub="gz")
    h.store.idle(s(0), 1, hub="nm")
    h.store.seen("a", s(1))
    assert [a.labels["hub"] for a in h.tick(s(1)).fired] == ["gz"]


def test_deadletter_rate_per_minute_and_share() -> None:
    h = Harness(rules({"kind": "deadletter_rate_above", "per_minute": 10, "window_s": 60},
                      {"kind": "deadletter_rate_above", "share": 0.5, "min_events": 10,
                       "severity": "critical", "window_s": 60}))
    h.store.counts.append((s(0), 20, 11))
    h.store.seen("a", s(0))
    fired = h.tick(s(1)).fired
    assert sorted(a.labels["severity"] for a in fired) == ["critical", "warning"]
    h.store.seen("a", s(200))
    assert len(h.tick(s(200)).resolved) == 2


def test_unpriced_usage_fires_and_clears() -> None:
    h = Harness(rules({"kind": "unpriced_usage", "clear_after_s": 600}))
    h.store.unpriced[("a", "acme-x1")] = s(0)
    h.store.seen("a", s(0))
    fired = h.tick(s(0)).fired
    assert fired[0].labels["device_model"] == "acme-x1"
    h.store.seen("a", s(500))
    assert h.tick(s(500)).resolved == []
    h.store.seen("a", s(700))
    assert len(h.tick(s(700)).resolved) == 1
    # the read reaches a day past clear_after_s, so the end of unpriced usage is seen
    assert needs(h.rules, s(700), s(700)).unpriced_since == s(100) - timedelta(hours=24)


def test_no_data_keeps_an_alert_and_a_removed_rule_resolves_it() -> None:
    h = Harness(rules({"kind": "surplus_below", "threshold_pflops": 10, "for_s": 0,
                       "settle_s": 0}))
    h.store.idle(s(0), 1)
    h.store.seen("a", s(0))
    assert len(h.tick(s(0)).fired) == 1
    h.store.seen("a", s(300))  # no surplus row for 10:05: no data
    assert h.tick(s(300)).resolved == []
    h.rules = rules({"kind": "dc_silent"})
    assert len(h.tick(s(301)).resolved) == 1


def test_keep_firing_for_s_delays_the_resolve() -> None:
    h = Harness(rules({"kind": "surplus_above", "threshold_pflops": 1, "for_s": 0,
                       "keep_firing_for_s": 60, "settle_s": 0}))
    h.store.idle(s(0), 2)
    h.store.seen("a", s(0))
    assert len(h.tick(s(0)).fired) == 1
    h.store.seen("a", s(30))
    assert h.tick(s(30)).resolved == []  # still true at 10:00: last true at 10:00:30
    h.store.idle(s(60), 0)
    h.store.seen("a", s(60))
    assert h.tick(s(60)).resolved == []  # false for 30 s only
    h.store.seen("a", s(90))
    assert len(h.tick(s(90)).resolved) == 1
