"""Assemble and run a worker: store, topics, price book, handler, faust app. Wiring."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook, PriceBookError
from schemas.topics import Topics
from streams.app import SurplusApp, build_app
from streams.guard import DeadLetterGuard
from streams.settings import WorkerSettings
from streams.sink import SchemaDrift, Sink
from streams.worker import Handler
from surplus import logs
from surplus.errors import UserError, WorkerStop
from surplus.kafka.admin import ensure_topics
from surplus.paths import make_dir
from surplus.store import connect, migrate

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    settings: WorkerSettings
    app: SurplusApp
    handler: Handler


def unsigned_warning(settings: WorkerSettings) -> str | None:
    """The one warning a worker gives at start when it takes unsigned events from a secured broker.

    On a SASL/TLS broker each DC has its own principal, which suggests the platform relies on it;
    but without SURPLUS_SIGNING_KEYS any DC's principal may publish events naming another DC (and
    bill its tenants): the ACLs limit topics, not the `dc_id` inside. None when signing is on or
    the broker is PLAINTEXT (a local or test set-up)."""
    if settings.signing_keys is not None or settings.kafka.security_protocol == "PLAINTEXT":
        return None
    return ("SIGNING IS OFF on a secured broker (KAFKA_SECURITY_PROTOCOL="
            f"{settings.kafka.security_protocol}): events are accepted unsigned, so any DC's principal "
            "can publish another DC's events and bill its tenants; set SURPLUS_SIGNING_KEYS "
            "(deploy/kafka/acls.md)")


def prepare(settings: WorkerSettings, *, migrate_store: bool = True) -> Prepared:
    """Everything a worker needs, checked up front: a bad setting or a dead service is one line."""
    try:
        prices = PriceBook.load(settings.price_book)
    except (PriceBookError, OSError) as exc:
        raise UserError(f"price book: {exc}") from None
    client, target = connect(settings.clickhouse_url, create=migrate_store)
    topics = Topics(settings.topic_prefix)
    # both services answer before the store is migrated: an unreachable broker is the one line
    ensure_topics(
        settings.kafka,
        [*topics.telemetry, topics.deadletter],
        partitions=settings.partitions,
        replication=settings.replication_factor or -1,
    )
    # faust's partition assignor elects its leader through this topic
    ensure_topics(settings.kafka, [f"{settings.group_id}-__assignor-__leader"],
                  partitions=1, replication=settings.replication_factor or -1)
    days = settings.raw_retention_days
    if migrate_store and (applied := migrate(client, target.database, retention_days=days)):
        log.info("applied %d migration(s): %s", len(applied),
                 applied[0] if len(applied) == 1 else f"{applied[0]} .. {applied[-1]}")
    verifier = None
    if settings.signing_keys is not None:
        from streams.signing import load_verifier

        verifier = load_verifier(settings.signing_keys)
    if (warning := unsigned_warning(settings)) is not None:
        log.warning(warning)
    sink = Sink(client, target.database, retries=settings.insert_retries,
                backoff_s=settings.insert_backoff_s, max_backoff_s=settings.insert_max_backoff_s,
                give_up_s=settings.insert_give_up_s or None)
    try:
        sink.check_schema()
    except SchemaDrift as exc:
        raise UserError(str(exc)) from None
    handler = Handler(
        sink=sink,
        catalogue=load_catalogue(),
        prices=prices,
        deadletter_topic=topics.deadletter,
        verifier=verifier,
        worker_id=settings.worker_id,
        metrics_interval_s=settings.metrics_interval_s,
        job_cache_size=settings.job_cache_size,
        guard=DeadLetterGuard(settings.deadletter_limit, settings.deadletter_window),
    )
    make_dir(make_dir(settings.data_dir, "the worker's data directory (SURPLUS_DATA_DIR)") / settings.group_id,
             "the worker's data directory")
    app = build_app(settings, handler, topics.telemetry)

    async def produce(topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        return await app.producer.send(topic, key, value, None, None, headers)

    handler.produce = produce

    def highwater(tp: Any) -> int | None:
        try:
            return int(app.consumer.highwater(tp))
        except Exception:
            return None

    handler.highwater = highwater

    async def _metrics() -> None:
        await handler.flush_metrics()

    app.timer(settings.metrics_interval_s)(_metrics)

    async def _stop_waiting() -> None:  # a write waiting out a ClickHouse outage gives up now
        sink.stop()

    app.on_stop_hooks.append(_stop_waiting)
    app.on_stop_hooks.append(handler.flush_metrics)

    if settings.rollup_interval_s > 0:
        from surplus.rollup import rollup

        async def _rollup() -> None:
            try:
                done = await asyncio.to_thread(rollup, client, target.database)
            except Exception as exc:  # the relations stay exact without it: computed on the fly
                log.warning("surplus roll-up failed: %s", str(exc).strip().splitlines()[0][:200])
                return
            if done.hours:
                log.info("settled %d hour(s) of surplus roll-ups (%s .. %s)", done.hours, done.first, done.last)

        app.timer(settings.rollup_interval_s)(_rollup)

    def _revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handler.forget_jobs()

    app.on_partitions_revoked.connect(_revoked)

    def _assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        kafka_watch(settings).ok()  # in the group: the broker answers

    app.on_partitions_assigned.connect(_assigned)
    return Prepared(settings, app, handler)


def kafka_watch(settings: WorkerSettings) -> logs.ServiceWatch:
    """The shared watch of this worker's broker (one line per change of its state)."""
    return logs.watch(logs.kafka_service(settings.kafka.bootstrap))


def _no_stop_tracebacks(record: logging.LogRecord) -> bool:
    """Drop faust's/mode's crash reports of a WorkerStop: its one line is logged by the consumer."""
    if record.name.startswith(("faust", "mode", "aiokafka")):
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, WorkerStop) or any(isinstance(a, WorkerStop) for a in (
                record.args if isinstance(record.args, tuple) else ())):
            return False
    return True


def start(prepared: Prepared, *, loglevel: str = "info") -> None:
    """Run the faust worker until SIGTERM/SIGINT (blocks; exits the process at the end)."""
    from faust.worker import Worker

    collapse = logs.current() or logs.Collapse(kafka_watch(prepared.settings), debug=loglevel == "debug")

    class QuietWorker(Worker):
        """faust's worker, with faust/mode/aiokafka internals quiet unless debugging and their
        connection trouble as one line per change of the broker's state (surplus.logs)."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            for handler in logger.handlers:
                handler.addFilter(_no_stop_tracebacks)
                if collapse not in handler.filters:
                    handler.addFilter(collapse)
            logs.quiet(level <= logging.DEBUG)

    worker = QuietWorker(prepared.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        reason = prepared.app.surplus_stop_reason
        if reason is not None:  # said once by the consumer; the CLI says it again as the last line
            raise reason from None
        raise
