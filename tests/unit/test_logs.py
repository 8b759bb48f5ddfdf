"""One line per state change of a service (surplus/logs.py): librdkafka's repeats, aiokafka's
`Group Coordinator Request failed`, faust's and mode's noise, with the detail at DEBUG (issue #16)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from surplus import logs

CONNECT = ("%s [%s] %s", "FAIL", "rdkafka#producer-1", "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: "
           "Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)")


class Tick:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger as a command sets it up (configure), writing into a string."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield out
    for handler in root.handlers[:]:
        if getattr(handler, "_surplus", False):
            root.removeHandler(handler)
    root.setLevel(level)


def captured(name: str, level: int) -> tuple[io.StringIO, logging.Logger]:
    """A logger of its own at `level`, writing bare messages into a string."""
    out = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers[:] = [logging.StreamHandler(out)]
    logger.propagate, logger.level = False, level
    return out, logger


def lines(out: io.StringIO) -> list[str]:
    return [ln.split(": ", 1)[1] for ln in out.getvalue().splitlines()]


def test_reasons_are_short() -> None:
    assert logs.reason(CONNECT[3]) == "Connection refused"
    assert logs.reason("1/1 brokers are down") == "all brokers are down"
    assert logs.reason("Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 1)") \
        == "Connect call failed"
    assert logs.reason("Group Coordinator Request failed: [Error 15] CoordinatorNotAvailableError").startswith(
        "the group coordinator is not ready yet")
    assert logs.classify("Failed to acquire idempotence PID from broker x/1: Coordinator load in progress") \
        == logs.NOT_READY_STATE
    assert logs.classify("Connect to ipv4#127.0.0.1:1 failed: Connection refused") == logs.UNREACHABLE_STATE
    assert logs.classify("Subscribed to topic(s): cpn.capacity") is None


def test_302_librdkafka_lines_are_one_and_back_is_one_more() -> None:
    out, logger = captured("test.service.librdkafka", logging.INFO)
    mono = Tick()
    hooks = logs.LibrdkafkaLog(logs.ServiceWatch("Kafka 127.0.0.1:1", logger=logger, monotonic=mono),
                               logger=logger)
    for i in range(302):  # what a worker printed in its 15 s against a closed port
        mono.t = i / 20
        hooks.log(logging.ERROR, *CONNECT)
        hooks.error("_TRANSPORT", "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused")
        hooks.error("_ALL_BROKERS_DOWN", "1/1 brokers are down")
    mono.t = 63
    assert hooks.service.ok() and not hooks.service.ok()
    assert out.getvalue().splitlines() == ["Kafka 127.0.0.1:1 unreachable: Connection refused",
                                           "Kafka 127.0.0.1:1 reachable again after 63 s"]
    assert hooks.errors == 604


CLUSTER = "127.0.0.1:39092,127.0.0.1:39093,127.0.0.1:39094"
DOWN_2 = ("%s [%s] %s", "FAIL", "rdkafka#producer-1", "[thrd:127.0.0.1:39093/2]: 127.0.0.1:39093/2: Connect to "
          "ipv4#127.0.0.1:39093 failed: Connection refused (after 0ms in state CONNECT, 4 identical error(s) "
          "suppressed)")


def test_one_broker_of_a_cluster_down_is_that_brokers_line_not_the_clusters() -> None:
    out, logger = captured("test.service.cluster", logging.INFO)
    mono = Tick()
    watch = logs.ServiceWatch(logs.kafka_service(CLUSTER), logger=logger, monotonic=mono)
    hooks = logs.LibrdkafkaLog(watch, logger=logger)
    assert watch.brokers == 3
    for i in range(200):  # librdkafka retrying the dead broker for 100 s
        mono.t = i / 2
        hooks.log(logging.ERROR, *DOWN_2)
        hooks.error("_TRANSPORT", DOWN_2[3].split("]: ", 1)[1])
        hooks.log(logging.WARNING, "%s [%s] %s", "FAIL", "rdkafka#producer-1",
                  "[thrd:127.0.0.1:39093/2]: 127.0.0.1:39093/2: Disconnected (after 8ms in state UP)")
    assert watch.up and not watch.ok()  # the service never went down: no "reachable again"
    assert out.getvalue().splitlines() == [
        f"Kafka {CLUSTER}: broker 127.0.0.1:39093/2 unreachable: Connection refused; the other 2 brokers of "
        "the cluster carry on"]
    mono.t = 100 + logs.BROKER_REPEAT_S  # still failing five minutes on: said again
    hooks.log(logging.ERROR, *DOWN_2)
    assert len(out.getvalue().splitlines()) == 2
    # every broker down is the cluster down, and back is one line
    hooks.error("_ALL_BROKERS_DOWN", "3/3 brokers are down")
    mono.t += 30
    assert watch.ok()
    assert out.getvalue().splitlines()[2:] == [f"Kafka {CLUSTER} unreachable: all brokers are down",
                                               f"Kafka {CLUSTER} reachable again after 30 s"]


def test_aiokafka_losing_one_broker_of_a_cluster_names_it(stream: io.StringIO) -> None:
    logs.configure("info", stream=stream, kafka=CLUSTER)
    client = logging.getLogger("aiokafka.client")
    for _ in range(50):
        client.error("Unable connect to node with id 2: [Errno 111] Connect call failed ('127.0.0.1', 39093)")
        client.warning("Unable to request metadata from node with id 2: KafkaConnectionError()")
    assert lines(stream) == [f"Kafka {CLUSTER}: broker node 2 unreachable: Connect call failed; the other 2 brokers of the "
                             "cluster carry on"]
    assert logs.watch(logs.kafka_service(CLUSTER)).up
    client.error("Unable to update metadata from [1, 2, 3]")  # none answered: the cluster
    assert lines(stream)[-1] == f"Kafka {CLUSTER} unreachable: Unable to update metadata from [1, 2, 3]"


def test_the_broker_a_text_names() -> None:
    assert logs.broker_of(DOWN_2[3]) == "127.0.0.1:39093/2"
    assert logs.broker_of("127.0.0.1:39092/bootstrap: Connect to ipv4#127.0.0.1:39092 failed") \
        == "127.0.0.1:39092/bootstrap"
    assert logs.broker_of('Unable connect to "127.0.0.1:39094": [Errno 111] Connect call failed') \
        == "127.0.0.1:39094"
    assert logs.broker_of("Failed fetch messages from 2: [Error 7] RequestTimedOutError") == "node 2"
    assert logs.broker_of("Error sending OffsetCommitRequest to node 3 [NodeNotReadyError: Attempt to send a "
                          "request to node which is not ready (node id 3).] -- marking coordinator dead") == "node 3"
    assert logs.reason("Failed fetch messages from 3: KafkaConnectionError: Connection at 127.0.0.1:44861 closed") \
        == "Connection at 127.0.0.1:44861 closed"
    assert logs.broker_of("3/3 brokers are down") is None
    assert logs.broker_of("Unable to update metadata from [1, 2]") is None
    assert logs.members_of("Kafka a:1,b:2") == 2 and logs.members_of("Kafka a:1") == 1
    assert logs.members_of("ClickHouse http://x:8123") == 1


def test_the_detail_is_at_debug() -> None:
    out, logger = captured("test.service.debug", logging.DEBUG)
    hooks = logs.LibrdkafkaLog(logs.ServiceWatch("Kafka x:1", logger=logger), logger=logger)
    for _ in range(5):
        hooks.log(logging.ERROR, *CONNECT)
    text = out.getvalue().splitlines()
    assert text.count("Kafka x:1 unreachable: Connection refused") == 1
    assert sum("Connect to ipv4#127.0.0.1:1 failed" in ln for ln in text) == 5


def test_aiokafka_on_a_fresh_broker_is_not_ready_then_ready(stream: io.StringIO) -> None:
    logs.configure("info", stream=stream, kafka="127.0.0.1:29092")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    for _ in range(40):
        coordinator.error("Group Coordinator Request failed: [Error 15] CoordinatorNotAvailableError")
    coordinator.info("Discovered coordinator 1 for group surplus-workers")
    coordinator.info("Joined group 'surplus-workers' (generation 1) with member_id x")
    logging.getLogger("streams.worker").info("worker w1: 0 events")  # ours: untouched
    assert lines(stream) == [
        "Kafka 127.0.0.1:29092 not ready yet: the group coordinator is not ready yet (a new broker "
        "creates __consumer_offsets first)",
        "Kafka 127.0.0.1:29092 ready",
        "worker w1: 0 events"]


def test_aiokafka_unreachable_is_one_line_and_its_other_warnings_once(stream: io.StringIO) -> None:
    logs.configure("info", stream=stream, kafka="127.0.0.1:1")
    conn = logging.getLogger("aiokafka.conn")
    client = logging.getLogger("aiokafka.client")
    for _ in range(100):
        conn.error("Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 1)")
        client.error("Unable to update metadata from [1]")
        logging.getLogger("mode.services").warning("[^Worker]: odd thing 7 happened")
    assert lines(stream) == ["Kafka 127.0.0.1:1 unreachable: Connect call failed",
                             "[^Worker]: odd thing 7 happened"]


def test_debug_keeps_every_record(stream: io.StringIO) -> None:
    logs.configure("debug", stream=stream, kafka="127.0.0.1:2")
    for _ in range(10):
        logging.getLogger("aiokafka.conn").error("Unable connect to node with id 1: [Errno 111] Connect call failed")
    got = lines(stream)
    assert got.count("Kafka 127.0.0.1:2 unreachable: Connect call failed") == 1
    assert sum("Unable connect" in ln for ln in got) == 10


@pytest.mark.kafka
def test_a_real_client_against_a_closed_port_says_one_line(capfd: pytest.CaptureFixture[str],
                                                           stream: io.StringIO) -> None:
    """librdkafka itself (not a copy of its words): its logs come through the hooks, none on fd 2."""
    import time

    from confluent_kafka import Producer

    from surplus.kafka.admin import client_config
    from surplus.kafka.ports import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    logs.configure("info", stream=stream)
    producer = Producer(client_config(bootstrap, {"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 50}))
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        producer.poll(0.1)
    assert lines(stream) == [f"Kafka {bootstrap} unreachable: Connection refused"]
    assert capfd.readouterr().err == ""
