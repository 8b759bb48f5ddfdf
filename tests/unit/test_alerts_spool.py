"""`spool_at_risk`, pure: heartbeats' `spool_backlog_events` -> growth -> time to overflow -> alerts.

`trends` stands for `StoreReads.spool` (the same selection: per DC, its heartbeats in the
`window_s` up to its own latest one, if that one is within `window_s` of the stream clock or up
to 300 s ahead of it); the SQL is checked equal to it in tests/integration/test_alerts_spool.py.
The default `capacity_events` is measured again here through the agent's own spool.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.alerts.config import SPOOL_CAPACITY_EVENTS, RulesFile, SpoolAtRisk, parse_rules
from streams.alerts.evaluate import step
from streams.alerts.model import AlertState, Observation
from streams.alerts.rules import observe_all
from streams.alerts.snapshot import SPOOL_FUTURE, Snapshot, SpoolTrend, needs

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
Beats = dict[str, list[tuple[datetime, int]]]


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rules(**options: object) -> RulesFile:
    rule = {"kind": "spool_at_risk", "capacity_events": 100_000, "for_s": 0, **options}
    return parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                        "rule": [rule]})


def trends(beats: Beats, now: datetime, window_s: float) -> dict[str, SpoolTrend]:
    """What `StoreReads.spool` reads, from heartbeats (event time, backlog) per DC."""
    w = timedelta(seconds=window_s)
    out = {}
    for dc, points in beats.items():
        read = [(t, b) for t, b in points if now - 2 * w < t <= now + SPOOL_FUTURE]
        trend = SpoolTrend.of(read, window_s)
        if trend is not None and trend.last > now - w:
            out[dc] = trend
    return out


def snapshot(config: RulesFile, beats: Beats, now: datetime) -> Snapshot:
    need = needs(config, now, now)
    return Snapshot(now=now, wall=now, started_at=T0 - timedelta(hours=1), hubs={"dc-a": "gz"},
                    spool={w: trends(beats, now, w) for w in need.spool_windows_s})


def observe(config: RulesFile, beats: Beats, now: datetime) -> list[Observation]:
    return observe_all(config, snapshot(config, beats, now))


def every_30s(start_s: float, end_s: float, backlog: object, skew_s: float = 0) -> list[tuple[datetime, int]]:
    """Heartbeats every 30 s in [start_s, end_s], backlog = backlog(t_s), stamped by a clock
    `skew_s` off the others'."""
    f = backlog if callable(backlog) else (lambda _t: backlog)
    return [(s(t + skew_s), int(f(t))) for t in range(int(start_s), int(end_s) + 1, 30)]


def test_growth_that_fills_the_spool_within_within_s_fires_per_dc() -> None:
    # 50 000 of 100 000 events, growing 1 000 a minute: full in 50 min, within the hour
    beats = {"dc-a": every_30s(0, 600, lambda t: 40_000 + t * 1000 / 60),
             "dc-b": every_30s(0, 600, lambda t: 1_000 + t / 60)}  # 1 a minute: full in ~69 days
    (a, b) = observe(rules(), beats, s(600))
    assert (a.subject, a.active, b.subject, b.active) == ("dc=dc-a", True, "dc=dc-b", False)
    assert a.labels == {"alertname": "SpoolAtRisk", "severity": "warning", "dc_id": "dc-a",
                        "hub": "gz"}
    assert b.labels["hub"] == "none"
    assert a.annotations["summary"] == "Spool of DC dc-a overflows in 50 min at its current growth"
    assert "+1000.0 events/min" in a.annotations["description"]
    assert "20 heartbeats of the last 570 s" in a.annotations["description"]
    # the same growth with a shorter horizon is not at risk
    (a,) = observe(rules(within_s=1800), {"dc-a": beats["dc-a"]}, s(600))
    assert not a.active


def test_growth_is_a_slope_over_all_heartbeats_of_the_window() -> None:
    # +1 000 a minute, with a bump in the middle of the window (30..600 s: the heartbeat at
    # 0 s is 600 s before the latest, outside it): the least-squares slope is not moved by it
    beats = every_30s(0, 600, lambda t: 40_000 + t * 1000 / 60 + (3000 if t in (300, 330) else 0))
    trend = SpoolTrend.of(beats, 600)
    assert trend is not None and (trend.n, trend.span_s) == (20, 570)
    assert trend.growth_per_s == pytest.approx(1000 / 60, rel=1e-9)
    # one odd heartbeat at the end moves it by a fraction, not by its own jump
    odd = SpoolTrend.of([*beats[:-1], (s(600), 53_000)], 600)
    assert odd is not None and odd.growth_per_s is not None
    assert 1000 / 60 < odd.growth_per_s < 1.5 * 1000 / 60
    old = [(s(-700), 0)]  # older than the window before the latest heartbeat: not in it
    assert SpoolTrend.of(old + beats, 600) == trend


def test_no_growth_or_a_draining_backlog_is_not_at_risk() -> None:
    flat = every_30s(0, 600, 90_000)
    draining = every_30s(0, 600, lambda t: 90_000 - t * 10)
    (f, d) = observe(rules(), {"dc-a": flat, "dc-b": draining}, s(600))
    assert not f.active and not d.active
    assert f.annotations["summary"] == "Spool of DC dc-a is not growing (90000 of about 100000 events)"


