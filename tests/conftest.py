"""Service fixtures: one Kafka broker and one ClickHouse per test session, isolated per test.

Tests declare what they touch: a test without `@pytest.mark.kafka` that asks for the broker
fixture, builds a Kafka client or connects to a broker port fails, and so does a test without
`@pytest.mark.clickhouse` that asks for a store fixture or opens ClickHouse (clickhouse-connect or
chDB). Child processes a test starts are not watched.

Order (STYLE §6): endpoints from TEST_KAFKA_BOOTSTRAP / TEST_CLICKHOUSE_URL; testcontainers
when a Docker engine answers; else the local Kafka broker (the same code as `surplus kafka up`,
on free ports in a temporary directory) and chDB. Each test gets its own topic prefix and
database. Under CI=true a service that cannot be had fails the test; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.services import unavailable

# The test fleets are dated (tests/e2e/fleet.py BASE): keep their raw samples whatever today's
# date (raw and minute state), as ClickHouse drops rows past their TTL as it writes them. Retention has its own test
# (tests/integration/test_relations_exact.py), which migrates with the default 35 days. 20000 is
# the most a DateTime TTL can add without wrapping round to the past (surplus/migrations.py).
os.environ.setdefault("SURPLUS_RAW_RETENTION_DAYS", "20000")
os.environ.setdefault("SURPLUS_MINUTE_RETENTION_DAYS", "20000")

# Property tests prove invariants, not speed: no per-example deadline (a loaded 2-core CI machine
# would turn hypothesis's 200 ms default into a timed assertion).
hypothesis_settings.register_profile("surplus", deadline=None)
hypothesis_settings.load_profile("surplus")

SERVICE_FIXTURES = {
    "kafka": {"kafka_bootstrap"},
    "clickhouse": {"clickhouse_url", "clickhouse_client", "store"},
}
KAFKA_PORTS: set[int] = set()  # of the brokers the session uses (the guard refuses connects to them)


class UndeclaredService(AssertionError):
    """A test touched Kafka or ClickHouse without the marker that says so."""


def _refuse(what: str, marker: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise UndeclaredService(f"this test opens {what} but is not marked @pytest.mark.{marker}")
    return refuse


def _block_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import sys

    import confluent_kafka
    import confluent_kafka.admin

    originals = {confluent_kafka.Producer: "a Kafka producer", confluent_kafka.Consumer: "a Kafka consumer",
                 confluent_kafka.admin.AdminClient: "a Kafka admin client"}
    for module in list(sys.modules.values()):  # also the names bound by `from confluent_kafka import X`
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or getattr(module, "__name__", "").startswith("confluent_kafka._"):
            continue
        for name, value in list(namespace.items()):
            if isinstance(value, type) and value in originals:
                monkeypatch.setattr(module, name, _refuse(originals[value], "kafka"))
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def to_kafka(address: Any) -> bool:
        return isinstance(address, tuple) and len(address) >= 2 and address[1] in KAFKA_PORTS

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if to_kafka(address):
            _refuse(f"a connection to the Kafka broker {address}", "kafka")()
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        if to_kafka(address):
            _refuse(f"a connection to the Kafka broker {address}", "kafka")()
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


def _block_clickhouse(monkeypatch: pytest.MonkeyPatch) -> None:
    import clickhouse_connect
    import clickhouse_connect.driver

    monkeypatch.setattr(clickhouse_connect, "get_client", _refuse("ClickHouse", "clickhouse"))
    monkeypatch.setattr(clickhouse_connect.driver, "create_client", _refuse("ClickHouse", "clickhouse"))
    try:
        import chdb
    except ImportError:
        return
    for name in ("connect", "query", "session"):
        if hasattr(chdb, name):
            monkeypatch.setattr(chdb, name, _refuse("chDB", "clickhouse"))


@pytest.fixture(autouse=True)
def _declared_services(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that touches Kafka or ClickHouse without its marker (see the module doc)."""
    marked = {m.name for m in request.node.iter_markers()}
    for marker, fixtures in SERVICE_FIXTURES.items():
        used = fixtures & set(request.fixturenames)
        if used and marker not in marked:
            pytest.fail(f"{request.node.nodeid} uses {', '.join(sorted(used))} but is not marked "
                        f"@pytest.mark.{marker}", pytrace=False)
    if "kafka" not in marked:
        _block_kafka(monkeypatch)
    if "clickhouse" not in marked:
        _block_clickhouse(monkeypatch)


def _docker_answers() -> bool:
    if not (Path("/var/run/docker.sock").exists() or os.environ.get("DOCKER_HOST")):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka bootstrap address shared by the whole session."""
    if os.environ.get("TEST_KAFKA_BOOTSTRAP"):
        KAFKA_PORTS.update(_ports(os.environ["TEST_KAFKA_BOOTSTRAP"]))
        yield os.environ["TEST_KAFKA_BOOTSTRAP"]
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            KAFKA_PORTS.update(_ports(container.get_bootstrap_server()))
            yield container.get_bootstrap_server()
        return
    from surplus.errors import UserError
    from surplus.kafka.local import LocalKafka
    from surplus.kafka.ports import free_port

    home = tmp_path_factory.mktemp("kafka")
    broker = LocalKafka(home, port=free_port(), controller_port=free_port(), heap_mb=768,
                        progress=lambda _msg: None)
    try:
        bootstrap = broker.up(timeout_s=120)
    except UserError as exc:
        unavailable(f"local Kafka broker did not start: {exc}")
        return
    KAFKA_PORTS.update(_ports(bootstrap))
    try:
        yield bootstrap
    finally:
        broker.down(timeout_s=15)


def _ports(bootstrap: str) -> set[int]:
    return {int(hp.rsplit(":", 1)[1]) for hp in bootstrap.split(",") if ":" in hp}


@dataclass
class Store:
    """A ClickHouse store for one test: url, database and an open client."""

    url: str
    database: str
    client: Any

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql.replace("{db}", self.database)).result_rows)

    def dicts(self, sql: str) -> list[dict[str, Any]]:
        result = self.client.query(sql.replace("{db}", self.database))
        return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("TEST_CLICKHOUSE_URL"):
        yield os.environ["TEST_CLICKHOUSE_URL"]
        return
    if _docker_answers():
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer() as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(8123)
            yield f"http://{container.username}:{container.password}@{host}:{port}/default"
        return
    yield f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_url: str) -> Any:
    from surplus.errors import UserError
    from surplus.store import connect

    try:
        client, _ = connect(clickhouse_url)
    except UserError as exc:
        unavailable(f"ClickHouse unavailable: {exc}")
    return client


@pytest.fixture
def store(clickhouse_url: str, clickhouse_client: Any) -> Iterator[Store]:
    """A freshly migrated database of its own, dropped after the test."""
    from surplus.store import migrate

    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database)
    yield Store(url=_with_database(clickhouse_url, database), database=database, client=clickhouse_client)
    with contextlib.suppress(Exception):
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database}")


def _with_database(url: str, database: str) -> str:
    if url.startswith("chdb://"):
        return f"{url.split('?')[0]}?database={database}"
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{database}"


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}."


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long load tests run only when asked for by marker (`make loadtest`: `-m loadtest`),
    whatever else selects them (`make test`, a bare `pytest`)."""
    if "loadtest" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("loadtest") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("loadtest") is not None])
        items[:] = kept
