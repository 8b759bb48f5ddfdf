"""A failing ClickHouse insert never advances the committed offset (issue #4: commit after write).

The real faust app and batch consumer run in this process against the real broker; the sink is
the real ClickHouse sink wrapped to fail from a chosen batch on (a fault at the I/O seam).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from schemas.topics import Topics
from streams.app import build_app
from streams.settings import WorkerSettings
from streams.sink import Sink
from streams.worker import Handler
from surplus.kafka.connection import KafkaConnection
from tests.e2e.fleet import BASE, Message, envelope
from tests.e2e.harness import ensure_topics, offsets, publish

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


class FailingSink(Sink):
    """The real sink, failing every write from the `fail_from`-th on, as an unreachable server would
    (waited out for only 0.2 s here, then the worker stops)."""

    def __init__(self, *args: Any, fail_from: int, **kwargs: Any) -> None:
        super().__init__(*args, retries=2, backoff_s=0.01, give_up_s=0.2, **kwargs)
        self.fail_from = fail_from
        self.writes = 0

    def write(self, rows: Any) -> int:
        self.writes += 1
        if self.writes >= self.fail_from:
            def down() -> None:
                raise ConnectionError("ClickHouse is down")
            self._retry(down, "insert")
        return super().write(rows)


def capacity(dc: str, n: int) -> Message:
    event = envelope("cpn.capacity.v1", f"cap-{n}", dc, BASE, {
        "dc_id": dc, "pool_id": "p", "device_model": "nvidia-h100-sxm5-80gb", "devices_total": 8,
        "devices_online": 8, "devices_allocated": n % 8, "interval_s": 60})
    return Message("capacity", dc.encode(), json.dumps(event).encode(), event)


def test_failed_insert_does_not_commit(kafka_bootstrap: str, topic_prefix: str, store: Any, tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, topic_prefix, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = [capacity("dc-a", n) for n in range(50)]
    publish(kafka_bootstrap, topic_prefix, first)
    settings = WorkerSettings(kafka=KafkaConnection(bootstrap=kafka_bootstrap), clickhouse_url=store.url, topic_prefix=topic_prefix,
                              group_id=group, batch_max_events=50, batch_max_wait_ms=200, partitions=1,
                              session_timeout_s=6, data_dir=tmp_path / "faust", metrics_interval_s=3600)
    (tmp_path / "faust" / group).mkdir(parents=True)
    sink = FailingSink(store.client, store.database, fail_from=2)
    handler = Handler(sink=sink, catalogue=load_catalogue(), prices=PriceBook.load(),
                      deadletter_topic=Topics(topic_prefix).deadletter)
    topics = Topics(topic_prefix).telemetry

    async def scenario() -> tuple[int, bool]:
        app = build_app(settings, handler, topics)
        app.finalize()
        await app.start()
        try:
            deadline = time.monotonic() + 60
            while offsets(kafka_bootstrap, topic_prefix, group)[0] < 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            after_first = offsets(kafka_bootstrap, topic_prefix, group)[0]
            publish(kafka_bootstrap, topic_prefix, [capacity("dc-a", n) for n in range(50, 100)])
            deadline = time.monotonic() + 30
            while sink.writes < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # give a (wrong) commit every chance to happen
            crashed = app.crash_reason is not None or app.consumer.crash_reason is not None
            return after_first, sink.writes >= 2 and crashed
        finally:
            await app.stop()

    after_first, failed = asyncio.run(scenario())
    assert after_first == 50, "the first batch was written, so its offsets are committed"
    assert failed, "the second batch's write failed and the worker crashed (to be restarted)"
    committed, end = offsets(kafka_bootstrap, topic_prefix, group)
    assert end == 100
    assert committed == 50, "a failed insert must not advance the committed offset"
    rows = store.rows("SELECT count() FROM {db}.capacity_samples FINAL")
    assert rows[0][0] == 50
