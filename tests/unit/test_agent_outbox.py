"""Outbox and agent loop against a fake producer at the I/O seam (fault injection, no broker)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.clock import ManualClock
from agents.collectors import CollectorError
from agents.collectors.simulator import SimulatorCollector
from agents.delivery import DeliveryError, OnDelivery
from agents.fleet import national_fleet
from agents.outbox import Outbox
from agents.records import CloudEvent, Record, build
from agents.run import Agent, Fleet
from agents.settings import DataCenter, Intervals
from agents.simsettings import PoolSpec, SimulatorSettings
from agents.spool import Spool
from schemas.decode import decode
from schemas.events import Capacity, HeartbeatEvent
from schemas.reasons import Reject

T0 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
DC = DataCenter(dc_id="nx-zhongwei-01", name="Zhongwei 1", operator="Example Co",
                province="CN-NX", hub="nx", cluster="zhongwei", lat=37.5, lon=105.2, racks_total=800)
SIM = SimulatorSettings(enabled=True, seed=3, pools=[
    PoolSpec(pool_id="910c", device_model="huawei-ascend-910c", devices=128),
    PoolSpec(pool_id="cpu", device_model="phytium-s2500", devices=1024, profile="batch")])


class FakePublisher:
    """Holds sent records until the test delivers (or fails) them on the next poll."""

    def __init__(self, on_delivery: OnDelivery) -> None:
        self.on_delivery = on_delivery
        self.sent: list[Record] = []
        self.queue: list[Record] = []
        self.outcomes: list[DeliveryError | None] = []  # what the next polls report, in order
        self.auto = True  # deliver everything queued on poll
        self.full = False
        self.resets = 0

    def send(self, rec: Record) -> bool:
        if self.full:
            return False
        self.sent.append(rec)
        self.queue.append(rec)
        return True

    def poll(self, timeout_s: float = 0.0) -> int:
        served = 0
        while self.queue and (self.auto or self.outcomes):
            rec = self.queue.pop(0)
            self.on_delivery(rec, self.outcomes.pop(0) if self.outcomes else None)
            served += 1
        return served

    def reset(self) -> None:
        self.resets += 1
        for rec in self.queue:
            self.on_delivery(rec, DeliveryError("_PURGE_QUEUE", "purged", purged=True))
        self.queue.clear()

    def close(self, timeout_s: float) -> int:
        return len(self.queue)


class Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def outbox(tmp_path: Path, **kw: object) -> tuple[Outbox, FakePublisher, Mono]:
    mono = Mono()
    made: list[FakePublisher] = []

    def factory(cb: OnDelivery) -> FakePublisher:
        made.append(FakePublisher(cb))
        return made[0]

    box = Outbox(Spool(tmp_path / "spool"), factory, monotonic=mono, **kw)  # type: ignore[arg-type]
    return box, made[0], mono


def capacity(n: int, pool: str = "p1") -> CloudEvent:
    data = Capacity(dc_id=DC.dc_id, pool_id=pool, device_model="huawei-ascend-910c",
                    devices_total=8, devices_online=8, devices_allocated=n % 9, interval_s=15)
    return build("cpn.capacity.v1", T0 + timedelta(seconds=15 * n), data, subject=pool)


def ids(records: list[Record]) -> list[str]:
    return [json.loads(r.value)["id"] for r in records]


def test_events_are_acknowledged_only_by_delivery_reports(tmp_path: Path) -> None:
    box, pub, _ = outbox(tmp_path)
    pub.auto = False
    box.put([capacity(n) for n in range(5)])
    assert len(pub.sent) == 5 and box.backlog == 5
    box.pump()
    assert box.backlog == 5  # sent is not done
    pub.outcomes = [None, None]
    box.pump()
    assert box.backlog == 3 and box.counts.delivered == 2


def test_a_failed_delivery_resends_everything_undelivered_in_order(tmp_path: Path) -> None:
    box, pub, mono = outbox(tmp_path, retry_backoff_s=2.0)
    pub.auto = False
    box.put([capacity(n) for n in range(6)])
    pub.outcomes = [None, DeliveryError("_TRANSPORT", "broker down"), None]
    box.pump()  # 0 delivered, 1 failed, 2 delivered; 3..5 still queued
    assert box.counts.rewinds == 0
    box.put([capacity(6)])  # waiting for the back-off: spooled, not sent
    assert len(pub.sent) == 6
    mono.t = 2.5
    box.pump()  # the back-off is over: purge the producer, resend from the spool
    assert box.counts.rewinds == 1 and pub.resets == 1
    resent = pub.sent[6:]
    assert ids(resent) == [capacity(n)["id"] for n in (1, 3, 4, 5, 6)]  # not 0 and 2: acked
    assert [r.value for r in resent[:4]] == [r.value for r in pub.sent[1:6] if r.seq != 2]
    pub.auto = True
    box.pump()
    assert box.backlog == 0


def test_a_permanent_error_gives_the_record_up(tmp_path: Path) -> None:
    box, pub, _ = outbox(tmp_path)
    pub.outcomes = [None, DeliveryError("MSG_SIZE_TOO_LARGE", "too big", permanent=True)]
    box.put([capacity(n) for n in range(3)])
    box.pump()
    assert box.counts.rejected == 1 and box.counts.rewinds == 0 and box.backlog == 0


def test_a_full_producer_queue_keeps_order(tmp_path: Path) -> None:
    box, pub, _ = outbox(tmp_path, max_in_flight=4)
    pub.auto = False
    box.put([capacity(n) for n in range(10)])
    assert len(pub.sent) == 4  # the in-flight window
    pub.full = True
    pub.outcomes = [None] * 4
    box.pump()
    assert len(pub.sent) == 4
    pub.full = False
    pub.auto = True
    assert box.drain(5)
    assert ids(pub.sent) == [capacity(n)["id"] for n in range(10)]


def test_restart_replays_the_spool_before_new_events(tmp_path: Path) -> None:
    box, pub, _ = outbox(tmp_path)
    pub.auto = False
    box.put([capacity(n) for n in range(4)])
    pub.outcomes = [None]
    box.pump()
    box.spool.save_cursor()
    box.publisher.close(0)
    box.spool.close()
    again, pub2, _ = outbox(tmp_path)
    again.put([capacity(99)])
    assert ids(pub2.sent) == [capacity(n)["id"] for n in (1, 2, 3, 99)]
    assert [r.value for r in pub2.sent[:3]] == [r.value for r in pub.sent[1:]]


class Broken:
    interval_s = 15.0

    def __init__(self, name: str, exc: Exception) -> None:
        self.name, self.exc, self.calls = name, exc, 0

    def collect(self, now: datetime) -> list[CloudEvent]:
        self.calls += 1
        if self.calls <= 2:
            raise self.exc
        return [capacity(self.calls, pool=self.name)]


def make_agent(tmp_path: Path, *collectors: object) -> tuple[Agent, FakePublisher, ManualClock]:
    clock = ManualClock(T0)
    box, pub, _ = outbox(tmp_path)
    agent = Agent(DC, [SimulatorCollector(DC, SIM, Intervals(), start=T0), *collectors],  # type: ignore[list-item]
                  outbox=box, clock=clock)
    return agent, pub, clock


def test_a_broken_collector_is_logged_and_retried_while_the_others_go_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = Broken("bad", CollectorError("nvidia-smi not found on PATH"))
    crash = Broken("crash", RuntimeError("a bug"))
    agent, pub, clock = make_agent(tmp_path, bad, crash)
    for _ in range(8):
        agent.step()
        clock.advance(15)
    kinds = Counter(json.loads(r.value)["type"] for r in pub.sent)
    assert kinds["cpn.dc.v1"] == 1 and kinds["cpn.heartbeat.v1"] == 4
    pools = Counter(json.loads(r.value)["data"].get("pool_id") for r in pub.sent)
    assert pools["910c"] == 8 and pools["bad"] == 6 and pools["crash"] == 6  # back after 2 failures
    assert agent.counts["bad_errors"] == 2 and agent.counts["crash_errors"] == 2
    lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert "collector bad failed (1 in a row): nvidia-smi not found on PATH" in lines
    assert all("\n" not in line for line in lines)


def test_registration_first_then_heartbeats_that_decode(tmp_path: Path) -> None:
    agent, pub, clock = make_agent(tmp_path)
    pub.auto = False
    for _ in range(5):
        agent.step()
        clock.advance(30)
    events = [json.loads(r.value) for r in pub.sent]
    assert events[0]["type"] == "cpn.dc.v1" and events[0]["data"]["hub"] == "nx"
    beats = [r for r in pub.sent if b"cpn.heartbeat.v1" in r.value]
    assert len(beats) == 5
    last = decode(beats[-1].value, now=clock.now(), key=DC.dc_id)
    assert isinstance(last, HeartbeatEvent)
    assert last.data.spool_backlog_events == len(pub.sent) - 1  # all but itself: none delivered
    assert last.data.uptime_s == 120
    assert last.data.spool_oldest_age_s == 120
    clock.advance(86_400)
    agent.step()
    assert sum(b"cpn.dc.v1" in r.value for r in pub.sent) == 2  # daily


def test_fleet_steps_many_dcs_through_one_outbox(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    box, pub, _ = outbox(tmp_path)
    from agents.wiring import simulator_for

    dcs = national_fleet(5, seed=1)
    fleet = Fleet([Agent(d.dc, [simulator_for(d, Intervals(), T0)], outbox=box, clock=clock)
                   for d in dcs], outbox=box, clock=clock)
    for _ in range(20):
        fleet.step()
        clock.advance(15)
    keys = Counter(r.key.decode() for r in pub.sent)
    assert set(keys) == {d.dc.dc_id for d in dcs}
    for rec in pub.sent:
        assert not isinstance(decode(rec.value, now=clock.now(), key=rec.key), Reject)
    with pytest.raises(ValueError, match="ManualClock"):
        fleet.run_for(1)


def test_step_accepts_an_explicit_time(tmp_path: Path) -> None:
    agent, _pub, _ = make_agent(tmp_path)
    stepper: Callable[[datetime], int] = agent.step
    assert stepper(T0 + timedelta(minutes=3)) > 0
    assert agent.next_due() > T0 + timedelta(minutes=3)


def test_a_record_refused_on_the_spot_is_given_up_and_the_window_stays_right(tmp_path: Path) -> None:
    box, pub, _ = outbox(tmp_path, max_in_flight=2)
    original = pub.send

    def send(rec: Record) -> bool:  # like produce() raising MSG_SIZE_TOO_LARGE synchronously
        if rec.seq == 1:
            pub.on_delivery(rec, DeliveryError("MSG_SIZE_TOO_LARGE", "too big", permanent=True))
            return True
        return original(rec)

    pub.send = send  # type: ignore[method-assign]
    box.put([capacity(n) for n in range(5)])
    assert box.drain(5) and box.counts.rejected == 1 and box.counts.delivered == 4
    assert box._in_flight == 0
