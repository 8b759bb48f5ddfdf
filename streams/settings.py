"""Settings of a stream worker (pydantic-settings): environment over a TOML file over defaults. Config.

Sources, highest first: keyword arguments, `SURPLUS_*` variables (and `CLICKHOUSE_URL`), the
shared `KAFKA_*` variables (the connection model of surplus/kafka/connection.py), the `--config`
TOML file (top-level keys are the field names, the connection goes in `[kafka]`), then the
defaults here. A key the model does not know, in the file or as an argument, is refused by name.
"""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streams.guard import DEFAULT_LIMIT, DEFAULT_WINDOW
from surplus.kafka.admin import PARTITIONS
from surplus.kafka.connection import ENV_FIELDS, KafkaConnection
from surplus.paths import default_clickhouse_url, var_dir
from surplus.settings_sources import ContextValues, EnvGroup


class WorkerSettings(BaseSettings):
    """A stream worker: where Kafka and ClickHouse are, and how it batches."""

    model_config = SettingsConfigDict(env_prefix="SURPLUS_", extra="forbid", populate_by_name=True)

    kafka: KafkaConnection = Field(
        default_factory=KafkaConnection,
        description="bootstrap servers and security: the KAFKA_* variables, or [kafka] in the file",
    )
    clickhouse_url: str = Field(
        default_factory=default_clickhouse_url,
        validation_alias=AliasChoices("CLICKHOUSE_URL", "clickhouse_url"),
        description="chdb:///path or http(s)://user:pass@host:8123/cpn",
        repr=False,  # it may carry a password
    )
    topic_prefix: str = Field("cpn.", description="prefix of every topic name")
    group_id: str = Field("surplus-workers", description="consumer group of the workers")
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="this worker's name in logs and metrics",
    )
    partitions: int = Field(PARTITIONS, ge=1, le=1024, description="partitions of topics the worker creates")
    replication_factor: int | None = Field(
        None, ge=1, le=5,
        description="replication of created topics (default: the cluster's default.replication.factor)")
    batch_max_events: int = Field(20_000, ge=1, description="flush a batch at this many events")
    batch_max_wait_ms: int = Field(500, ge=1, description="or when its oldest event is this old")
    fetch_max_partition_bytes: int = Field(
        4 * 1024**2, ge=64 * 1024,
        description="most bytes a fetch returns per partition (faust's default, 1 MiB, held a worker to ~85k events/s)")
    session_timeout_s: float = Field(
        30.0, ge=6, le=300, description="group session timeout: how soon a dead worker's partitions move"
    )
    insert_retries: int = Field(
        5, ge=0, description="further attempts at a statement ClickHouse refused, then stop uncommitted")
    insert_backoff_s: float = Field(0.5, gt=0, description="first retry delay, doubled each time")
    insert_max_backoff_s: float = Field(10.0, gt=0, description="longest delay between two attempts")
    insert_give_up_s: float = Field(
        0.0, ge=0, description="stop uncommitted after ClickHouse has been unreachable this long (0: wait it out)")
    metrics_interval_s: float = Field(10.0, gt=0, description="how often counts are written/logged")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus /metrics on this port (SPEC §7; none: off)")
    raw_retention_days: int = Field(
        35, ge=1, le=20000, description="days raw samples are kept (rendered into the TTLs by the migrations)"
    )
    rollup_interval_s: float = Field(
        60.0, ge=0, description="how often the surplus roll-ups settle touched hours (0: never)"
    )
    price_book: Path | None = Field(
        None,
        validation_alias=AliasChoices("SURPLUS_PRICE_BOOK", "price_book"),
        description="price book TOML (default: the shipped schemas/prices.toml)",
    )
    signing_keys: Path | None = Field(
        None, description="key registry TOML; when set, unsigned or badly signed events are rejected"
    )
    data_dir: Path = Field(
        default_factory=lambda: var_dir() / "faust", description="faust's local state directory"
    )
    deadletter_limit: float = Field(
        DEFAULT_LIMIT, gt=0, le=1,
        description="stop without committing when more than this ratio of the last "
        "SURPLUS_DEADLETTER_WINDOW events are rejected (1: never)",
    )
    deadletter_window: int = Field(DEFAULT_WINDOW, ge=1, description="events the dead-letter ratio is taken over")
    job_cache_size: int = Field(
        200_000, ge=1000, description="jobs whose ledger state stays in memory"
    )

    @property
    def kafka_bootstrap(self) -> str:
        """The bootstrap servers (`kafka.bootstrap`)."""
        return self.kafka.bootstrap

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, EnvGroup(settings_cls, "kafka", ENV_FIELDS),
                ContextValues(settings_cls, _FILE_VALUES))


_FILE_VALUES: ContextVar[dict[str, Any]] = ContextVar("worker_file_values")


def load_settings(config: Path | None = None, **overrides: Any) -> WorkerSettings:
    """Settings from the environment over `config` (TOML) over the defaults; `overrides` win.

    Raises UserError (one line) for an unreadable file, invalid TOML, an unknown key (named) or
    a bad value."""
    import tomllib

    from pydantic import ValidationError

    from surplus.errors import UserError

    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"config {config}: cannot read it: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"config {config} is not valid TOML: {exc}") from None
    token = _FILE_VALUES.set(values)
    try:
        return WorkerSettings(**overrides)
    except ValidationError as exc:
        where = f"config {config}" if config is not None else "worker settings"
        raise UserError(f"{where}: {describe(exc)}") from None
    finally:
        _FILE_VALUES.reset(token)


def describe(exc: Any) -> str:
    """The first problem of a ValidationError as one line; an unknown key is named as such."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        return f"unknown setting {where!r}{more}"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}{more}"
