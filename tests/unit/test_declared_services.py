"""Tests declare what they touch: without its marker, a test cannot open Kafka or ClickHouse
(tests/conftest.py blocks the clients; this test is unmarked, so the blocks are on here)."""

from __future__ import annotations

import socket

import pytest

from tests import conftest
from tests.conftest import UndeclaredService


def test_clickhouse_cannot_be_opened_without_the_marker(tmp_path: object) -> None:
    import clickhouse_connect

    from surplus.store import connect

    with pytest.raises(UndeclaredService, match=r"mark\.clickhouse"):
        clickhouse_connect.get_client(dsn="chdb:///nowhere")
    with pytest.raises(UndeclaredService, match=r"mark\.clickhouse"):
        connect(f"chdb://{tmp_path}/store")


def test_kafka_clients_cannot_be_built_without_the_marker() -> None:
    import confluent_kafka
    import confluent_kafka.admin

    from agents import publisher

    for make in (confluent_kafka.Producer, confluent_kafka.Consumer, confluent_kafka.admin.AdminClient,
                 publisher.Producer):
        with pytest.raises(UndeclaredService, match=r"mark\.kafka"):
            make({"bootstrap.servers": "127.0.0.1:9"})


def test_a_broker_port_cannot_be_connected_to_without_the_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setattr(conftest, "KAFKA_PORTS", {port})
        with socket.socket() as client, pytest.raises(UndeclaredService, match=r"mark\.kafka"):
            client.connect(("127.0.0.1", port))


@pytest.mark.clickhouse
def test_the_marker_lifts_the_block() -> None:
    import clickhouse_connect

    assert clickhouse_connect.get_client.__name__ != "refuse"
