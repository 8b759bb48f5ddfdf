"""`surplus streams worker`: build settings, store, topics and the faust app, then run it. Wiring."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from surplus.errors import UserError


@click.group()
def streams() -> None:
    """Stream workers: validate, normalise and aggregate telemetry into ClickHouse."""


def load_settings(config: Path | None) -> Any:
    from streams.settings import WorkerSettings

    values: dict[str, Any] = {}
    if config is not None:
        import tomllib

        try:
            values = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"config {config}: {exc}") from None
    try:
        return WorkerSettings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"worker setting {where}: {err['msg']}") from None


@streams.command("worker")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="TOML file of worker settings (environment variables win).")
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
    SURPLUS_PRICE_BOOK, SURPLUS_SIGNING_KEYS, SURPLUS_ALERT_RULES; Kafka security via
    KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE.
    """
    settings = load_settings(config)
    run_worker(settings, loglevel=loglevel, migrate=migrate)


def run_worker(settings: Any, *, loglevel: str = "info", migrate: bool = True) -> None:
    from streams.runtime import prepare, start

    logging.basicConfig(level=loglevel.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepared = prepare(settings, migrate_store=migrate)
    start(prepared, loglevel=loglevel)
