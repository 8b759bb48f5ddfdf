"""The agent against a real broker: delivery, a broker outage, SIGKILL and restart, SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from agents.clock import ManualClock, SimClock
from agents.collectors.simulator import SimulatorCollector
from agents.records import CloudEvent, serialise
from agents.run import Agent
from agents.settings import load_settings
from agents.spool import Spool
from agents.wiring import build_outbox
from schemas.decode import decode
from schemas.events import CONTENT_TYPE
from schemas.reasons import Reject
from schemas.topics import Topics
from surplus.kafka.admin import ensure_topics
from surplus.kafka.local import LocalKafka
from surplus.kafka.ports import free_port
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TYPES = {"cpn.dc.v1", "cpn.capacity.v1", "cpn.power.v1", "cpn.job.v1", "cpn.heartbeat.v1"}


def config(dc_id: str, bootstrap: str, prefix: str, spool: Path, *, speed: float = 1.0,
           start_offset_s: float = 0.0, extra: str = "") -> str:
    return f"""
log_level = "INFO"
{extra}
[dc]
dc_id = "{dc_id}"
name = "Test DC"
operator = "Example Co"
province = "CN-GD"
hub = "gba"
cluster = "shaoguan"
lat = 24.8
lon = 113.6
racks_total = 900

[kafka]
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"
linger_ms = 5

[spool]
path = "{spool}"

[collectors.simulator]
enabled = true
seed = 42
speed = {speed}
start_offset_s = {start_offset_s}
green_contract_share = 0.2

[[collectors.simulator.pools]]
pool_id = "h20"
device_model = "nvidia-h20-96gb"
devices = 256

[[collectors.simulator.pools]]
pool_id = "910b"
device_model = "huawei-ascend-910b3"
devices = 128
profile = "inference"
"""


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]

    @property
    def event(self) -> dict[str, object]:
        return json.loads(self.value)  # type: ignore[no-any-return]


def consume(bootstrap: str, prefix: str, done: Callable[[list[Message]], bool],
            timeout_s: float = 60) -> list[Message]:
    """Everything in the five topics from the start, until `done(messages)` or the deadline."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "log_level": 0})
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t in Topics(prefix).telemetry for p in range(3)])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(messages) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    messages.append(Message(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                                            msg.value(), dict(msg.headers() or [])))
    finally:
        consumer.close()
    return messages


def ids_of(messages: list[Message]) -> set[str]:
    return {str(m.event["id"]) for m in messages}


class Recording:
    """Wraps a collector and keeps every event it returned (the test's oracle)."""

    def __init__(self, inner: SimulatorCollector) -> None:
        self.inner, self.name, self.interval_s = inner, inner.name, inner.interval_s
        self.events: list[CloudEvent] = []

    def collect(self, now: datetime) -> list[CloudEvent]:
        events = self.inner.collect(now)
        self.events += events
        return events


def assert_order_kept(messages: list[Message]) -> None:
    """Per pool (capacity) and per job, first arrivals come in event order."""
    seen: set[str] = set()
    last: dict[tuple[str, str], tuple[str, int]] = {}
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        event = m.event
        if event["id"] in seen:
            continue
        seen.add(str(event["id"]))
        data = event["data"]
        if event["type"] == "cpn.capacity.v1":
            key, rank = ("pool", data["pool_id"]), (str(event["time"]), 0)
        elif event["type"] == "cpn.job.v1":
            key, rank = ("job", data["job_id"]), ("", data["seq"])
        else:
            continue
        assert last.get(key, ("", -1)) < rank, (key, last.get(key), rank)
        last[key] = rank


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test's own (the session one is shared): stopped and started at will."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        unavailable("java is not installed: the local Kafka broker needs Java 17")
    broker = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port(),
                        heap_mb=384, progress=lambda _m: None)
    try:
        yield broker
    finally:
        broker.down(timeout_s=15)


def test_every_event_type_arrives_keyed_typed_and_valid(kafka_bootstrap: str, topic_prefix: str,
                                                       tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, Topics(topic_prefix).telemetry, partitions=3)
    extra, registry = "", None
    try:
        from schemas.signing import KeyRegistry, verify

        secret = "cd" * 32
        (tmp_path / "key.toml").write_text(
            f'key_id = "k-test"\ndc_id = "gba-test-01"\nalg = "hmac-sha256"\nsecret = "{secret}"\n')
        extra = f'signing_key_file = "{tmp_path / "key.toml"}"'
        registry = KeyRegistry.from_toml(
            f'[[key]]\nkey_id = "k-test"\ndc_id = "gba-test-01"\nalg = "hmac-sha256"\nsecret = "{secret}"\n')
    except ImportError:
        pass
    (tmp_path / "a.toml").write_text(config("gba-test-01", kafka_bootstrap, topic_prefix,
                                            tmp_path / "spool", extra=extra))
    settings = load_settings(tmp_path / "a.toml")
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    agent = Agent.from_settings(settings, clock=clock)
    for _ in range(40):  # ten minutes of event time, as fast as it goes
        agent.step()
        clock.advance(15)
    assert agent.close(timeout_s=60)
    spooled = agent.outbox.counts.spooled
    messages = consume(kafka_bootstrap, topic_prefix, lambda ms: len(ms) >= spooled)
    assert len(messages) == spooled and len(ids_of(messages)) == spooled
    assert {m.event["type"] for m in messages} == TYPES
    now = datetime.now(UTC)
    for m in messages:
        assert m.key == b"gba-test-01"
        assert m.headers["content-type"] == CONTENT_TYPE.encode()
        assert not isinstance(decode(m.value, now=now, key=m.key), Reject)
        assert m.topic == Topics(topic_prefix).for_type(str(m.event["type"]))
        if registry is not None:
            assert verify(m.value, m.headers.get("surplus-signature"), registry, "gba-test-01", now) is None
    assert len({(m.topic, m.partition) for m in messages}) == 5  # one partition per topic: the DC's key
    assert_order_kept(messages)


