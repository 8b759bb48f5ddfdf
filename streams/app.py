"""build_app(settings, handler) -> faust.App whose consumer hands whole batches to the handler. Wiring.

faust gives the worker its consumer group, partition assignment, rebalancing, producer and
service lifecycle. Its per-event path (a Message, a task pair from `wait_first`, a conductor
hop, an Event and a stream queue for every record) is what limited a faust worker to a few
thousand events a second; profiled, almost none of that time was Kafka or ClickHouse. So the
consumer here replaces only the drain loop: records go from aiokafka's `getmany` to the
handler a batch at a time, and offsets are committed by the handler after ClickHouse (and the
dead-letter topic) took the batch. Nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.batch import Record
from streams.settings import WorkerSettings
from surplus.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)

# records (in arrival order per partition) -> the offsets to commit once they are durable
BatchHandler = Callable[[Sequence[Record]], Awaitable[dict[TP, int]]]


class BatchConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, draining records into batches instead of one event at a time."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by faust
        app = cast(SurplusApp, self.app)
        settings = app.surplus_settings
        handler = app.surplus_handler
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        max_events = settings.batch_max_events
        max_wait = settings.batch_max_wait_ms / 1000
        pending: list[Record] = []
        first_at = 0.0
        generation = app.consumer_generation_id
        try:
            while not (stopped() or fetcher_stopped()):
                records, _ = await self._wait_next_records(timeout=min(max_wait, 1.0))
                if self.should_stop:
                    break
                if app.consumer_generation_id != generation:
                    # a rebalance happened: what we hold may belong to another worker now;
                    # drop it uncommitted (it will be read again by its owner)
                    pending.clear()
                    generation = app.consumer_generation_id
                got = 0
                for tp, batch in (records or {}).items():
                    floor = read_offset.get(tp)
                    for rec in batch:
                        if floor is not None and rec.offset < floor:
                            continue
                        pending.append(
                            Record(
                                rec.topic,
                                rec.partition,
                                rec.offset,
                                rec.key,
                                rec.value if rec.value is not None else b"",
                                tuple(rec.headers or ()),
                            )
                        )
                        got += 1
                    if batch:
                        read_offset[tp] = batch[-1].offset + 1
                if got and len(pending) == got:
                    first_at = time.monotonic()
                if pending and (
                    len(pending) >= max_events or got == 0 or time.monotonic() - first_at >= max_wait
                ):
                    offsets = await handler(pending)
                    pending = []
                    if app.consumer_generation_id == generation and offsets:
                        await self._commit_offsets(offsets)
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


class SurplusApp(faust.App):
    """faust.App with the batch consumer; carries the worker's settings and handler."""

    surplus_settings: WorkerSettings
    surplus_handler: BatchHandler
    on_stop_hooks: list[Callable[[], Awaitable[None]]]

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        for hook in self.on_stop_hooks:  # e.g. the last metrics, while ClickHouse is still open
            try:
                await hook()
            except Exception as exc:
                log.warning("stop hook %s failed: %s", getattr(hook, "__name__", hook), exc)
        await super().on_stop()


def tune_gc() -> None:
    """A batch allocates tens of thousands of short-lived objects (events, rows, columns); with
    CPython's default gen-0 threshold (700) the cyclic collector runs hundreds of times per batch
    and took a third of the handler's time in profiles. Raise it: the worker's objects are acyclic."""
    gc.set_threshold(100_000, 50, 50)


def build_app(settings: WorkerSettings, handler: BatchHandler, topics: Sequence[str]) -> SurplusApp:
    """A faust app subscribed to `topics` that delivers batches of raw records to `handler`."""
    tune_gc()
    app = SurplusApp(
        settings.group_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=credentials(settings.kafka),
        web_enabled=False,
        autodiscover=False,
        store="memory://",
        datadir=str(settings.data_dir / settings.group_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=10**12,  # commits are ours, after the write
        broker_commit_interval=3600.0,
        broker_max_poll_records=max(500, min(settings.batch_max_events, 10_000)),
        broker_max_poll_interval=300.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s),
        stream_wait_empty=False,
        producer_acks=-1,
        producer_linger_ms=5,
    )
    app.surplus_settings = settings
    app.surplus_handler = handler
    app.on_stop_hooks = []
    for name in topics:
        app.topics.add(
            app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
        )
    return app


def credentials(kafka: KafkaConnection) -> Any:
    """faust's broker credentials for the connection (None for PLAINTEXT)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = kafka.ssl_context()
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)
