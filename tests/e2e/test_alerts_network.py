"""Alerts once for the network (SPEC §6): two workers on the real broker split the partitions and
write one served store; one `surplus alerts run` evaluates a national `surplus_below` rule that
needs both workers' partitions; a real HTTP receiver gets exactly one firing and one resolved.

Six DCs, one pool each, spread over the three partitions of each topic (DC i on partition
i % 3), so each worker holds at least two DCs and the other at most four. Every DC has the same
idle capacity P; the threshold is 5.5 P. The whole network is above it (6 P) but any one
worker's partitions are always below it (at most 4 P): an evaluator that saw only some
partitions would fire at once and never resolve. The national figure drops to 5 P for four
minutes (DC 0 fully allocated), then comes back.

Stream time is the recent past (within the backfill look-back, so notifications are sent); each
minute of samples is published, then the test waits until both workers have committed it and
the evaluator's stored stream clock has reached it, so the evaluator sees every minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet import catalogue_peaks, envelope
from tests.e2e.harness import REPO, Worker, ensure_topics, wait_caught_up

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

DCS = 6
DEVICES = 100
MODEL = "nvidia-h100-sxm5-80gb"
LOW_MINUTES = range(4, 8)  # DC 0 fully allocated in these minutes' samples
MINUTES = 12
SECRET = "network-secret"


def capacity_events(base: datetime, minute: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every DC's samples in one minute: at +5, +20, +35, +50 s."""
    out = []
    for i in range(DCS):
        dc = f"dc-{i}"
        allocated = DEVICES if (i == 0 and minute in LOW_MINUTES) else 0
        for second in (5, 20, 35, 50):
            t = base + timedelta(minutes=minute, seconds=second)
            event = envelope("cpn.capacity.v1", f"cap-{minute}-{second}", dc, t, {
                "dc_id": dc, "pool_id": "pool-0", "device_model": MODEL, "devices_total": DEVICES,
                "devices_online": DEVICES, "devices_allocated": allocated, "busy_ratio": 0.5,
                "interval_s": 15})
            out.append((i % 3, dc.encode(), json.dumps(event).encode()))
    return out


