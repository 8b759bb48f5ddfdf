"""The dead-letter guard on the real broker: a worker fed only poison stops, says why in one line,
and commits nothing (the group's committed offsets on the broker stay empty)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.fleet import Message
from tests.e2e.harness import Worker, ensure_topics, offsets, publish

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_worker_fed_only_poison_stops_with_nothing_committed(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, topic_prefix, partitions=1)
    poison = [Message("capacity", b"dc-x", b"not json %d" % n) for n in range(300)]
    publish(kafka_bootstrap, topic_prefix, poison)
    group = f"g-{uuid.uuid4().hex[:8]}"
    worker = Worker(kafka_bootstrap, topic_prefix, group, f"chdb://{tmp_path / 'chdb'}", tmp_path / "worker.log",
                    SURPLUS_PARTITIONS="1", SURPLUS_BATCH_MAX_EVENTS="50", SURPLUS_BATCH_MAX_WAIT_MS="100",
                    SURPLUS_DEADLETTER_WINDOW="200").start()
    try:
        assert worker.proc is not None
        code = worker.proc.wait(240)
    finally:
        worker.stop()
    log = worker.log.read_text(errors="replace")
    assert code == 3, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("surplus: error: dead-letter guard:"), log[-3000:]
    assert "SURPLUS_DEADLETTER_LIMIT=0.5" in last and "undecodable" in last
    assert "Traceback" not in log, log[-3000:]
    time.sleep(1)
    committed, end = offsets(kafka_bootstrap, topic_prefix, group)
    assert end == 300
    assert committed == 0, "a worker stopped by the guard must not have committed anything"
