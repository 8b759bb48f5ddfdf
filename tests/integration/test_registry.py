"""A throw-away event type added through the registry alone is routed, stored and counted.

No code of the agent, the topics, decode, the batch dispatch or the sink is touched: the type is
one `EventType` (its models, topic, table and columns) and its table is created here, as its
migration would. The real faust worker app consumes it from the real broker into ClickHouse.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from agents.records import TOPIC_OF_KIND, build, to_record
from schemas import registry
from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.events import Ident, NonNegFloat, Strict, _Envelope
from schemas.prices import PriceBook
from schemas.registry import EventType
from schemas.topics import Topics
from streams.app import build_app
from streams.batch import Record, process, tables
from streams.settings import WorkerSettings
from streams.sink import SchemaDrift, Sink
from streams.worker import Handler
from surplus.kafka.admin import ensure_topics
from surplus.kafka.connection import KafkaConnection

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


class Probe(Strict):
    """`cpn.probe.v1`: a made-up reading, only for this test."""

    dc_id: Ident
    reading_c: NonNegFloat


class ProbeEvent(_Envelope):
    type: Literal["cpn.probe.v1"]
    data: Probe


PROBE = EventType("cpn.probe.v1", ProbeEvent, Probe, topic="probe", table="probe_samples",
                  columns=("dc_id", "event_id", "time", "reading_c", "received_at"), kind=250, short="prb")
PROBE_TABLE = """CREATE TABLE {db}.probe_samples (dc_id LowCardinality(String), event_id String,
    time DateTime64(3, 'UTC'), reading_c Float64, received_at DateTime64(3, 'UTC'))
    ENGINE = ReplacingMergeTree ORDER BY (dc_id, event_id)"""
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def probe(n: int) -> dict[str, Any]:
    return build("cpn.probe.v1", T0 + timedelta(seconds=n), Probe(dc_id="dc-a", reading_c=20.0 + n))


def test_the_registry_is_the_only_place_a_type_is_declared() -> None:
    with registry.registered(PROBE):
        assert TOPIC_OF_KIND[250] == "probe" and "probe_samples" in tables()
        assert "cpn.x.probe" in Topics("cpn.x.").telemetry
        event = probe(0)
        assert event["id"] == "prb-1795737600000"  # the id prefix is the registered short name
        raw = to_record(event)[3]
        decoded = decode(raw, now=T0 + timedelta(hours=1), key=b"dc-a")
        assert isinstance(decoded, ProbeEvent)
        batch = process([Record("cpn.probe", 0, 0, b"dc-a", raw)], now=T0 + timedelta(hours=1),
                        catalogue=load_catalogue())
        assert batch.accepted == {"cpn.probe.v1": 1}
        assert batch.rows["probe_samples"][0]["reading_c"] == 20.0
    assert "probe_samples" not in tables() and 250 not in TOPIC_OF_KIND
    with pytest.raises(ValueError, match=r"kind 1 is cpn\.capacity\.v1"):
        registry.register(EventType("cpn.other.v1", ProbeEvent, Probe, topic="probe", table="x",
                                    columns=PROBE.columns, kind=1, short="oth"))
    with pytest.raises(ValueError, match="neither envelope nor data"):
        EventType("cpn.other.v1", ProbeEvent, Probe, topic="probe", table="x",
                  columns=("dc_id", "nonsense"), kind=251, short="oth")


def test_a_registered_type_is_routed_stored_and_counted(
    kafka_bootstrap: str, topic_prefix: str, store: Any, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    with registry.registered(PROBE):
        topics = Topics(topic_prefix)
        ensure_topics(kafka_bootstrap, [*topics.telemetry, topics.deadletter], partitions=1)
        sink = Sink(store.client, store.database, retries=1, backoff_s=0.1)
        with pytest.raises(SchemaDrift, match="probe_samples is missing"):
            sink.check_schema()
        store.client.command(PROBE_TABLE.replace("{db}", store.database))  # its migration
        sink.check_schema()

        producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
        for n in range(30):
            kind, _, key, value = to_record(probe(n))
            producer.produce(topics.name(TOPIC_OF_KIND[kind]), value, key=key)  # as the agent routes
        assert producer.flush(30) == 0

        group = f"g-{uuid.uuid4().hex[:8]}"
        settings = WorkerSettings(kafka=KafkaConnection(bootstrap=kafka_bootstrap), clickhouse_url=store.url,
                                  topic_prefix=topic_prefix, group_id=group, batch_max_events=50,
                                  batch_max_wait_ms=200, partitions=1, session_timeout_s=6,
                                  data_dir=tmp_path / "faust", metrics_interval_s=3600)
        (tmp_path / "faust" / group).mkdir(parents=True)
        handler = Handler(sink=sink, catalogue=load_catalogue(), prices=PriceBook.load(),
                          deadletter_topic=topics.deadletter,
                          clock=lambda: T0 + timedelta(hours=1))

        async def run() -> None:
            app = build_app(settings, handler, topics.telemetry)
            app.finalize()
            await app.start()
            try:
                deadline = time.monotonic() + 60
                while handler.metrics.accepted["cpn.probe.v1"] < 30 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await handler.flush_metrics()
            finally:
                await app.stop()

        asyncio.run(run())
    assert handler.metrics.accepted == {"cpn.probe.v1": 30}
    assert store.rows("SELECT count(), sum(reading_c) FROM {db}.probe_samples FINAL") == [
        (30, sum(20.0 + n for n in range(30)))]
    counted = store.rows("SELECT max(value) FROM {db}.pipeline_metrics "
                         "WHERE metric = 'accepted' AND label = 'cpn.probe.v1'")
    assert counted == [(30.0,)]
    assert store.rows("SELECT count() FROM {db}.dead_letters") == [(0,)]


def test_a_store_that_drifted_from_the_registry_is_named_at_start(store: Any) -> None:
    sink = Sink(store.client, store.database, retries=0)
    sink.check_schema()  # the migrated store is what the registry writes
    store.client.command(f"ALTER TABLE {store.database}.capacity_samples ADD COLUMN note String DEFAULT ''")
    sink.check_schema()  # a column ClickHouse fills itself is not drift
    store.client.command(f"ALTER TABLE {store.database}.capacity_samples DROP COLUMN online_pflops_fp64")
    store.client.command(f"ALTER TABLE {store.database}.heartbeats ADD COLUMN firmware String")
    with pytest.raises(SchemaDrift) as caught:
        sink.check_schema()
    message = str(caught.value)
    assert "capacity_samples lacks online_pflops_fp64" in message
    assert "heartbeats has firmware that the worker does not write" in message
    assert "\n" not in message