def test_a_full_spool_that_does_not_drain_fires() -> None:
    # at capacity the agent drops its oldest telemetry, so the backlog stops growing: still at risk
    full = every_30s(0, 600, 100_000)
    (o,) = observe(rules(), {"dc-a": full}, s(600))
    assert o.active and o.annotations["summary"].startswith("Spool of DC dc-a is full")
    (o,) = observe(rules(), {"dc-a": every_30s(0, 600, lambda t: 120_000 - t)}, s(600))
    assert not o.active  # past the estimate but draining


def test_one_heartbeat_says_nothing_unless_the_spool_is_empty() -> None:
    assert observe(rules(), {"dc-a": [(s(600), 90_000)]}, s(600)) == []
    # and a repeated heartbeat (one instant) is still one
    assert observe(rules(), {"dc-a": [(s(600), 90_000), (s(600), 90_000)]}, s(600)) == []
    (o,) = observe(rules(), {"dc-a": [(s(600), 0)]}, s(600))
    assert not o.active
    # a DC that stopped sending heartbeats is not judged (dc_silent's job): its alert holds
    assert observe(rules(), {"dc-a": every_30s(0, 600, lambda t: 40_000 + t * 20)}, s(1300)) == []


@pytest.mark.parametrize("skew_s", [-590, -300, 0, 240])
def test_a_dc_clock_off_from_the_others_is_judged_on_its_own_timeline(skew_s: float) -> None:
    # the stream clock is the others' newest event time; this DC's clock is skew_s off it
    beats = {"dc-a": every_30s(0, 600, lambda t: 40_000 + t * 1000 / 60, skew_s=skew_s)}
    (o,) = observe(rules(), beats, s(600))
    trend = snapshot(rules(), beats, s(600)).spool[600.0]["dc-a"]
    assert trend.n == 20 and trend.growth_per_s == pytest.approx(1000 / 60)
    assert o.active and o.annotations["summary"].endswith("overflows in 50 min at its current growth")


def test_fires_after_for_s_and_resolves_when_the_backlog_drains() -> None:
    config = rules(for_s=120)
    states: dict[str, AlertState] = {}
    growing = every_30s(0, 900, lambda t: 40_000 + t * 1000 / 60)
    fired, resolved = [], []
    for now in range(60, 1801, 30):
        drain = every_30s(930, now, lambda t: 55_000 - (t - 900) * 100)
        beats = {"dc-a": [b for b in growing if b[0] <= s(now)] + drain}
        result = step(states, observe(config, beats, s(now)), {r.id for r in config.rule}, s(now))
        states = result.states
        fired += [(now, a.labels["dc_id"]) for a in result.fired]
        resolved += [(now, a.labels["dc_id"]) for a in result.resolved]
    # at risk from the second heartbeat (60 s), firing 120 s later; the drain starts at 930 s
    # and the slope of the last 10 min turns negative before 1 200 s
    assert fired == [(180, "dc-a")]
    assert len(resolved) == 1 and 930 < resolved[0][0] < 1200


def test_the_rule_reads_its_window_and_has_documented_defaults() -> None:
    config = parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                          "rule": [{"kind": "spool_at_risk"}]})
    rule = config.rule[0]
    assert isinstance(rule, SpoolAtRisk)
    assert (rule.within_s, rule.window_s, rule.for_s, rule.capacity_events) == (
        3600, 600, 120, SPOOL_CAPACITY_EVENTS)
    assert rule.alertname == "SpoolAtRisk"
    assert needs(config, T0, T0).spool_windows_s == frozenset({600.0})


class BrokerDown:
    """A publisher that takes nothing: every event the agent makes stays spooled."""

    def send(self, rec: object) -> bool:
        return False

    def poll(self, timeout_s: float = 0.0) -> int:
        return 0

    def reset(self) -> None:
        pass

    def close(self, timeout_s: float) -> int:
        return 0


def test_the_default_capacity_is_the_default_spool_over_the_agents_event_size() -> None:
    """256 MiB (the agent's default `max_bytes`) over the bytes one event takes in the agent's
    spool, measured over an hour of simulated DCs of the national fleet (all their events:
    registry, capacity, power, heartbeat, job metering), through the agent's own code."""
    from agents.fleet import national_fleet
    from agents.outbox import Outbox
    from agents.run import Agent
    from agents.settings import Intervals, SpoolSettings
    from agents.spool import Spool
    from agents.wiring import simulator_for

    start = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
    events = nbytes = 0
    for dc in national_fleet(8, seed=0):
        with tempfile.TemporaryDirectory() as tmp:
            spool = Spool(Path(tmp), max_bytes=1 << 30)
            outbox = Outbox(spool, lambda _on_delivery: BrokerDown())
            agent = Agent(dc.dc, [simulator_for(dc, Intervals(), start)], outbox=outbox)
            t = start
            while t < start + timedelta(hours=1):
                agent.step(t)
                t = agent.next_due()
            events += outbox.backlog
            nbytes += spool.nbytes
            spool.close()
    per_event = nbytes / events
    assert SpoolSettings().max_bytes == 256 << 20
    assert pytest.approx((256 << 20) / per_event, rel=0.05) == SPOOL_CAPACITY_EVENTS
