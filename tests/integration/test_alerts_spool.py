"""`spool_at_risk` over a real store (chDB): heartbeats written by a worker's handler, the
evaluator's bounded read of them, and the engine's notifications to a real HTTP receiver.

Time is injected (a settable clock); nothing sleeps: a tick is awaited, then the queue drained.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from streams.alerts.config import parse_rules
from streams.alerts.engine import engine_from
from streams.alerts.reads import StoreReads
from streams.alerts.receiver import Recorder
from streams.alerts.sign import verify
from streams.alerts.snapshot import SpoolTrend
from streams.batch import Record
from streams.sink import Sink
from streams.worker import Handler

pytestmark = pytest.mark.clickhouse

SECRET = "hook-secret"
T0 = datetime.now(UTC).replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def heartbeat(dc: str, t: datetime, backlog: int, offset: int, event_id: str | None = None) -> Record:
    ms = int(t.timestamp() * 1000)
    event = {
        "specversion": "1.0", "id": event_id or f"hb-{ms}", "source": f"//cpn/dc/{dc}",
        "type": "cpn.heartbeat.v1", "time": t.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"dc_id": dc, "agent_version": "0.1.0", "boot_id": "b-1", "uptime_s": 1.0,
                 "spool_backlog_events": backlog, "spool_oldest_age_s": 0},
    }
    return Record("t.heartbeat", 0, offset, dc.encode(), json.dumps(event).encode())


def handler(store: Any, clock: Clock) -> Handler:
    return Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                   prices=PriceBook.load(), deadletter_topic="t.deadletter", clock=clock,
                   metrics_interval_s=3600)


def test_the_read_is_the_trend_of_each_dcs_own_window_each_heartbeat_once(store: Any) -> None:
    clock = Clock()
    clock.t = at(600)
    beats = {
        "dc-a": [(at(t), 40_000 + t * 17) for t in range(0, 601, 30)],
        "dc-skewed": [(at(t - 420), 9_000 - t * 3) for t in range(0, 601, 30)],  # clock 7 min behind
        "dc-ahead": [(at(t + 200), 100 + t) for t in range(0, 601, 30)],  # 200 s ahead
        "dc-gone": [(at(t - 700), 5) for t in range(0, 601, 30)],  # latest heartbeat 700 s ago
        "dc-one": [(at(590), 7)],
    }
    records, n = [], 0
    for dc, points in beats.items():
        for t, b in points:
            n += 1
            records.append(heartbeat(dc, t, b, n))
    records.append(heartbeat("dc-a", at(300), 40_000 + 300 * 17, n + 1))  # redelivered: same id
    asyncio.run(handler(store, clock)(records))

    trends = StoreReads(store.client, store.database).spool(at(600), 600)
    assert set(trends) == {"dc-a", "dc-skewed", "dc-ahead", "dc-one"}
    for dc, trend in trends.items():
        expected = SpoolTrend.of(beats[dc], 600)
        assert expected is not None
        assert (trend.n, trend.backlog, trend.last, trend.span_s) == (
            expected.n, expected.backlog, expected.last, expected.span_s)
        for got, want in ((trend.sx, expected.sx), (trend.sy, expected.sy),
                          (trend.sxx, expected.sxx), (trend.sxy, expected.sxy)):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
    assert trends["dc-a"].n == 20 and trends["dc-a"].growth_per_s == pytest.approx(17)
    assert trends["dc-skewed"].growth_per_s == pytest.approx(-3)
    assert trends["dc-one"].growth_per_s is None


def test_a_growing_spool_fires_once_and_resolves_once_when_it_drains(store: Any) -> None:
    def backlog(t: int) -> int:  # +1 000 a minute for 5 min, then draining at 2 000 a minute
        return 40_000 + t * 1000 // 60 if t <= 300 else 45_000 - (t - 300) * 2000 // 60

    with Recorder() as hook:
        rules = parse_rules({
            "engine": {"external_url": "http://grafana.test"},
            "receiver": [{"name": "ops", "url": hook.url, "allow_http": True, "secret": SECRET,
                          "group_by": ["alertname", "dc_id"], "group_wait_s": 0,
                          "group_interval_s": 0, "repeat_interval_s": 3600,
                          "max_attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.02}],
            "rule": [{"kind": "spool_at_risk", "capacity_events": 100_000, "within_s": 3600,
                      "for_s": 60}],
        })

        async def scenario() -> None:
            clock = Clock()
            engine = engine_from(rules, store.client, store.database, clock=clock)
            engine.load()
            engine.start()
            write = handler(store, clock)
            statuses: list[tuple[int, str]] = []
            for n, t in enumerate(range(0, 1201, 30)):
                clock.t = at(t)
                # dc-b's spool is flat: never at risk
                await write([heartbeat("dc-a", at(t), backlog(t), 2 * n),
                             heartbeat("dc-b", at(t), 500, 2 * n + 1)])
                await engine.tick()
                await engine.drain()
                statuses += [(t, x.json()["status"]) for x in hook.received[len(statuses):]]
            await engine.close()
            # at risk from the second heartbeat (full in 60 min at +1 000/min from 40 500),
            # firing after for_s; resolved once the slope of the last 10 min turns negative
            assert [s for _, s in statuses] == ["firing", "resolved"]
            assert statuses[0][0] == 90
            assert 300 < statuses[1][0] < 900

        asyncio.run(asyncio.wait_for(scenario(), timeout=60))
        bodies = hook.bodies()
        received = list(hook.received)
    firing, resolved = bodies
    (alert,) = firing["alerts"]
    assert alert["labels"] == {"alertname": "SpoolAtRisk", "severity": "warning",
                               "dc_id": "dc-a", "hub": "none"}
    assert alert["annotations"]["summary"].startswith("Spool of DC dc-a overflows in ")
    assert firing["groupKey"] == '{}:{alertname="SpoolAtRisk", dc_id="dc-a"}'
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved["alerts"][0]["status"] == "resolved"
    for item in received:
        sent_at = int(item.signature.split(",")[0].removeprefix("t="))  # the clock when signed
        assert verify(SECRET.encode(), item.signature, item.body, now=sent_at)
