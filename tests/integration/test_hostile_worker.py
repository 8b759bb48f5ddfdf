"""No input the broker accepts stops a worker (SPEC §3, issue #21).

The real faust app and batch consumer run in this process against the real broker and the real
ClickHouse sink. Into one partition shared with normal traffic go a value at the broker's own
maximum message size and a compressed "bomb" (64 MiB of zeros that zstd packs into a few KiB);
the worker dead-letters both (their first 64 KiB, with an `original_size` header), commits past
them, and counts every other record of the batch exactly.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from schemas.decode import MAX_BYTES
from schemas.topics import Topics
from streams.runtime import prepare
from streams.settings import WorkerSettings
from surplus.kafka.connection import KafkaConnection
from tests.e2e.fleet import BASE, Message, envelope
from tests.e2e.harness import ensure_topics, offsets, publish

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

BOMB_BYTES = 64 * 1024 * 1024


def capacity(dc: str, n: int) -> Message:
    event = envelope("cpn.capacity.v1", f"cap-{n}", dc, BASE, {
        "dc_id": dc, "pool_id": "p", "device_model": "nvidia-h100-sxm5-80gb", "devices_total": 8,
        "devices_online": 8, "devices_allocated": n % 8, "interval_s": 60})
    return Message("capacity", dc.encode(), json.dumps(event).encode(), event)


def broker_max_message_bytes(bootstrap: str, topic: str) -> int:
    """The largest record batch the broker accepts on this topic (`max.message.bytes`)."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    return int(configs["max.message.bytes"].value)


def produce_hostile(bootstrap: str, topic: str, key: bytes, value: bytes, compression: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": compression,
                         "message.max.bytes": 200_000_000, "batch.size": 1_000_000_000 // 2,
                         "linger.ms": 0})
    errors: list[Any] = []
    producer.produce(topic, value, key=key, on_delivery=lambda err, _m: errors.append(err))
    assert producer.flush(60) == 0
    assert errors == [None], f"the broker refused the hostile record: {errors}"


def test_oversize_and_bomb_are_dead_lettered_and_the_rest_counted(
    kafka_bootstrap: str, topic_prefix: str, store: Any, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer

    ensure_topics(kafka_bootstrap, topic_prefix, partitions=1)
    topics = Topics(topic_prefix)
    capacity_topic = topics.name("capacity")
    limit = broker_max_message_bytes(kafka_bootstrap, capacity_topic)
    # a value as large as the broker takes uncompressed (batch and record overhead left aside)
    at_max = b"{" + b"x" * (limit - 200) + b"}"
    bomb = b"\0" * BOMB_BYTES

    publish(kafka_bootstrap, topic_prefix, [capacity("dc-a", n) for n in range(30)])
    produce_hostile(kafka_bootstrap, capacity_topic, b"dc-a", at_max, "none")
    publish(kafka_bootstrap, topic_prefix, [capacity("dc-a", n) for n in range(30, 60)])
    produce_hostile(kafka_bootstrap, capacity_topic, b"dc-a", bomb, "zstd")
    publish(kafka_bootstrap, topic_prefix, [capacity("dc-a", n) for n in range(60, 90)])
    total = 92

    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(kafka=KafkaConnection(bootstrap=kafka_bootstrap), clickhouse_url=store.url, topic_prefix=topic_prefix,
                              group_id=group, batch_max_events=500, batch_max_wait_ms=300, partitions=1,
                              session_timeout_s=6, data_dir=tmp_path / "faust", metrics_interval_s=3600)
    (tmp_path / "faust" / group).mkdir(parents=True)

    async def scenario() -> tuple[int, bool]:
        # the worker's own wiring (producer, dead letters), built inside the loop it runs on
        app = prepare(settings, migrate_store=False).app
        app.finalize()
        await app.start()
        try:
            deadline = time.monotonic() + 90
            while offsets(kafka_bootstrap, topic_prefix, group)[0] < total and time.monotonic() < deadline:
                if app.crash_reason is not None or app.consumer.crash_reason is not None:
                    break
                await asyncio.sleep(0.2)
            crashed = app.crash_reason is not None or app.consumer.crash_reason is not None
            return offsets(kafka_bootstrap, topic_prefix, group)[0], crashed
        finally:
            await app.stop()

    committed, crashed = asyncio.run(scenario())
    assert not crashed, "no record the broker accepted may stop the worker"
    assert committed == total, "the worker commits past the hostile records"
    assert store.rows("SELECT count() FROM {db}.capacity_samples FINAL")[0][0] == 90
    reasons = store.rows("SELECT reason, length(payload) FROM {db}.deadletter ORDER BY offset")
    assert [r[0] for r in reasons] == ["too_large", "too_large"]

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dl-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topics.deadletter])
    letters: list[Any] = []
    deadline = time.monotonic() + 30
    while len(letters) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            letters.append(msg)
    consumer.close()
    assert len(letters) == 2
    sizes = []
    for msg in letters:
        headers = dict(msg.headers())
        assert headers["reason"] == b"too_large"
        assert len(msg.value()) == MAX_BYTES, "the dead-letter copy keeps the first 64 KiB"
        sizes.append(int(headers["original_size"]))
    assert letters[0].value() == at_max[:MAX_BYTES]
    assert sizes == [len(at_max), BOMB_BYTES]
