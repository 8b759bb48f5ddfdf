"""Drive the real pieces from a test: publish to Kafka, run `surplus streams worker` as a process,
wait for it to catch up (committed offsets), stop or SIGKILL it, and read its store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.e2e.fleet import Message

REPO = Path(__file__).resolve().parents[2]
TELEMETRY = ("registry", "capacity", "power", "jobs", "heartbeat")


def ensure_topics(bootstrap: str, prefix: str, partitions: int = 3) -> None:
    from surplus.kafka.admin import ensure_topics as ensure

    ensure(bootstrap, [prefix + t for t in (*TELEMETRY, "deadletter")], partitions=partitions)


def publish(bootstrap: str, prefix: str, messages: Iterable[Message]) -> int:
    from confluent_kafka import Producer

    from surplus.kafka.admin import client_config

    producer = Producer(client_config(bootstrap, {"enable.idempotence": True, "acks": "all",
                                                  "compression.type": "lz4", "linger.ms": 5}))
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    n = 0
    for m in messages:
        while True:
            try:
                producer.produce(prefix + m.topic, m.value, key=m.key, on_delivery=report,
                                 headers=[("content-type", b"application/cloudevents+json")])
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0 and not failures, f"publish failed: {failures[:3]}, {remaining} left"
    return n


def offsets(bootstrap: str, prefix: str, group: str) -> tuple[int, int]:
    """(committed, end) summed over the telemetry topics' partitions for the group."""
    from confluent_kafka import KafkaException

    for _ in range(50):  # the group coordinator may still be loading on a fresh broker, and a
        try:             # cluster's other brokers may not know a new topic yet
            return _offsets(bootstrap, prefix, group)
        except (KafkaException, KeyError):
            time.sleep(0.2)
    return _offsets(bootstrap, prefix, group)


def _offsets(bootstrap: str, prefix: str, group: str) -> tuple[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    from surplus.kafka.admin import client_config

    consumer = Consumer(client_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(timeout=10)
        tps = [TopicPartition(prefix + t, p) for t in TELEMETRY
               for p in meta.topics[prefix + t].partitions]
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
        end = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
    finally:
        consumer.close()
    return committed, end


def reset_group(bootstrap: str, prefix: str, group: str) -> None:
    """Set the group's offsets back to the start of every telemetry partition (group must be idle)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    from surplus.kafka.admin import admin_client

    admin = admin_client(bootstrap)
    meta = admin.list_topics(timeout=10)
    tps = [TopicPartition(prefix + t, p, 0) for t in TELEMETRY for p in meta.topics[prefix + t].partitions]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
    for f in futures.values():
        f.result(timeout=30)


class Worker:
    """`surplus streams worker` in its own process, with a log file."""

    def __init__(self, bootstrap: str, prefix: str, group: str, clickhouse_url: str, log: Path,
                 **env: str) -> None:
        self.env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "CLICKHOUSE_URL": clickhouse_url,
                    "SURPLUS_TOPIC_PREFIX": prefix, "SURPLUS_GROUP_ID": group, "SURPLUS_PARTITIONS": "3",
                    "SURPLUS_METRICS_INTERVAL_S": "2", "SURPLUS_SESSION_TIMEOUT_S": "6", "SURPLUS_DATA_DIR": str(log.parent / "faust"),
                    **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        handle = open(self.log, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen([sys.executable, "-m", "surplus.cli", "streams", "worker"],
                                     cwd=REPO, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after the deadline (a stuck worker can ignore SIGTERM)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def wait_caught_up(bootstrap: str, prefix: str, group: str, worker: Worker, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        committed, end = offsets(bootstrap, prefix, group)
        if end and committed >= end:
            return
        assert worker.alive(), f"worker died:\n{worker.tail()}"
        time.sleep(0.5)
    raise AssertionError(f"worker did not catch up in {timeout_s} s ({committed}/{end}):\n{worker.tail()}")


def wait_progress(bootstrap: str, prefix: str, group: str, above: int, worker: Worker,
                  timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        committed, _ = offsets(bootstrap, prefix, group)
        if committed > above:
            return committed
        assert worker.alive(), f"worker died:\n{worker.tail()}"
        time.sleep(0.05)
    raise AssertionError(f"no progress past {above}:\n{worker.tail()}")


def query(url: str, queries: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Run queries in a separate process (chDB: one data path per process)."""
    done = subprocess.run([sys.executable, "-m", "tests.e2e.chquery", url], input=json.dumps(queries).encode(),
                          capture_output=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return result
