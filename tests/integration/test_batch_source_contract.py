"""The BatchSource contract (streams/source.py), held against faust's consumer on the real broker.

What the worker relies on from faust, through `FaustBatchSource` and `run_batches`: every record
of the assigned partitions is handed over once, in offset order per partition, with its key,
value and headers; offsets are committed only after the handler returned, and never when it
raised; a rebalance bumps the generation and the group still ends with every offset committed;
a stop ends the loop without a commit. A faust upgrade that changes the private methods the
adapter uses fails here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from schemas.topics import Topics
from streams.app import SurplusApp, build_app
from streams.batch import Record
from streams.settings import WorkerSettings
from streams.source import BatchSource, FaustBatchSource
from surplus.kafka.connection import KafkaConnection
from tests.e2e.fleet import Message
from tests.e2e.harness import ensure_topics, offsets, publish

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]


class Recorder:
    """A handler that keeps every batch and returns the offsets after its 'write'."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []
        self.gate: asyncio.Event | None = None  # when set, the handler waits for it (a slow write)
        self.fail = False

    @property
    def records(self) -> list[Record]:
        return [r for b in self.batches for r in b]

    async def __call__(self, records: Sequence[Record]) -> dict[TP, int]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("the store is down")
        self.batches.append(list(records))
        out: dict[TP, int] = {}
        for r in records:
            tp = TP(r.topic, r.partition)
            out[tp] = max(out.get(tp, 0), r.offset + 1)
        return out


def settings(bootstrap: str, prefix: str, group: str, tmp: Path) -> WorkerSettings:
    (tmp / "faust" / group).mkdir(parents=True, exist_ok=True)
    return WorkerSettings(kafka=KafkaConnection(bootstrap=bootstrap), topic_prefix=prefix, group_id=group,
                          batch_max_events=40, batch_max_wait_ms=100, partitions=2, session_timeout_s=6,
                          data_dir=tmp / "faust", metrics_interval_s=3600)


async def started(s: WorkerSettings, handler: Recorder) -> SurplusApp:
    app = build_app(s, handler, Topics(s.topic_prefix).telemetry)
    app.finalize()
    await app.start()
    return app


async def until(predicate: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def messages(n: int, start: int = 0) -> list[Message]:
    return [Message("capacity", f"dc-{i % 5}".encode(), b"value-%d" % i) for i in range(start, start + n)]


@pytest.fixture
def world(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> tuple[str, str, str, Path]:
    ensure_topics(kafka_bootstrap, topic_prefix, partitions=2)
    return kafka_bootstrap, topic_prefix, f"g-{uuid.uuid4().hex[:8]}", tmp_path


def test_the_faust_adapter_is_a_batch_source() -> None:
    for name in ("generation", "stopping", "fetch", "commit"):
        assert hasattr(FaustBatchSource, name) and hasattr(BatchSource, name)


def test_every_record_once_in_order_and_committed_only_after_the_handler(world: Any) -> None:
    bootstrap, prefix, group, tmp = world
    publish(bootstrap, prefix, messages(200))
    handler = Recorder()
    handler.gate = asyncio.Event()

    async def scenario() -> tuple[int, int]:
        app = await started(settings(bootstrap, prefix, group, tmp), handler)
        try:
            await asyncio.sleep(5)  # records are fetched; the first batch is held by the slow 'write'
            held = offsets(bootstrap, prefix, group)[0]
            assert handler.gate is not None
            handler.gate.set()
            await until(lambda: len(handler.records) >= 200)
            await until(lambda: offsets(bootstrap, prefix, group)[0] >= 200, 30)
            return held, offsets(bootstrap, prefix, group)[0]
        finally:
            await app.stop()

    held, committed = asyncio.run(scenario())
    assert held == 0, "nothing may be committed before the handler returned"
    assert committed == 200
    records = handler.records
    assert len(records) == 200 and len({(r.partition, r.offset) for r in records}) == 200
    for partition in (0, 1):
        seen = [r.offset for r in records if r.partition == partition]
        assert seen == sorted(seen) and seen == list(range(len(seen)))
    assert {r.value for r in records} == {m.value for m in messages(200)}
    assert all(r.topic == prefix + "capacity" and r.key is not None for r in records)
    assert all(dict(r.headers).get("content-type") == b"application/cloudevents+json" for r in records)


def test_a_handler_that_raises_commits_nothing(world: Any) -> None:
    bootstrap, prefix, group, tmp = world
    publish(bootstrap, prefix, messages(50))
    handler = Recorder()
    handler.fail = True

    async def scenario() -> bool:
        app = await started(settings(bootstrap, prefix, group, tmp), handler)
        try:
            await until(lambda: app.consumer.crash_reason is not None or app.crash_reason is not None)
            await asyncio.sleep(2)  # give a (wrong) commit every chance
            return True
        finally:
            await app.stop()

    assert asyncio.run(scenario())
    assert offsets(bootstrap, prefix, group)[0] == 0


def test_a_rebalance_bumps_the_generation_and_the_group_commits_everything(world: Any) -> None:
    bootstrap, prefix, group, tmp = world
    publish(bootstrap, prefix, messages(100))
    first, second = Recorder(), Recorder()

    async def scenario() -> tuple[int, int]:
        a = await started(settings(bootstrap, prefix, group, tmp / "a"), first)
        try:
            await until(lambda: len(first.records) >= 100)
            generation = a.consumer_generation_id
            b = await started(settings(bootstrap, prefix, group, tmp / "b"), second)
            try:
                await until(lambda: a.consumer_generation_id != generation
                            and len(a.consumer.assignment()) + len(b.consumer.assignment()) >= 10, 90)
                assert a.consumer.assignment().isdisjoint(b.consumer.assignment())
                publish(bootstrap, prefix, messages(100, start=100))
                await until(lambda: offsets(bootstrap, prefix, group)[0] >= 200, 90)
                return generation, a.consumer_generation_id
            finally:
                await b.stop()
        finally:
            await a.stop()

    before, after = asyncio.run(scenario())
    assert after != before
    values = {r.value for r in first.records + second.records}
    assert values == {m.value for m in messages(200)}, "every record reaches one of the two workers"
    assert second.records, "the second worker got partitions of its own"
    committed, end = offsets(bootstrap, prefix, group)
    assert committed == end == 200


def test_a_stop_ends_the_loop_without_a_commit(world: Any) -> None:
    bootstrap, prefix, group, tmp = world
    publish(bootstrap, prefix, messages(30))
    handler = Recorder()
    handler.gate = asyncio.Event()  # never set: the batch is in the handler when the stop comes

    async def scenario() -> float:
        app = await started(settings(bootstrap, prefix, group, tmp), handler)
        await asyncio.sleep(4)
        started_at = time.monotonic()
        await app.stop()
        return time.monotonic() - started_at

    took = asyncio.run(scenario())
    assert took < 30, f"stopping took {took:.1f} s"
    assert handler.records == []
    assert offsets(bootstrap, prefix, group)[0] == 0, "a stop must not commit what was not handled"
