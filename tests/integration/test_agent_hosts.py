"""The agent on a host: fake nvidia-smi, npu-smi and sacct on PATH print the recorded cases; the
events read back from the real broker are the right ones. And what an operator sees when the
broker is down for a minute: a handful of lines, one when it is back, one when caught up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.decode import decode
from schemas.events import CapacityEvent, JobEvent
from schemas.prices import PriceBook
from schemas.topics import Topics
from streams.ledger import apply
from surplus.kafka.admin import ensure_topics
from surplus.kafka.local import LocalKafka
from tests.integration.test_agent_kafka import consume, own_broker  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases" / "agent"
BOOK = PriceBook.parse('[[price]]\ndevice_model = "nvidia-h100-sxm5-80gb"\n'
                       'cny_per_device_hour = "10"\neffective_from = 2026-01-01\n')
# what `sacct` prints at its n-th call: the n-th poll of each series (the last one after that)
SERIES = (("s1b-poll1", "s1b-poll2"), ("s2-poll1", "s2-poll2", "s2-poll3", "s2-poll4"),
          ("s4-poll1", "s4-poll2"))

DC = """
log_level = "INFO"
status_interval_s = {status_s}
[dc]
dc_id = "{dc_id}"
name = "Host DC"
operator = "Example Co"
province = "CN-GZ"
hub = "gz"
lat = 26.6
lon = 106.7
racks_total = 40
[intervals]
capacity_s = 1
jobs_s = {jobs_s}
heartbeat_s = 5
[kafka]
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"
linger_ms = 5
[spool]
path = "{spool}"
"""
HOST = """
[collectors.nvidia]
enabled = true
pool_id = "a800"
[collectors.ascend]
enabled = true
pool_id = "a3"
[collectors.slurm]
enabled = true
[[collectors.slurm.partitions]]
name = "gpu-h100"
pool_id = "h100"
device_model = "nvidia-h100-sxm5-80gb"
"""
SIMULATED = """
[collectors.simulator]
enabled = true
seed = 3
[[collectors.simulator.pools]]
pool_id = "h20"
device_model = "nvidia-h20-96gb"
devices = 64
"""


def fake_tools(bin_dir: Path) -> None:
    """nvidia-smi, npu-smi and sacct that print the recorded cases (sacct: the next poll per call)."""
    bin_dir.mkdir()
    printer = {"nvidia-smi": CASES / "n5-fell-off-bus.csv", "npu-smi": CASES / "a1-atlas-a3-910c.txt"}
    for tool, path in printer.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\ncat '{path}'\n")
    polls = [[str(CASES / f"{name}.sacct") for name in series] for series in SERIES]
    (bin_dir / "sacct").write_text(f"""#!{sys.executable}
import pathlib, sys
counter = pathlib.Path({str(bin_dir / "sacct-calls")!r})
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
for series in {polls!r}:
    sys.stdout.write(pathlib.Path(series[min(n, len(series) - 1)]).read_text())
