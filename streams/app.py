"""build_app(settings, handler) -> faust.App whose consumer hands whole batches to the handler. Wiring.

faust gives the worker its consumer group, partition assignment, rebalancing, producer and
service lifecycle. Its per-event path (a Message, a task pair from `wait_first`, a conductor
hop, an Event and a stream queue for every record) is what limited a faust worker to a few
thousand events a second; profiled, almost none of that time was Kafka or ClickHouse. So the
consumer here replaces only the drain loop with `streams.source.run_batches` over a
`FaustBatchSource` (the seam: the only code touching faust's private consumer methods): records
go from aiokafka's `getmany` to the handler a batch at a time, and the offsets the handler
returns are committed after ClickHouse (and the dead-letter topic) took the batch. A `WorkerStop`
raised by the handler (e.g. the dead-letter guard) is logged as one line and stops the worker
with nothing of that batch committed. Nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.settings import WorkerSettings
from streams.source import BatchHandler, FaustBatchSource, run_batches
from surplus.errors import WorkerStop
from surplus.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)



class BatchConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, draining records into batches (streams/source.py) instead of
    one event at a time."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by faust
        app = cast(SurplusApp, self.app)
        settings = app.surplus_settings
        try:
            await run_batches(FaustBatchSource(self, fetcher), app.surplus_handler,
                              max_events=settings.batch_max_events,
                              max_wait_s=settings.batch_max_wait_ms / 1000)
        except WorkerStop as exc:
            # a reason to stop the whole worker, said once; the crash stops faust without a commit
            log.error("%s", exc)
            app.surplus_stop_reason = exc
            raise
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
    surplus_stop_reason: WorkerStop | None = None
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
        topic_replication_factor=settings.replication_factor or 1,  # faust declares no topic here
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=10**12,  # commits are ours, after the write
        broker_commit_interval=3600.0,
        broker_max_poll_records=max(500, settings.batch_max_events),
        consumer_max_fetch_size=settings.fetch_max_partition_bytes,
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
