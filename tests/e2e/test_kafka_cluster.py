"""A real three-broker Kafka cluster (issue #17): `surplus kafka up --brokers 3`'s cluster, two
agents (simulated DCs, their own processes) and a worker; one broker is SIGKILLed mid-stream and
restarted. The agents never stop and their spools drain, every event they spooled is in Kafka,
and every relation the worker wrote is exact against the oracle over those events.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import fleet as oracle
from tests.e2e.harness import REPO, TELEMETRY, Worker, ensure_topics, offsets, query, wait_caught_up
from tests.e2e.test_pipeline import RELATIONS, check_relations
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.timeout(900)]

AGENTS = {"gba-cluster-01": ("gba", "CN-GD"), "gz-cluster-02": ("gz", "CN-GZ")}


def agent_config(dc_id: str, hub: str, province: str, bootstrap: str, prefix: str, spool: Path,
                 seed: int) -> str:
    return f"""
log_level = "INFO"
status_interval_s = 2

[dc]
dc_id = "{dc_id}"
name = "Cluster test {dc_id}"
operator = "Example Co"
province = "{province}"
hub = "{hub}"
cluster = "c1"
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
seed = {seed}
speed = 120
start_offset_s = -172800
green_contract_share = 0.2

[[collectors.simulator.pools]]
pool_id = "h100"
device_model = "nvidia-h100-sxm5-80gb"
devices = 256

[[collectors.simulator.pools]]
pool_id = "910b"
device_model = "huawei-ascend-910b2"
devices = 128
profile = "inference"
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[object]:
    """Three KRaft nodes of this test's own, on free ports."""
    from surplus.errors import UserError
    from surplus.kafka.cluster import LocalKafkaCluster
    from surplus.kafka.ports import free_port

    if not os.environ.get("JAVA_HOME") and subprocess.run(["which", "java"], capture_output=True).returncode:
        unavailable("java is not installed: the local Kafka cluster needs Java 17")
    ports = set()
    while len(ports) < 6:
        ports.add(free_port())
    listed = sorted(ports)
    nodes = LocalKafkaCluster(tmp_path / "kafka", 3, ports=listed[:3], controller_ports=listed[3:],
                              heap_mb=320, progress=lambda _m: None)
    try:
        nodes.up(timeout_s=240)
    except UserError as exc:
        nodes.down(timeout_s=10)
        unavailable(f"the local Kafka cluster did not start: {exc}")
    try:
        yield nodes
    finally:
        nodes.down(timeout_s=20)


def read_all(bootstrap: str, prefix: str) -> list[oracle.Message]:
    """Every message of the telemetry topics, in offset order per partition."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "log_level": 0})
    try:
        topics = consumer.list_topics(timeout=10).topics
        tps, expected = [], 0
        for short in TELEMETRY:
            for p in topics[prefix + short].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(prefix + short, p), timeout=10)
                if high > low:
                    tps.append(TopicPartition(prefix + short, p, low))
                    expected += high - low
        consumer.assign(tps)
        got: list[object] = []
        deadline = time.monotonic() + 120
        while len(got) < expected and time.monotonic() < deadline:
            for m in consumer.consume(5000, timeout=1):
                assert not m.error(), m.error()
                got.append(m)
        assert len(got) == expected, f"read {len(got)} of {expected}"
    finally:
        consumer.close()
    got.sort(key=lambda m: (m.topic(), m.partition(), m.offset()))  # type: ignore[attr-defined]
    return [oracle.Message(m.topic()[len(prefix):], m.key(), m.value(), json.loads(m.value()))  # type: ignore[attr-defined]
            for m in got]


def busiest_leader(bootstrap: str, prefix: str) -> int:
    """The broker leading the most telemetry partitions that hold data."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "leaders", "log_level": 0})
    try:
        leaders: Counter[int] = Counter()
        for name, topic in consumer.list_topics(timeout=10).topics.items():
            if name.startswith(prefix) and name[len(prefix):] in TELEMETRY:
                for p, meta in topic.partitions.items():
                    if consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] > 0:
                        leaders[meta.leader] += 1
    finally:
        consumer.close()
    return leaders.most_common(1)[0][0]


