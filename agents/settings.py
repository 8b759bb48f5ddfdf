"""Settings of the data-center agent (pydantic-settings): environment over a TOML file over defaults.

Sources, highest first: `SURPLUS_AGENT_*` variables (nested with `__`, e.g.
`SURPLUS_AGENT_KAFKA__LINGER_MS=20`), the shared variables `KAFKA_BOOTSTRAP`,
`SURPLUS_TOPIC_PREFIX` and `KAFKA_SECURITY_PROTOCOL`/`_SASL_*`/`_SSL_*` (the connection model of
surplus/kafka/connection.py, which `[kafka]` extends), the `--config` TOML
file, then the defaults here. Built once at start-up; a bad value is one `UserError` line. Config.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agents.simsettings import SimulatorSettings
from schemas.catalogue import load_catalogue
from schemas.events import ID_PATTERN
from schemas.hubs import HubId
from surplus.errors import UserError
from surplus.kafka.connection import ENV_FIELDS, KafkaConnection
from surplus.paths import var_dir
from surplus.settings_sources import ContextValues, EnvGroup


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataCenter(Section):
    """Who and where this DC is: the `cpn.dc.v1` registration."""

    dc_id: str = Field(pattern=ID_PATTERN, description="this DC's id (the Kafka key), e.g. gz-guian-01")
    name: str = Field(min_length=1, max_length=200, description="display name")
    operator: str = Field(min_length=1, max_length=200, description="operating company")
    province: str = Field(pattern=r"^CN-[A-Z]{2}$", description="ISO 3166-2:CN code, e.g. CN-GZ")
    hub: HubId = Field("none", description="hub: jjj yrd gba cy nm gz gs nx or none")
    cluster: str | None = Field(None, pattern=ID_PATTERN, description="national cluster id, if any")
    lat: float = Field(ge=-90, le=90, description="latitude (WGS84)")
    lon: float = Field(ge=-180, le=180, description="longitude (WGS84)")
    racks_total: int = Field(ge=0, description="standard 2.5 kW racks")


class Intervals(Section):
    """How often each event is sent, in seconds."""

    capacity_s: int = Field(15, ge=1, le=3600, description="capacity per pool")
    power_s: int = Field(60, ge=1, le=3600, description="power and energy mix per DC")
    heartbeat_s: int = Field(30, ge=1, le=3600, description="agent heartbeat")
    jobs_s: int = Field(60, ge=1, le=3600, description="job usage (start and end as they happen)")
    registry_s: int = Field(86_400, ge=60, le=7 * 86_400, description="registration resend")


class KafkaSettings(KafkaConnection):
    """Where to publish, and how: the shared connection model plus the producer's own settings."""

    topic_prefix: str = Field("cpn.", description="topic name prefix (env SURPLUS_TOPIC_PREFIX)")
    linger_ms: int = Field(50, ge=0, le=10_000, description="batching delay of the producer")
    message_timeout_ms: int = Field(0, ge=0, description="0 = retry forever (the spool bounds it)")
    max_in_flight_events: int = Field(20_000, ge=1, description="events handed to the producer at once")
    create_topics: bool = Field(False, description="create the five topics at start (local setups)")
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                       description="more librdkafka settings")


class SpoolSettings(Section):
    """The disk spool: where, how big, how durable."""

    path: Path = Field(default_factory=lambda: var_dir() / "agent" / "spool", description="spool directory")
    max_bytes: int = Field(256 << 20, ge=64 << 10, description="bound on the spool's size")
    segment_bytes: int = Field(4 << 20, ge=4096, description="segment file size")
    fsync: Literal["always", "batch", "never"] = Field("batch", description="always | batch | never")
    fsync_interval_ms: int = Field(200, ge=0, description="batch policy: fsync at most this often")
    overflow: Literal["drop_oldest_telemetry"] = Field(
        "drop_oldest_telemetry", description="when full: drop oldest telemetry, never job metering")
    tally: bool = Field(True, description="keep the operator's hourly tally (tally.sqlite in the spool dir)")


def _catalogue_id(value: str | None) -> str | None:
    if value is not None and value not in load_catalogue():
        raise ValueError(f"{value!r} is not a device_model of the catalogue (schemas/devices.toml)")
    return value


CatalogueId = Annotated[str, AfterValidator(_catalogue_id)]


class CommandCollector(Section):
    enabled: bool = Field(False, description="run this collector")
    pool_id: str = Field("gpu", pattern=ID_PATTERN, description="pool id of these devices")
    device_model: CatalogueId | None = Field(None, description="catalogue id; default: from the name")
    command: list[str] = Field(default_factory=list, description="command line (default: the tool's)")
    timeout_s: float = Field(10.0, gt=0, description="give up on the command after this long")


class LinuxCollector(Section):
    enabled: bool = Field(False, description="run this collector")
    pool_id: str = Field("cpu", pattern=ID_PATTERN, description="pool id of this host's cores")
    device_model: CatalogueId = Field("intel-xeon-platinum-8480p",
                                      description="catalogue id of this host's CPU")
    proc_stat: Path = Field(Path("/proc/stat"), description="where to read CPU times")


