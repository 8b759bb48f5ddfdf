"""The local KRaft broker (surplus.kafka.local and `surplus kafka`): a real JVM, a temporary home."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from surplus.errors import UserError
from surplus.kafka.local import LocalKafka
from surplus.kafka.ports import free_port
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
CLI = [str(BIN / "surplus")] if (BIN / "surplus").is_file() else [sys.executable, "-m",
                                                                    "surplus.cli"]


def _two_ports() -> tuple[int, int]:
    port = free_port()
    other = free_port()
    while other == port:
        other = free_port()
    return port, other


def _java_pids(home: Path) -> list[int]:
    """Every live kafka.Kafka JVM whose command line names this home's server.properties."""
    props = str(home / "server.properties").encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"kafka.Kafka" in cmdline and props in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def _stop(kafka: LocalKafka) -> None:
    """Teardown that cannot leave a JVM behind: down(), then SIGKILL whatever still runs."""
    try:
        kafka.down(timeout_s=10)
    finally:
        for pid in _java_pids(kafka.home):
            os.kill(pid, signal.SIGKILL)


def _cli(kafka: LocalKafka, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SURPLUS_KAFKA_HOME": str(kafka.home),
           "SURPLUS_KAFKA_PORT": str(kafka.port),
           "SURPLUS_KAFKA_CONTROLLER_PORT": str(kafka.controller_port)}
    return subprocess.run([*CLI, "kafka", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """One broker per module in a temporary home on free ports, always stopped afterwards."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI") == "true":
            pytest.fail("java is not installed: the local Kafka broker needs Java 17")
        unavailable("java is not installed: the local Kafka broker needs Java 17")
    port, controller_port = _two_ports()
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), port, controller_port, heap_mb=256,
                       progress=lambda _message: None)
    try:
        yield kafka
    finally:
        _stop(kafka)


@pytest.fixture
def running(broker: LocalKafka) -> LocalKafka:
    """The module's broker, (re)started if a test stopped it: `up` is idempotent."""
    broker.up(timeout_s=90)
    return broker


def test_up_twice_returns_the_same_address_and_starts_one_jvm(running: LocalKafka) -> None:
    pid = int(running.pid_file.read_text())
    assert running.up() == f"127.0.0.1:{running.port}"
    assert int(running.pid_file.read_text()) == pid
    assert _java_pids(running.home) == [pid]
    assert running.status() == {"running": True, "pid": pid, "bootstrap": running.bootstrap,
                                "home": str(running.home)}


def test_a_message_round_trips_through_the_broker(running: LocalKafka) -> None:
    topic = f"test.localkafka.{uuid.uuid4().hex[:8]}"
    running.create_topics([topic])
    running.create_topics([topic])  # idempotent
    producer = Producer({"bootstrap.servers": running.bootstrap, "acks": "all"})
    producer.produce(topic, b'{"hello": "kafka"}', key=b"dc-1")
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": running.bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(30):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None
        assert message.error() is None
        assert (message.key(), message.value()) == (b"dc-1", b'{"hello": "kafka"}')
    finally:
        consumer.close()


def test_cli_up_finds_the_running_broker_and_status_reports_it(running: LocalKafka) -> None:
    pid = int(running.pid_file.read_text())
    up = _cli(running, "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == running.bootstrap
    assert "already running" in up.stderr
    assert _java_pids(running.home) == [pid]
    status = _cli(running, "status")
    assert status.returncode == 0
    assert str(pid) in status.stdout
    assert running.bootstrap in status.stdout


def test_down_stops_the_broker_and_a_second_down_is_harmless(running: LocalKafka) -> None:
    first = _cli(running, "down")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("stopped")
    assert _java_pids(running.home) == []
    assert not running.pid_file.exists()
    second = _cli(running, "down")
    assert (second.returncode, second.stdout.strip().split("(")[0].strip()) == (0, "not running")
    assert _cli(running, "status").returncode == 1  # the check's answer: not running
    # restart on the formatted storage, then the API's view of the same
    assert running.up() == running.bootstrap
    assert running.down() is True
    assert running.down() is False
    assert running.status()["running"] is False


def test_missing_java_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/nonexistent", "SURPLUS_KAFKA_HOME": str(tmp_path / "kafka"),
           "SURPLUS_KAFKA_PORT": str(free_port()), "LANG": "C.UTF-8"}
    done = subprocess.run([*CLI, "kafka", "up"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "java" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = LocalKafka(tmp_path, port, free_port(), progress=lambda _message: None)
        with pytest.raises(UserError, match="already in use"):
            kafka.up()
    assert not kafka.pid_file.exists()


def test_a_broker_that_dies_at_start_up_reports_its_last_words(tmp_path: Path) -> None:
    port, controller_port = _two_ports()
    kafka = LocalKafka(tmp_path, port, controller_port, heap_mb=1,
                       progress=lambda _message: None)
    try:
        with pytest.raises(UserError, match=r"exited during start-up: .*heap"):
            kafka.up(timeout_s=30)
    finally:
        _stop(kafka)
    assert not kafka.pid_file.exists()


def test_missing_jars_without_maven_is_a_user_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    kafka = LocalKafka(tmp_path, jars_dir=tmp_path / "jars", progress=lambda _message: None)
    with pytest.raises(UserError, match="mvn is not on PATH"):
        kafka.ensure_jars()


def test_a_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, *_two_ports(), progress=lambda _message: None)
    tmp_path.mkdir(exist_ok=True)
    kafka.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka JVM
    assert kafka.is_running() is False
    assert kafka.down() is False
    assert not kafka.pid_file.exists()


@pytest.mark.parametrize("command", [[], ["up"], ["down"], ["status"]])
def test_every_command_has_help(command: list[str]) -> None:
    done = subprocess.run([*CLI, "kafka", *command, "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