def test_a_broker_outage_loses_nothing(own_broker: LocalKafka, topic_prefix: str,
                                       tmp_path: Path) -> None:
    bootstrap = own_broker.up(timeout_s=90)
    own_broker.create_topics(Topics(topic_prefix).telemetry, partitions=3)
    (tmp_path / "a.toml").write_text(config("gba-outage-01", bootstrap, topic_prefix, tmp_path / "spool"))
    settings = load_settings(tmp_path / "a.toml")
    clock = SimClock(datetime.now(UTC) - timedelta(hours=2), speed=60)  # a minute per second
    recording = Recording(SimulatorCollector(settings.dc, settings.collectors.simulator,
                                             settings.intervals, start=clock.now()))
    outbox = build_outbox(settings.kafka, settings.spool, dc_id=settings.dc.dc_id)
    agent = Agent(settings.dc, [recording], outbox=outbox, clock=clock, intervals=settings.intervals)

    agent.run_for(120)
    deadline = time.monotonic() + 60  # a freshly started broker may still load its coordinator
    while outbox.counts.delivered == 0 and time.monotonic() < deadline:
        agent.run_for(30)
    delivered_before = outbox.counts.delivered
    assert delivered_before > 0
    own_broker.down(timeout_s=30)
    agent.run_for(60 * 60)  # the broker is down for a real minute: an hour of events, spooled
    during = outbox.counts.delivered - delivered_before
    backlog = outbox.backlog
    assert backlog > 100, (backlog, during)
    own_broker.up(timeout_s=90)  # the same home: the data survived
    agent.run_for(60)
    assert agent.close(timeout_s=90), f"{outbox.backlog} events still undelivered"

    spooled = outbox.counts.spooled
    messages = consume(bootstrap, topic_prefix, lambda ms: len(ids_of(ms)) >= spooled)
    by_id: dict[str, bytes] = {}
    for m in messages:
        assert by_id.setdefault(str(m.event["id"]), m.value) == m.value  # a resend is the same bytes
    assert len(by_id) == spooled  # nothing lost
    for event in recording.events:
        assert by_id[str(event["id"])] == serialise(event)  # ids and bytes unchanged
    beats = [m.event for m in messages if m.event["type"] == "cpn.heartbeat.v1"]
    assert max(b["data"]["spool_backlog_events"] for b in beats) > 100  # the outage was reported
    assert max(b["data"]["spool_oldest_age_s"] for b in beats) > 300
    assert_order_kept(messages)


def spool_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*/*.seg"))


def test_sigkill_then_restart_delivers_everything_spooled(kafka_bootstrap: str, topic_prefix: str,
                                                          tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, Topics(topic_prefix).telemetry, partitions=3)
    spool = tmp_path / "spool"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: everything stays in the spool
    path = tmp_path / "a.toml"
    path.write_text(config("gba-kill-01", dead, topic_prefix, spool, speed=600, start_offset_s=-7200))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SURPLUS_AGENT_"))}
    cmd = [str(BIN / "surplus"), "agent", "--config", str(path)]
    with open(tmp_path / "run1.log", "wb") as log:
        first = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while spool_bytes(spool) < 150_000 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "run1.log").read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert spool_bytes(spool) >= 150_000

    # the kill landed in the middle of a write: a torn last record
    last = sorted((spool / "telemetry").glob("*.seg"))[-1]
    last.write_bytes(last.read_bytes()[:-5])
    offline = Spool(spool)
    assert offline.torn == 1
    expected: list[bytes] = []
    while batch := offline.read(5000):
        expected += [r.value for r in batch]
    offline.close()
    expected_ids = [json.loads(v)["id"] for v in expected]
    assert len(expected) > 300

    env["KAFKA_BOOTSTRAP"] = kafka_bootstrap  # the environment wins over the file
    with open(tmp_path / "run2.log", "wb") as log:
        second = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        messages = consume(kafka_bootstrap, topic_prefix,
                           lambda ms: set(expected_ids) <= ids_of(ms), timeout_s=90)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    output = (tmp_path / "run2.log").read_text()
    assert "Traceback" not in output and "stopped:" in output
    values = {str(m.event["id"]): m.value for m in messages}
    missing = [i for i in expected_ids if i not in values]
    assert not missing, f"{len(missing)} spooled events never arrived: {missing[:5]}"
    assert all(values[i] == v for i, v in zip(expected_ids, expected, strict=True))
    old = set(expected_ids)
    for topic in Topics(topic_prefix).telemetry:  # the spool is replayed before new events
        ordered = [m for m in sorted(messages, key=lambda m: m.offset) if m.topic == topic]
        flags = [str(m.event["id"]) in old for m in ordered]
        assert flags == sorted(flags, reverse=True), topic
    now = datetime.now(UTC) + timedelta(hours=1)
    assert all(not isinstance(decode(m.value, now=now, key=m.key), Reject) for m in messages)

