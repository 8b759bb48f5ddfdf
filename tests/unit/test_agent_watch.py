"""What an operator sees: one line per broker state change, status lines, `agent status`, /metrics."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.clock import ManualClock
from agents.metrics import AgentMetrics, serve
from agents.outbox import Outbox
from agents.records import Record
from agents.run import Agent
from agents.settings import DataCenter
from agents.spool import Spool
from agents.watch import BrokerWatch, Status, StatusReporter

BIN = Path(sys.executable).parent
DC = DataCenter(dc_id="nx-01", name="NX 1", operator="Example", province="CN-NX", hub="nx",
                lat=38.5, lon=106.2, racks_total=100)
CONNECT = ("%s [%s] %s", "FAIL", "rdkafka#producer-1", "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: "
           "Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)")


class Tick:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_a_down_broker_is_one_line_and_back_is_one_more(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mono = Tick()
    watch = BrokerWatch(monotonic=mono)
    for i in range(300):  # a minute of librdkafka at five lines a second
        mono.t = i / 5
        watch.log(logging.ERROR, *CONNECT)
        watch.error("_TRANSPORT", "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed")
        watch.error("_ALL_BROKERS_DOWN", "1/1 brokers are down")
    assert not watch.up and watch.outages == 1
    mono.t = 63
    watch.delivered(backlog=420)
    watch.delivered(backlog=10)
    assert lines(caplog) == [
        "Kafka unreachable: Connection refused; events stay in the spool until it is back",
        "Kafka reachable again after 63 s; sending the backlog of 420 events"]
    assert watch.up and watch.catching_up and watch.errors == 600


def test_other_librdkafka_warnings_are_said_once_per_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    mono = Tick()
    watch = BrokerWatch(monotonic=mono, repeat_s=300)
    for i in range(100):
        mono.t = i
        watch.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#1", f"odd setting {i}")
        watch.log(logging.DEBUG, "%s [%s] %s", "SEND", "rdkafka#1", "sent")
    mono.t = 400
    watch.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#1", "odd setting 7")
    assert len(lines(caplog)) == 2


def test_status_lines_every_interval_and_at_catch_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    mono = Tick()
    watch = BrokerWatch(monotonic=mono)
    backlog = [500]
    reporter = StatusReporter(lambda: Status(1000, 1000 - backlog[0], backlog[0], 12.5, "up" if watch.up else "down"),
                              watch, every_s=300, spool_dir=tmp_path, monotonic=mono)
    for second in range(0, 900, 5):
        mono.t = second
        if second == 100:
            watch.unreachable("refused")
        if second == 160:
            watch.delivered(backlog=500)
        if second >= 170:
            backlog[0] = max(0, backlog[0] - 100)
        reporter.tick()
    said = [m for m in lines(caplog) if m.startswith(("status:", "caught up:"))]
    assert said == [
        "caught up: 1000 spooled, 1000 delivered, backlog 0 events, oldest unsent 12.5 s, broker up",
        "status: 1000 spooled, 1000 delivered, backlog 0 events, oldest unsent 12.5 s, broker up",
        "status: 1000 spooled, 1000 delivered, backlog 0 events, oldest unsent 12.5 s, broker up"]
    assert json.loads((tmp_path / "status.json").read_text())["delivered"] == 1000


class Publisher:
    def __init__(self, on_delivery):  # type: ignore[no-untyped-def]
        self.on_delivery = on_delivery

    def send(self, rec: Record) -> bool:
        self.on_delivery(rec, None)
        return True

    def poll(self, timeout_s: float = 0.0) -> int:
        return 0

    def reset(self) -> None: ...

    def close(self, timeout_s: float) -> int:
        return 0


def test_agent_status_command_reads_a_spool_in_use(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    held = Spool(spool)  # a running agent holds the spool's lock
    try:
        from agents.records import to_record
        from agents.simdata import TENANTS  # noqa: F401  (the simulator's data import cleanly)

        event = {"specversion": "1.0", "id": "hb-1", "source": "//cpn/dc/nx-01", "type": "cpn.heartbeat.v1",
                 "time": "2026-11-20T00:00:00Z", "data": {"dc_id": "nx-01"}}
        held.append([to_record(event)] * 3)
        held.save_cursor()
        (spool / "status.json").write_text(json.dumps(Status(10, 7, 3, 1.0, "down", 1, 4242).__dict__))
        done = subprocess.run([str(BIN / "surplus"), "agent", "status", "--spool", str(spool)],
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        held.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("status: 10 spooled, 7 delivered, backlog 3 events, oldest unsent ")
    assert "broker down" in done.stdout and "agent pid 4242" in done.stdout
    missing = subprocess.run([str(BIN / "surplus"), "agent", "status", "--spool", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode != 0 and "no spool at" in missing.stderr and "Traceback" not in missing.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_serves_the_spool_and_delivery_figures(tmp_path: Path) -> None:
    from agents.collectors.simulator import SimulatorCollector
    from agents.settings import Intervals
    from agents.simsettings import SimulatorSettings

    box = Outbox(Spool(tmp_path / "spool"), Publisher)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    sim = SimulatorSettings(enabled=True, pools=[{"pool_id": "h20", "device_model": "nvidia-h20-96gb",
                                                  "devices": 8}])
    agent = Agent(DC, [SimulatorCollector(DC, sim, Intervals(), start=start)], outbox=box,
                  clock=ManualClock(start))
    agent.step()
    box.pump()  # serve the delivery reports
    metrics = AgentMetrics(box, [agent.counts])
    metrics.refresh(int(start.timestamp() * 1000))
    port = free_port()
    stop = serve(metrics, port, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        stop()
        box.close(1)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    spooled = agent.outbox.counts.spooled
    assert sum(v for (name, _), v in samples.items() if name == "surplus_agent_events_in_total") == spooled
    assert samples[("surplus_agent_events_in_total", (("type", "cpn.dc.v1"),))] == 1
    assert samples[("surplus_agent_events_out_total", ())] == spooled
    assert samples[("surplus_agent_spool_backlog_events", ())] == 0
    assert samples[("surplus_agent_spool_oldest_unsent_age_seconds", ())] == 0
    assert samples[("surplus_agent_delivery_errors_total", ())] == 0
    assert samples[("surplus_agent_broker_up", ())] == 1


def test_a_fresh_broker_not_ready_then_ready_is_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    mono = Tick()
    watch = BrokerWatch("Kafka 127.0.0.1:9092", monotonic=mono)
    for _ in range(50):  # the idempotent producer's GETPID while __consumer_offsets is created
        watch.log(logging.WARNING, "%s [%s] %s", "GETPID", "rdkafka#producer-1",
                  "[thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:9092/1: "
                  "Coordinator load in progress: retrying")
    mono.t = 2
    watch.delivered(backlog=228)
    assert lines(caplog) == [
        "Kafka 127.0.0.1:9092 not ready yet: the group coordinator is not ready yet (a new broker creates "
        "__consumer_offsets first); events stay in the spool until it is back",
        "Kafka 127.0.0.1:9092 ready after 2 s; sending the backlog of 228 events"]
