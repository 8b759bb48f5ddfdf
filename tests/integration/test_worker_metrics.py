"""The worker's /metrics (SPEC §7) on a real worker on the real broker: scraped over HTTP, parsed
with prometheus_client's own text parser, and checked against what the test published: events in,
accepted events out by type, rejects by reason (the dead letters), batches and their write
latency, and consumer lag that rises while a backlog is read and is 0 once caught up."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fleet import TOPIC, generate, poison_messages
from tests.e2e.harness import Worker, ensure_topics, publish, wait_caught_up
from tests.served import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(600)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_label(samples: Samples, name: str, label: str) -> Counter[str]:
    return Counter({dict(labels)[label]: int(v) for (n, labels), v in samples.items() if n == name})


def lag(samples: Samples) -> dict[str, float]:
    return {f"{dict(labels)['topic']}/{dict(labels)['partition']}": v
            for (n, labels), v in samples.items() if n == "surplus_worker_consumer_lag"}


def wait_serving(port: int, worker: Worker, timeout_s: float = 120) -> Samples:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return scrape(port)
        except (urllib.error.URLError, ConnectionError):
            assert worker.alive(), f"worker died:\n{worker.tail()}"
            time.sleep(0.2)
    raise AssertionError(f"no /metrics on port {port}:\n{worker.tail()}")


def test_the_worker_metrics_follow_events_dead_letters_and_lag(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, topic_prefix, partitions=1)
    first = generate(seed=3, dcs=4, minutes=30, poison=False, regression=False).messages
    poison = poison_messages()
    publish(kafka_bootstrap, topic_prefix, first + poison)
    port = free_port()
    group = f"g-{uuid.uuid4().hex[:8]}"
    worker = Worker(kafka_bootstrap, topic_prefix, group, f"chdb://{tmp_path / 'chdb'}", tmp_path / "worker.log",
                    SURPLUS_PARTITIONS="1", SURPLUS_BATCH_MAX_EVENTS="200", SURPLUS_BATCH_MAX_WAIT_MS="100",
                    SURPLUS_METRICS_PORT=str(port)).start()
    try:
        wait_serving(port, worker)
        wait_caught_up(kafka_bootstrap, topic_prefix, group, worker)
        s = scrape(port)
        published = len(first) + len(poison)
        assert s[("surplus_worker_events_in_total", ())] == published
        accepted = Counter(m.event["type"] for m in first if m.event is not None)
        assert by_label(s, "surplus_worker_events_out_total", "type") == accepted
        reasons = Counter(m.poison for m in poison)
        assert by_label(s, "surplus_worker_events_rejected_total", "reason") == reasons
        batches = s[("surplus_worker_batches_total", ())]
        assert batches >= 1
        assert s[("surplus_worker_batch_write_seconds_count", ())] == batches
        assert s[("surplus_worker_batch_write_seconds_bucket", (("le", "+Inf"),))] == batches
        assert s[("surplus_worker_batch_write_seconds_sum", ())] > 0
        assert s[("surplus_worker_rows_written_total", ())] >= len(first)
        caught_up = lag(s)
        assert set(caught_up) >= {topic_prefix + TOPIC["cpn.capacity.v1"] + "/0"}
        assert all(v == 0 for v in caught_up.values()), caught_up

        # a backlog: lag rises while the worker reads it, then falls back to 0
        backlog = [m for m in generate(seed=5, dcs=6, minutes=60, poison=False, regression=False).messages
                   if m.topic != "jobs"]  # its jobs reuse the first fleet's job ids (counter regressions)
        publish(kafka_bootstrap, topic_prefix, backlog)
        highest = 0.0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            now = scrape(port)
            highest = max(highest, *lag(now).values())
            if now[("surplus_worker_events_in_total", ())] >= published + len(backlog):
                break
            assert worker.alive(), worker.tail()
            time.sleep(0.05)
        print(f"highest consumer lag seen while the backlog was read: {highest:.0f} messages")
        wait_caught_up(kafka_bootstrap, topic_prefix, group, worker)
        after = scrape(port)
        assert after[("surplus_worker_events_in_total", ())] == published + len(backlog)
        more = Counter(m.event["type"] for m in backlog if m.event is not None)
        assert by_label(after, "surplus_worker_events_out_total", "type") == accepted + more
        assert by_label(after, "surplus_worker_events_rejected_total", "reason") == reasons  # no new ones
        assert sum(by_label(after, "surplus_worker_events_out_total", "type").values()) + sum(reasons.values()) \
            == after[("surplus_worker_events_in_total", ())]
        assert after[("surplus_worker_batches_total", ())] > batches
        assert highest > 0, "the lag never showed the backlog"
        assert all(v == 0 for v in lag(after).values()), lag(after)
    finally:
        assert worker.stop() is not None
    assert "Traceback" not in worker.log.read_text(errors="replace")


def test_a_taken_metrics_port_is_one_line(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ensure_topics(kafka_bootstrap, topic_prefix, partitions=1)
        worker = Worker(kafka_bootstrap, topic_prefix, f"g-{uuid.uuid4().hex[:8]}", f"chdb://{tmp_path / 'chdb'}",
                        tmp_path / "worker.log", SURPLUS_PARTITIONS="1", SURPLUS_METRICS_PORT=str(port)).start()
        try:
            assert worker.proc is not None
            code = worker.proc.wait(120)
        finally:
            worker.stop()
    log = worker.log.read_text(errors="replace")
    assert code == 2, log[-2000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"surplus: error: cannot serve /metrics on port {port}: "), log[-2000:]
    assert "Traceback" not in log