def publish(bootstrap: str, topic: str, messages: list[tuple[int, bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    from surplus.kafka.admin import client_config

    producer = Producer(client_config(bootstrap, {"acks": "all", "enable.idempotence": True}))
    for partition, key, value in messages:
        producer.produce(topic, value, key=key, partition=partition,
                         headers=[("content-type", b"application/cloudevents+json")])
    assert producer.flush(60) == 0


def until(what: str, ready: Callable[[], bool], check: Callable[[], None], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        check()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_national_rule_over_two_workers_fires_once_and_resolves_once(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    from streams.alerts.receiver import Recorder
    from streams.alerts.sign import verify
    from tests.e2e.test_pipeline import wait_members
    from tests.served import serve

    peak_pflops = catalogue_peaks()[MODEL]["fp16"] * DEVICES / 1000  # P: one DC's idle capacity
    assert peak_pflops
    threshold = 5.5 * peak_pflops
    ensure_topics(kafka_bootstrap, topic_prefix)
    group = f"g-{uuid.uuid4().hex[:8]}"
    served = serve(tmp_path / "served", log=tmp_path / "serve.log")
    workers: list[Worker] = []
    evaluator: subprocess.Popen[bytes] | None = None
    with Recorder() as hook:
        try:
            workers = [Worker(kafka_bootstrap, topic_prefix, group, served.url, tmp_path / f"w{i}.log",
                              SURPLUS_BATCH_MAX_WAIT_MS="50").start() for i in range(2)]
            wait_members(kafka_bootstrap, group, 2, workers)
            rules = tmp_path / "rules.toml"
            rules.write_text(
                "[engine]\ninstance = \"network\"\nidle_after_s = 3600\nbackfill_lookback_s = 3600\n"
                f"[[receiver]]\nname = \"ops\"\nurl = \"{hook.url}\"\nallow_http = true\n"
                f"secret = \"{SECRET}\"\ngroup_wait_s = 0\ngroup_interval_s = 0\n"
                "repeat_interval_s = 3600\n"
                "[[rule]]\nkind = \"surplus_below\"\nscope = \"national\"\n"
                f"threshold_pflops = {threshold}\nfor_s = 60\nsettle_s = 0\nseverity = \"critical\"\n",
                encoding="utf-8")
            log = tmp_path / "alerts.log"
            with open(log, "ab") as handle:
                evaluator = subprocess.Popen(
                    [sys.executable, "-m", "surplus.cli", "alerts", "run", "--rules", str(rules),
                     "--url", served.url, "--interval", "0.3"],
                    cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                    stdout=handle, stderr=subprocess.STDOUT)
            reader = served.client()

            def alive() -> None:
                assert evaluator is not None and evaluator.poll() is None, log.read_text()[-3000:]
                assert all(w.alive() for w in workers), "\n".join(w.tail() for w in workers)

            def evaluated_at(t: datetime) -> bool:
                rows = reader.query("SELECT clock FROM cpn.alert_clock FINAL "
                                    "WHERE instance = 'network'").result_rows
                return bool(rows) and rows[0][0] is not None and \
                    rows[0][0].replace(tzinfo=UTC) >= t

            def statuses() -> list[str]:
                return [item.json()["status"] for item in hook.received]

            base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 2)
            for minute in range(MINUTES):
                publish(kafka_bootstrap, topic_prefix + "capacity", capacity_events(base, minute))
                wait_caught_up(kafka_bootstrap, topic_prefix, group, workers[0])
                newest = base + timedelta(minutes=minute, seconds=50)
                until(f"the evaluator at minute {minute}", lambda t=newest: evaluated_at(t), alive)
                if minute == LOW_MINUTES[-1]:  # minutes 5..7 read low: pending, then firing
                    until("the firing", lambda: statuses() == ["firing"], alive, timeout_s=30)
                if minute == LOW_MINUTES[-1] + 2:  # minute 9 reads the first high samples again
                    until("the resolved", lambda: statuses() == ["firing", "resolved"], alive,
                          timeout_s=30)
            alive()
            evaluator.send_signal(signal.SIGTERM)
            assert evaluator.wait(60) == 0, log.read_text()[-3000:]
            by_worker = reader.query(
                "SELECT worker, max(value) FROM cpn.pipeline_metrics WHERE metric = 'accepted' "
                "AND label = 'cpn.capacity.v1' GROUP BY worker").result_rows
            low = reader.query("SELECT idle_pflops_fp16 FROM cpn.national_surplus_minute "
                               "WHERE ts = {ts:DateTime}",
                               parameters={"ts": base + timedelta(minutes=6)}).result_rows
        finally:
            if evaluator is not None and evaluator.poll() is None:
                evaluator.kill()
                evaluator.wait(30)
            for w in workers:
                w.stop()
            assert served.stop() == 0
        received = list(hook.received)
    assert len(by_worker) == 2 and all(n > 0 for _, n in by_worker), "both workers wrote samples"
    bodies: list[dict[str, Any]] = [item.json() for item in received]
    assert [b["status"] for b in bodies] == ["firing", "resolved"]
    firing, resolved = bodies
    [alert] = firing["alerts"]
    assert alert["labels"] == {"alertname": "SurplusBelow", "severity": "critical", "scope": "national"}
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    # the figure is the whole network's (5 P), never one worker's share of the partitions
    assert low and abs(low[0][0] - 5 * peak_pflops) < 1e-6
    assert f"is {5 * peak_pflops:.3f} PFLOPS" in alert["annotations"]["description"]
    for item in received:
        assert verify(SECRET.encode(), item.signature, item.body, now=int(time.time()))