class SlurmPartition(Section):
    name: str = Field(min_length=1, description="Slurm partition")
    pool_id: str = Field(pattern=ID_PATTERN, description="pool the partition's jobs run on")
    device_model: CatalogueId = Field(description="catalogue id of the partition's devices")
    devices: Literal["gpu", "cpu"] = Field("gpu", description="count gres/gpu or cpu from AllocTRES")


class SlurmCollector(Section):
    enabled: bool = Field(False, description="run this collector")
    partitions: list[SlurmPartition] = Field(default_factory=list, description="partition -> pool")
    lookback_s: int = Field(3600, ge=60, description="sacct window for finished jobs")
    requeue_grace_s: int = Field(1800, ge=0, description="a preempted or node-failed job ends "
                                 "when no new run follows within this long (or it leaves the window)")
    command: list[str] = Field(default_factory=list, description="sacct command line (default built)")
    timeout_s: float = Field(20.0, gt=0, description="give up on sacct after this long")
    assumed_busy: float = Field(0.7, ge=0, le=1, description="utilisation for energy without sacct energy")


class PrometheusCollector(Section):
    enabled: bool = Field(False, description="run this collector")
    urls: list[str] = Field(default_factory=list, description="exporters' /metrics URLs "
                            "(dcgm-exporter :9400, npu-exporter :8082)")
    pool_id: str = Field("acc", pattern=ID_PATTERN, description="pool id (pool_id-<n> per model)")
    device_model: CatalogueId | None = Field(None, description="catalogue id; default: from labels")
    timeout_s: float = Field(5.0, gt=0, description="give up on a scrape after this long")

    @model_validator(mode="after")
    def _targets(self) -> PrometheusCollector:
        if self.enabled and not self.urls:
            raise ValueError("collectors.prometheus.urls is empty: list the exporters' /metrics URLs")
        return self


class KubernetesCollector(Section):
    enabled: bool = Field(False, description="run this collector")
    pool_id: str = Field("k8s", pattern=ID_PATTERN, description="pool id (pool_id-<n> per model)")
    kubeconfig: Path | None = Field(None, description="kubeconfig file (default: in-cluster, "
                                    "then ~/.kube/config)")
    context: str | None = Field(None, description="kubeconfig context")
    device_models: dict[str, CatalogueId] = Field(
        default_factory=dict, description="extended resource -> catalogue id, e.g. "
        '{"huawei.com/Ascend910" = "huawei-ascend-910b3"}')
    timeout_s: float = Field(10.0, gt=0, description="give up on an API call after this long")


COLLECTORS = ("simulator", "linux", "nvidia", "ascend", "slurm", "prometheus", "kubernetes")


class Collectors(Section):
    """Where measurements come from; each collector fails on its own and is retried."""

    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    linux: LinuxCollector = Field(default_factory=LinuxCollector)
    nvidia: CommandCollector = Field(default_factory=CommandCollector)
    ascend: CommandCollector = Field(default_factory=lambda: CommandCollector(pool_id="npu"))
    slurm: SlurmCollector = Field(default_factory=SlurmCollector)
    prometheus: PrometheusCollector = Field(default_factory=PrometheusCollector)
    kubernetes: KubernetesCollector = Field(default_factory=KubernetesCollector)

    def enabled(self) -> list[str]:
        return [n for n in COLLECTORS if getattr(self, n).enabled]


class AgentSettings(BaseSettings):
    """The whole agent configuration."""

    model_config = SettingsConfigDict(env_prefix="SURPLUS_AGENT_", env_nested_delimiter="__",
                                      extra="forbid", nested_model_default_partial_update=True)

    dc: DataCenter
    intervals: Intervals = Field(default_factory=Intervals)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    collectors: Collectors = Field(default_factory=Collectors)
    signing_key_file: Path | None = Field(None, description="sign every event with this DC key (TOML)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG | INFO | WARNING | ERROR")
    status_interval_s: int = Field(300, ge=1, description="log a status line this often (and at catch-up)")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=AliasChoices("SURPLUS_METRICS_PORT", "metrics_port"),
        description="serve Prometheus /metrics on this port (env SURPLUS_METRICS_PORT)")

    @model_validator(mode="after")
    def _some_collector(self) -> AgentSettings:
        if not self.collectors.enabled():
            raise ValueError(f"no collector is enabled: set collectors.<{'|'.join(COLLECTORS)}>"
                             ".enabled = true")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, EnvGroup(settings_cls, "kafka", SHARED_ENV),
                ContextValues(settings_cls, _FILE_VALUES))


# the shared variables every surplus component reads, mapped into this model
SHARED_ENV = {**ENV_FIELDS, "SURPLUS_TOPIC_PREFIX": "topic_prefix"}
_FILE_VALUES: ContextVar[dict[str, Any]] = ContextVar("agent_file_values")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(config: Path | None = None, **overrides: Any) -> AgentSettings:
    """Build the settings from `config` (TOML), the environment and `overrides`; UserError if bad."""
    token = _FILE_VALUES.set(read_toml(config) if config is not None else {})
    try:
        return AgentSettings(**overrides)
    except ValidationError as exc:
        where = f"config {config}" if config is not None else "agent config"
        raise UserError(f"{where}: {describe(exc)}") from None
    finally:
        _FILE_VALUES.reset(token)


def describe(exc: ValidationError) -> str:
    """The first problem as one line: `dc.province: String should match pattern ...`."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"
