"""`surplus streams worker`: build settings, store, topics and the faust app, then run it. Wiring."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click


@click.group()
def streams() -> None:
    """Stream workers: validate, normalise and aggregate telemetry into ClickHouse."""


def load_settings(config: Path | None) -> Any:
    from streams.settings import load_settings as load

    return load(config)


@streams.command("worker")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TOML file of worker settings: the variables above without SURPLUS_, in lower case "
                   "(batch_max_events = 5000), the Kafka connection in [kafka] (bootstrap = ...); "
                   "environment variables win; an unknown key is refused.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Apply missing ClickHouse migrations before starting.")
def worker(config: Path | None, loglevel: str, migrate: bool) -> None:
    """Run one stream worker (faust) in the consumer group.

    Consumes the registry, capacity, power, jobs and heartbeat topics, writes the rows of SPEC §5
    to ClickHouse, sends rejects to the dead-letter topic, and commits offsets only after the
    writes. Run more workers with the same SURPLUS_GROUP_ID to scale out by partition.

    Settings (environment): KAFKA_BOOTSTRAP, CLICKHOUSE_URL, SURPLUS_TOPIC_PREFIX,
    SURPLUS_GROUP_ID, SURPLUS_PARTITIONS, SURPLUS_BATCH_MAX_EVENTS, SURPLUS_BATCH_MAX_WAIT_MS,
    SURPLUS_PRICE_BOOK, SURPLUS_SIGNING_KEYS, SURPLUS_DEADLETTER_LIMIT (stop
    without committing when more than this ratio of the last SURPLUS_DEADLETTER_WINDOW events are
    rejected; defaults 0.5 and 10000); Kafka security via
    KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
    KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE. Precedence: environment, then the
    --config file, then defaults.
    """
    settings = load_settings(config)
    run_worker(settings, loglevel=loglevel, migrate=migrate)


def run_worker(settings: Any, *, loglevel: str = "info", migrate: bool = True) -> None:
    from streams.runtime import prepare, start
    from surplus.logs import configure

    configure(loglevel, kafka=settings.kafka.bootstrap)
    prepared = prepare(settings, migrate_store=migrate)
    stop_metrics = _metrics(prepared.handler, settings.metrics_port)
    try:
        start(prepared, loglevel=loglevel)
    finally:
        if stop_metrics is not None:
            stop_metrics()


def _metrics(handler: Any, port: int | None) -> Any:
    """Serve the handler's counts on /metrics at `port` (SPEC §7); the stop function, or None."""
    if port is None:
        return None
    from agents.metrics import serve
    from streams.metrics import WorkerMetrics
    from surplus.errors import UserError

    try:
        stop = serve(WorkerMetrics(handler.metrics), port)
    except OSError as exc:
        raise UserError(f"cannot serve /metrics on port {port}: {exc.strerror or exc}") from None
    logging.getLogger(__name__).info("serving Prometheus /metrics on port %d", port)
    return stop