""")
    for tool in ("nvidia-smi", "npu-smi", "sacct"):
        (bin_dir / tool).chmod(0o755)


def calls(counter: Path) -> int:
    try:
        return int(counter.read_text() or 0)
    except (OSError, ValueError):
        return 0


def start_agent(tmp_path: Path, config: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    path = tmp_path / "agent.toml"
    path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SURPLUS_AGENT_", "KAFKA_"))}
    return subprocess.Popen([str(BIN / "surplus"), "agent", "--config", str(path)],
                            env={**clean, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_fake_host_tools_publish_the_right_events(kafka_bootstrap: str, topic_prefix: str,
                                                  tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, Topics(topic_prefix).telemetry, partitions=3)
    fake_tools(tmp_path / "bin")
    config = DC.format(status_s=300, dc_id="gz-host-01", jobs_s=1, bootstrap=kafka_bootstrap,
                       prefix=topic_prefix, spool=tmp_path / "spool") + HOST
    agent = start_agent(tmp_path, config, {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and calls(tmp_path / "bin" / "sacct-calls") < 6:
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr

    def finished(messages: list[object]) -> bool:
        ends = {m.event["data"]["job_id"] for m in messages  # type: ignore[attr-defined]
                if m.event["type"] == "cpn.job.v1" and m.event["data"]["phase"] == "end"}  # type: ignore[attr-defined]
        models = {m.event["data"]["device_model"] for m in messages  # type: ignore[attr-defined]
                  if m.event["type"] == "cpn.capacity.v1"}  # type: ignore[attr-defined]
        return ends >= {"5001", "5003", "6001", "7001"} and models >= {
            "nvidia-a800-sxm4-80gb", "huawei-ascend-910c"}

    messages = consume(kafka_bootstrap, topic_prefix, finished)
    now = datetime.now(UTC)
    decoded = [decode(m.value, now=now, key=m.key) for m in messages]
    jobs = [d for d in decoded if isinstance(d, JobEvent)]
    capacity = [d for d in decoded if isinstance(d, CapacityEvent)]
    by_job = {j: [e for e in jobs if e.data.job_id == j] for j in {e.data.job_id for e in jobs}}
    assert set(by_job) == {"5001", "5003", "6001", "7001"}
    metered = {}
    for job, events in by_job.items():
        ledger = apply(events, {}, BOOK)
        assert not ledger.rejects, ledger.rejects
        metered[job] = sum(e.device_seconds for e in ledger.entries)
        assert len({e.id for e in events if e.data.phase == "end"}) == 1  # ends once
    assert metered == {"5001": 1834, "5003": 3600, "6001": 4260, "7001": 3700}
    gpus = {(e.data.devices_total, e.data.devices_online, e.data.devices_allocated)
            for e in capacity if e.data.device_model == "nvidia-a800-sxm4-80gb"}
    npus = {(e.data.devices_total, e.data.devices_online)
            for e in capacity if e.data.device_model == "huawei-ascend-910c"}
    assert gpus == {(3, 2, 1)} and npus == {(2, 2)}
    warnings = [ln for ln in stderr.splitlines() if "partial data" in ln]
    assert len([w for w in warnings if "collector nvidia" in w]) == 1  # the lost GPU, said once
    assert "Traceback" not in stderr


class Lines:
    """The agent's stderr lines as they come, each with the time it came."""

    def __init__(self, stream: object) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def since(self, t: float) -> list[str]:
        return [ln for at, ln in self.lines if at >= t]

    def wait_for(self, text: str, timeout_s: float, since: float = 0.0) -> bool:
        """True once a line at or after `since` (monotonic) holds `text`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in ln for at, ln in self.lines if at >= since):
                return True
            time.sleep(0.2)
        return False


def test_a_minute_without_the_broker_is_a_handful_of_lines(own_broker: LocalKafka,  # noqa: F811
                                                           topic_prefix: str, tmp_path: Path) -> None:
    bootstrap = own_broker.up(timeout_s=90)
    own_broker.create_topics(Topics(topic_prefix).telemetry, partitions=3)
    config = DC.format(status_s=300, dc_id="gz-watch-01", jobs_s=60, bootstrap=bootstrap,
                       prefix=topic_prefix, spool=tmp_path / "spool") + SIMULATED
    agent = start_agent(tmp_path, config)
    lines = Lines(agent.stderr)
    try:
        assert lines.wait_for("agent", 30)
        consume(bootstrap, topic_prefix, lambda ms: len(ms) >= 10, timeout_s=60)
        time.sleep(2)
        down_at = time.monotonic()
        own_broker.down(timeout_s=30)
        time.sleep(60)
        during = lines.since(down_at)
        up_at = time.monotonic()
        own_broker.up(timeout_s=90)
        assert lines.wait_for("caught up", 120, since=up_at), lines.since(down_at)
        after = lines.since(up_at)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
    assert 1 <= len(during) <= 5, during
    assert any(f"Kafka {bootstrap} unreachable: " in ln for ln in during), during
    assert len([ln for ln in after if f"Kafka {bootstrap} reachable again" in ln]) == 1, after
    assert len([ln for ln in after if "caught up:" in ln]) == 1, after
    assert len(after) <= 4, after
    status = subprocess.run([str(BIN / "surplus"), "agent", "status", "--spool", str(tmp_path / "spool")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0 and status.stdout.startswith("status: "), status
    assert "backlog" in status.stdout and "broker up" in status.stdout