def test_a_broker_killed_mid_stream_loses_nothing_and_stops_no_agent(cluster: object, topic_prefix: str,
                                                                    tmp_path: Path) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    from agents.watch import read_status_file
    from surplus.kafka.cluster import LocalKafkaCluster

    assert isinstance(cluster, LocalKafkaCluster)
    bootstrap = cluster.bootstrap
    assert len(bootstrap.split(",")) == 3
    ensure_topics(bootstrap, topic_prefix)  # the cluster's default: three replicas
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for name, topic in admin.list_topics(timeout=10).topics.items():
        if name.startswith(topic_prefix):
            assert all(len(p.replicas) == 3 for p in topic.partitions.values()), name
    resource = ConfigResource("topic", topic_prefix + "jobs")
    for _ in range(50):  # the broker asked may not know the new topic for a moment
        try:
            configs = admin.describe_configs([resource])[resource].result(timeout=30)
            break
        except KafkaException:
            time.sleep(0.2)
    assert configs["min.insync.replicas"].value == "2"

    book = tmp_path / "prices.toml"
    book.write_text(oracle.PRICE_BOOK)
    group = f"g-{uuid.uuid4().hex[:8]}"
    url = f"chdb://{tmp_path / 'store'}"
    worker = Worker(bootstrap, topic_prefix, group, url, tmp_path / "worker.log", SURPLUS_PRICE_BOOK=str(book),
                    SURPLUS_BATCH_MAX_EVENTS="500", SURPLUS_BATCH_MAX_WAIT_MS="100").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SURPLUS_AGENT_"))}
    agents: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    try:
        for seed, (dc_id, (hub, province)) in enumerate(AGENTS.items(), start=3):
            path, spool, log = tmp_path / f"{dc_id}.toml", tmp_path / f"spool-{dc_id}", tmp_path / f"{dc_id}.log"
            path.write_text(agent_config(dc_id, hub, province, bootstrap, topic_prefix, spool, seed))
            with open(log, "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "surplus.cli", "agent", "--config", str(path)],
                                        cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            agents[dc_id] = (proc, spool, log)

        def check_agents_alive() -> None:
            for dc_id, (proc, _spool, log) in agents.items():
                assert proc.poll() is None, f"agent {dc_id} stopped:\n{log.read_text()[-3000:]}"

        deadline = time.monotonic() + 120
        while offsets(bootstrap, topic_prefix, group)[0] < 300 and time.monotonic() < deadline:
            check_agents_alive()
            assert worker.alive(), worker.tail()
            time.sleep(1)
        assert offsets(bootstrap, topic_prefix, group)[0] >= 300, worker.tail()

        victim_id = busiest_leader(bootstrap, topic_prefix)
        victim = cluster.node(victim_id)
        pid = victim.status()["pid"]
        os.kill(pid, signal.SIGKILL)  # mid-stream: agents publishing, the worker consuming
        while victim.is_running():
            time.sleep(0.1)
        before = offsets(bootstrap, topic_prefix, group)
        for _ in range(15):  # a quarter of a minute on two brokers: writes go on (min ISR 2)
            check_agents_alive()
            time.sleep(1)
        during = offsets(bootstrap, topic_prefix, group)
        assert during[1] > before[1], "the agents kept publishing with a broker down"
        victim.up(timeout_s=180)  # the same node, its data kept: it catches up as a follower
        for _ in range(10):
            check_agents_alive()
            time.sleep(1)

        # each outbox drains while its agent keeps running: the status the agent writes every 2 s
        # says backlog 0 (it keeps spooling new events, so at some moment, not all at once)
        restarted_ms = int(time.time() * 1000)
        drained: set[str] = set()
        deadline = time.monotonic() + 120
        while len(drained) < len(agents) and time.monotonic() < deadline:
            check_agents_alive()
            for dc, (proc, spool, _log) in agents.items():
                status = read_status_file(spool)
                if (status is not None and status.pid == proc.pid and status.backlog == 0
                        and status.written_at_ms > restarted_ms and status.broker == "up"):
                    drained.add(dc)
            time.sleep(0.2)
        assert drained == set(agents), f"spools that did not drain: {set(agents) - drained}"
        check_agents_alive()
        spooled = 0
        named: list[bool] = []  # an agent with no partition led by the victim never connects to it
        for proc, _spool, log in agents.values():
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()[-3000:]
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
            stopped = [line for line in text.splitlines() if "stopped:" in line][-1]
            n_spooled, n_delivered, left = (int(stopped.split("stopped: ")[1].split()[i]) for i in (0, 2, 4))
            assert left == 0 and n_delivered >= n_spooled > 0, stopped
            spooled += n_spooled
            # one broker of three down is that broker's line, never "the cluster is unreachable"
            assert f"Kafka {bootstrap} unreachable" not in text, text[-3000:]
            named.append(f"broker {victim.bootstrap}/" in text)  # its id, or "bootstrap"
        assert any(named), "no agent named the broker that was down"
        wait_caught_up(bootstrap, topic_prefix, group, worker, timeout_s=300)
    finally:
        for proc, _spool, _log in agents.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert worker.stop() is not None, worker.tail()

    messages = read_all(bootstrap, topic_prefix)
    ids = {(m.event["source"], m.event["id"]) for m in messages if m.event}  # CloudEvents identity
    assert len(ids) == spooled, f"{spooled} events spooled, {len(ids)} distinct in Kafka"  # nothing lost
    assert {m.event["data"]["dc_id"] for m in messages if m.event} == set(AGENTS)
    result = query(url, RELATIONS)
    check_relations(result, oracle.Fleet(messages))
    assert not result["deadletter"]
    assert {r["dc_id"] for r in result["ledger"]} == set(AGENTS), "both DCs metered jobs"
