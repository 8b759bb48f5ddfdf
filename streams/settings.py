"""Settings of a stream worker (pydantic-settings): environment, then an optional TOML file. Config."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from surplus.paths import default_clickhouse_url, var_dir


class KafkaSecurity(BaseSettings):
    """How to reach a secured Kafka cluster (SASL/SCRAM over TLS, or mTLS)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class WorkerSettings(BaseSettings):
    """A stream worker: where Kafka and ClickHouse are, and how it batches."""

    model_config = SettingsConfigDict(env_prefix="SURPLUS_", extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "kafka_bootstrap"),
        description="Kafka bootstrap servers, host:port[,host:port]",
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
    partitions: int = Field(6, ge=1, le=1024, description="partitions of topics the worker creates")
    replication_factor: int = Field(1, ge=1, le=5, description="replication of created topics")
    batch_max_events: int = Field(20_000, ge=1, description="flush a batch at this many events")
    batch_max_wait_ms: int = Field(500, ge=1, description="or when its oldest event is this old")
    session_timeout_s: float = Field(
        30.0, ge=6, le=300, description="group session timeout: how soon a dead worker's partitions move"
    )
    insert_retries: int = Field(5, ge=0, description="ClickHouse write attempts before crashing")
    insert_backoff_s: float = Field(0.5, gt=0, description="first retry delay, doubled each time")
    metrics_interval_s: float = Field(10.0, gt=0, description="how often counts are written/logged")
    price_book: Path | None = Field(
        None,
        validation_alias=AliasChoices("SURPLUS_PRICE_BOOK", "price_book"),
        description="price book TOML (default: the shipped schemas/prices.toml)",
    )
    signing_keys: Path | None = Field(
        None, description="key registry TOML; when set, unsigned or badly signed events are rejected"
    )
    alert_rules: Path | None = Field(None, description="alert rules TOML (none: no alerts)")
    data_dir: Path = Field(
        default_factory=lambda: var_dir() / "faust", description="faust's local state directory"
    )
    job_cache_size: int = Field(
        200_000, ge=1000, description="jobs whose ledger state stays in memory"
    )
