"""The alert evaluator over a store a worker's handler writes: real events, real ClickHouse
(chDB), a real HTTP receiver.

The handler (decode, normalise, ClickHouse write) fills the store as a worker would; the engine
reads only the store, as `surplus alerts run` does. Time is injected (a settable clock) into
both; nothing sleeps to wait for a condition: a tick is awaited, then the send queue is drained.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from streams.alerts.config import RulesFile, parse_rules
from streams.alerts.engine import Engine, engine_from
from streams.alerts.receiver import Recorder
from streams.alerts.sign import verify
from streams.batch import Record
from streams.sink import Sink
from streams.worker import Handler

pytestmark = pytest.mark.clickhouse

SECRET = "hook-secret"
T0 = datetime.now(UTC).replace(microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def at(self, seconds: float) -> datetime:
        self.t = T0 + timedelta(seconds=seconds)
        return self.t


def rules_for(url: str, **engine: Any) -> RulesFile:
    return parse_rules({
        "engine": {"external_url": "http://grafana.test", **engine},
        "receiver": [{"name": "ops", "url": url, "allow_http": True, "secret": SECRET,
                      "group_by": ["alertname", "hub"], "group_wait_s": 0,
                      "group_interval_s": 0, "repeat_interval_s": 3600,
                      "max_attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.02}],
        "rule": [{"kind": "dc_silent", "for_s": 120, "severity": "critical"}],
    })


def heartbeat(dc: str, t: datetime, n: int) -> Record:
    event = {
        "specversion": "1.0", "id": f"hb-{dc}-{n}", "source": f"//cpn/dc/{dc}",
        "type": "cpn.heartbeat.v1", "time": t.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"dc_id": dc, "agent_version": "0.1.0", "boot_id": "b-1", "uptime_s": 1.0,
                 "spool_backlog_events": 0, "spool_oldest_age_s": 0},
    }
    return Record("t.heartbeat", 0, n, dc.encode(), json.dumps(event).encode())


class Worker:
    """A worker's handler writing the store, and an evaluator reading the same store."""

    def __init__(self, store: Any, rules: RulesFile, clock: Clock) -> None:
        self.clock = clock
        self.engine: Engine = engine_from(rules, store.client, store.database, clock=clock)
        self.engine.load()
        self.handler = Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                               prices=PriceBook.load(), deadletter_topic="t.deadletter",
                               clock=clock, metrics_interval_s=3600)
        self.offset = 0

    async def events(self, at_s: float, *beats: tuple[str, datetime]) -> None:
        """Heartbeats (dc, event time) arrive at wall time T0 + at_s, then the engine ticks."""
        await self.write(at_s, *beats)
        await self.tick()

    async def write(self, at_s: float, *beats: tuple[str, datetime]) -> None:
        """Heartbeats (dc, event time) written to the store at wall time T0 + at_s."""
        self.clock.at(at_s)
        records = []
        for dc, t in beats:
            self.offset += 1
            records.append(heartbeat(dc, t, self.offset))
        if records:
            await self.handler(records)

    async def tick(self) -> None:
        await self.engine.tick()
        await self.engine.drain()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_silent_dc_fires_then_resolves_signed(store: Any) -> None:
    with Recorder() as hook:
        async def scenario() -> None:
            w = Worker(store, rules_for(hook.url), Clock())
            w.engine.start()
            await w.events(0, ("dc-a", at(0)), ("dc-b", at(0)))
            await w.events(60, ("dc-b", at(60)))
            await w.events(121, ("dc-b", at(121)))
            assert [b["status"] for b in hook.bodies()] == ["firing"]
            await w.events(130, ("dc-b", at(130)))  # still silent: nothing new
            await w.events(140, ("dc-a", at(140)))
            await w.engine.close()

        run(scenario)
        bodies = hook.bodies()
    assert [b["status"] for b in bodies] == ["firing", "resolved"]
    firing, resolved = bodies
    assert firing["alerts"][0]["labels"] == {"alertname": "DcSilent", "severity": "critical",
                                             "dc_id": "dc-a", "hub": "none"}
    assert resolved["alerts"][0]["fingerprint"] == firing["alerts"][0]["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    for item in hook.received:
        assert item.headers["content-type"] == "application/json"
        assert verify(SECRET.encode(), item.signature, item.body, now=int(T0.timestamp()) + 140)
        assert not verify(b"not-the-secret", item.signature, item.body, now=int(T0.timestamp()) + 140)
    log = store.dicts("SELECT status, http_status, outcome, latency_ms, group_key "
                      "FROM {db}.alert_notifications ORDER BY ts")
    assert [(r["status"], r["http_status"], r["outcome"]) for r in log] == [
        ("firing", 200, "delivered"), ("resolved", 200, "delivered")]
    assert all(r["latency_ms"] > 0 and r["group_key"] == firing["groupKey"] for r in log)


def test_a_restart_sends_no_second_firing_and_still_resolves(store: Any) -> None:
    with Recorder() as hook:
        async def scenario() -> None:
            first = Worker(store, rules_for(hook.url), Clock())
            first.engine.start()
            await first.events(0, ("dc-a", at(0)), ("dc-b", at(0)))
            await first.events(125, ("dc-b", at(125)))
            assert [b["status"] for b in hook.bodies()] == ["firing"]
            await first.engine.close()  # the worker stops (or dies: the state is already stored)

            second = Worker(store, rules_for(hook.url), Clock())  # a new evaluator, same store
            assert len(second.engine.states) == 1 and len(second.engine.groups) == 1
            second.engine.start()
            await second.events(130)  # nothing new has arrived: the replayed state holds
            await second.events(200, ("dc-b", at(200)))  # within the repeat interval
            assert [b["status"] for b in hook.bodies()] == ["firing"]
            await second.events(210, ("dc-a", at(210)))
            await second.engine.close()

        run(scenario)
        bodies = hook.bodies()
    assert [b["status"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["alerts"][0]["fingerprint"] == bodies[1]["alerts"][0]["fingerprint"]
    left = store.rows("SELECT count() FROM {db}.alert_state FINAL WHERE deleted = 0")
    assert left == [(0,)]


def test_a_backfill_of_old_events_does_not_page(store: Any) -> None:
    old = T0 - timedelta(days=2)

    async def replay(w: Worker) -> None:
        # two days ago dc-a went silent for ten minutes while dc-b kept talking;
        # the whole history arrives now, a minute of it per 50 ms of wall time
        for minute in range(30):
            beats = [("dc-b", old + timedelta(minutes=minute))]
            if not 5 <= minute < 15:
                beats.append(("dc-a", old + timedelta(minutes=minute)))
            await w.events(minute * 0.05, *beats)
        # then the present: both DCs are live
        await w.events(2, ("dc-a", at(2)), ("dc-b", at(2)))
        await w.events(30, ("dc-a", at(30)), ("dc-b", at(30)))

    with Recorder() as hook:
        async def scenario() -> None:
            w = Worker(store, rules_for(hook.url), Clock())
            w.engine.start()
            await replay(w)
            await w.engine.close()

        run(scenario)
        assert hook.bodies() == []
    with Recorder() as hook:
        async def paged() -> None:  # the same replay, configured to page on backfill, does
            for table in ("heartbeats", "dc_last_seen", "dc_spool_backlog"):  # the raw rows and their state
                store.client.command(f"TRUNCATE TABLE {store.database}.{table}")
            w = Worker(store, rules_for(hook.url, page_on_backfill=True, instance="b"), Clock())
            w.engine.start()
            await replay(w)
            await w.engine.close()

        run(paged)
        assert [b["status"] for b in hook.bodies()] == ["firing", "resolved"]


def test_silent_dcs_are_grouped_and_repeated_after_the_repeat_interval(store: Any) -> None:
    with Recorder() as hook:
        async def scenario() -> None:
            w = Worker(store, rules_for(hook.url), Clock())
            w.engine.start()
            await w.events(0, ("dc-a", at(0)), ("dc-b", at(0)), ("dc-c", at(0)))
            await w.events(30, ("dc-c", at(30)))
            await w.events(90)  # idle for 60 s: the stream clock follows the wall clock
            await w.events(150)  # dc-a and dc-b silent for 150 s, dc-c for 120 s: all fire
            await w.events(1000)
            await w.events(3649)
            assert len(hook.received) == 1
            await w.events(3750)  # repeat_interval_s = 3600 after the first notification
            await w.engine.close()

        run(scenario)
        bodies = hook.bodies()
    assert [(b["status"], len(b["alerts"])) for b in bodies] == [("firing", 3), ("firing", 3)]
    assert bodies[0]["groupKey"] == bodies[1]["groupKey"] == '{}:{alertname="DcSilent", hub="none"}'
    assert bodies[0]["alerts"] == bodies[1]["alerts"]


def test_a_second_evaluator_stands_by_and_takes_over_without_a_second_firing(store: Any) -> None:
    """Two evaluators of one instance: one holds it (its clock row), the other stands by; when
    the first stops it lets go, or when it dies its hold runs out after lease_s; the successor
    reloads the stored state, so the firing is not sent again and the resolve still is."""
    with Recorder() as hook:
        async def scenario() -> None:
            clock = Clock()
            writer = Worker(store, rules_for(hook.url), clock)  # writes the store
            a = engine_from(rules_for(hook.url), store.client, store.database, clock=clock,
                            evaluator="a")
            b = engine_from(rules_for(hook.url), store.client, store.database, clock=clock,
                            evaluator="b")
            c = engine_from(rules_for(hook.url), store.client, store.database, clock=clock,
                            evaluator="c")
            for e in (a, b, c):
                e.load()
                e.start()

            async def tick(*engines: Engine) -> None:
                for e in engines:
                    await e.tick()
                    await e.drain()

            await writer.write(0, ("dc-a", at(0)), ("dc-b", at(0)))
            await tick(a, b, c)
            assert (a.leading, b.leading, c.leading) == (True, False, False)
            await writer.write(125, ("dc-b", at(125)))
            await tick(b, a, c)  # b and c stand by; a fires
            assert [x.json()["status"] for x in hook.received] == ["firing"]
            await a.close()  # a stops and lets go: the next to tick takes over
            clock.at(130)
            await tick(b, c)
            assert (b.leading, c.leading) == (True, False)
            assert [x.json()["status"] for x in hook.received] == ["firing"]  # not again
            # b dies without letting go: c waits lease_s (30 s) of wall time, then takes over
            clock.at(150)
            await tick(c)
            assert not c.leading
            await writer.write(161, ("dc-a", at(161)))  # dc-a speaks: the alert resolves...
            await tick(c)
            assert c.leading  # ...by c, which loaded the firing state that b stored
            for e in (b, c):
                await e.close()

        run(scenario)
        statuses = [x.json()["status"] for x in hook.received]
    assert statuses == ["firing", "resolved"]


def test_the_worker_evaluates_no_rules(store: Any, tmp_path: Any) -> None:
    """Rules are evaluated once for the network by `surplus alerts run`, never by a worker."""
    from streams.app import build_app
    from streams.settings import WorkerSettings

    settings = WorkerSettings(data_dir=tmp_path / "faust")
    assert "alert_rules" not in WorkerSettings.model_fields
    handler = Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                      prices=PriceBook.load(), deadletter_topic="t.deadletter")
    app = build_app(settings, handler, ["t.heartbeat"])
    assert not any("alert" in repr(t).lower() for t in app._app_tasks)
    assert handler.observers == []
