"""The registry of event types: type -> models, topic, raw table, columns, spool kind, id prefix. Pure.

The one place an event type is declared. Everything per type derives from it: the topic names
(schemas/topics.py), the decode dispatch (schemas/decode.py), the table rows and their column
order (streams/normalise.py), the worker's batch dispatch (streams/batch.py), the tables the alert
rules and the report read, and the agent's spool kinds and event ids (agents/records.py).

Adding `cpn.capacity.v2` means: its models in schemas/events.py, one `EventType` below (a new
`kind`, and the table its rows go to), and one migration creating or altering that table. A type
whose columns are envelope fields (`event_id`, `time`), `received_at` and `data` fields of the
same names needs no row code: `row=None` builds it from the column names. Types with derived
columns (capacity: peaks and PFLOPS; power: green kWh, carbon) name their row builder from
schemas/metrics.py.

`register` adds a type at run time (tests, plug-ins); the derived maps (`TOPIC_OF_TYPE`,
`KIND_OF_TYPE`, ...) are updated in place, so every module holding them sees it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Final, Union

from pydantic import BaseModel, Field, TypeAdapter

from schemas import events as ev
from schemas import metrics
from schemas.catalogue import Catalogue

# (event, catalogue, received_at as DateTime64(3) ticks or a datetime) -> the table row
RowBuilder = Callable[[Any, Catalogue, "datetime | int"], tuple[Any, ...]]

ENVELOPE_COLUMNS: Final = {"event_id": "id", "time": "time"}
RECEIVED_AT: Final = "received_at"


@dataclass(frozen=True, slots=True)
class EventType:
    """One CloudEvent type and where its events go.

    `topic` is the short topic name (the prefix is added by schemas.topics.Topics); `table` the
    raw ClickHouse table; `columns` that table's columns in row order (all of them are written);
    `kind` the one-byte spool code (stable: spools on disk hold it); `short` the event-id prefix
    (`cap-<pool>-<ms>`); `ledger`: events go through the ledger stage before their rows are
    written (job metering); `row`: the row builder, None for the generic one (module docstring).
    """

    type: str
    envelope: builtins.type[BaseModel]
    payload: builtins.type[BaseModel]
    topic: str
    table: str
    columns: tuple[str, ...]
    kind: int
    short: str
    ledger: bool = False
    row: RowBuilder | None = None
    build_row: RowBuilder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.kind <= 255:
            raise ValueError(f"{self.type}: kind {self.kind} is not one byte")
        missing = [c for c in self.columns
                   if c not in ENVELOPE_COLUMNS and c != RECEIVED_AT
                   and c not in self.payload.model_fields]
        if self.row is None and missing:
            raise ValueError(f"{self.type}: columns {missing} are neither envelope nor data fields; "
                             "give a row builder")
        object.__setattr__(self, "build_row", self.row or generic_row(self.columns))


def generic_row(columns: tuple[str, ...]) -> RowBuilder:
    """A row builder taking each column from the envelope, `received_at` or `data` by name."""
    getters: list[Callable[[Any, Any], Any]] = []
    for column in columns:
        if column in ENVELOPE_COLUMNS:
            getters.append(_from_envelope(attrgetter(ENVELOPE_COLUMNS[column])))
        elif column == RECEIVED_AT:
            getters.append(_received)
        else:
            getters.append(_from_data(attrgetter(column)))

    def build(event: Any, _catalogue: Catalogue, received_at: datetime | int) -> tuple[Any, ...]:
        return tuple(g(event, received_at) for g in getters)

    return build


def _from_envelope(get: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda event, _received: get(event)


def _from_data(get: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda event, _received: get(event.data)


def _received(_event: Any, received: Any) -> Any:
    return received


CAPACITY_COLUMNS: Final = (
    "dc_id", "pool_id", "event_id", "time", "interval_s", "device_model", "devices_total",
    "devices_online", "devices_allocated", "busy_ratio", "peak_tflops_fp16", "peak_tflops_fp32",
    "peak_tflops_fp64", "idle_pflops_fp16", "idle_pflops_fp32", "idle_pflops_fp64",
    "online_pflops_fp16", "online_pflops_fp32", "online_pflops_fp64", "received_at",
)
POWER_COLUMNS: Final = (
    "dc_id", "event_id", "time", "interval_s", "it_energy_kwh", "facility_energy_kwh", "grid_kwh",
    "green_contract_kwh", "onsite_renewable_kwh", "grid_renewable_share", "grid_emission_g_per_kwh",
    "green_energy_kwh", "carbon_emission_kg", "received_at",
)

# registration order is the order of the topics and tables everywhere
TYPES: Final[dict[str, EventType]] = {}


def _builtin() -> tuple[EventType, ...]:
    return (
        EventType("cpn.dc.v1", ev.RegistrationEvent, ev.Registration, "registry", "registrations",
                  ("dc_id", "event_id", "time", "name", "operator", "province", "hub", "cluster",
                   "lat", "lon", "racks_total", "received_at"), kind=0, short="reg"),
        EventType("cpn.capacity.v1", ev.CapacityEvent, ev.Capacity, "capacity", "capacity_samples",
                  CAPACITY_COLUMNS, kind=1, short="cap", row=metrics.capacity_row),
        EventType("cpn.power.v1", ev.PowerEvent, ev.Power, "power", "power_samples",
                  POWER_COLUMNS, kind=2, short="pwr", row=metrics.power_row),
        EventType("cpn.job.v1", ev.JobEvent, ev.Job, "jobs", "job_events",
                  ("dc_id", "event_id", "time", "job_id", "tenant_id", "pool_id", "device_model",
                   "devices", "phase", "seq", "device_seconds_total", "energy_kwh_total", "status",
                   "received_at"), kind=3, short="job", ledger=True),
        EventType("cpn.heartbeat.v1", ev.HeartbeatEvent, ev.Heartbeat, "heartbeat", "heartbeats",
                  ("dc_id", "event_id", "time", "agent_version", "boot_id", "uptime_s",
                   "spool_backlog_events", "spool_oldest_age_s", "received_at"), kind=4, short="hb"),
    )


# --- derived maps (updated in place by `register`) -----------------------------------------

EVENT_TYPES: Final[dict[str, type[BaseModel]]] = {}  # type -> envelope model
PAYLOADS: Final[dict[str, type[BaseModel]]] = {}  # type -> payload model
TOPIC_OF_TYPE: Final[dict[str, str]] = {}  # type -> short topic name
TABLE_OF_TYPE: Final[dict[str, str]] = {}
COLUMNS: Final[dict[str, tuple[str, ...]]] = {}  # raw table -> column order
KIND_OF_TYPE: Final[dict[str, int]] = {}
TYPE_OF_KIND: Final[dict[int, str]] = {}
TOPIC_OF_KIND: Final[dict[int, str]] = {}  # spool kind -> short topic name
SHORT: Final[dict[str, str]] = {}  # type -> event-id prefix
_ADAPTER: list[TypeAdapter[Any]] = []


def register(event_type: EventType) -> EventType:
    """Add a type; ValueError when its type, kind or short name is taken, or its table's columns
    differ from another type's on the same table."""
    if event_type.type in TYPES:
        raise ValueError(f"event type {event_type.type} is already registered")
    for other in TYPES.values():
        if other.kind == event_type.kind:
            raise ValueError(f"{event_type.type}: kind {other.kind} is {other.type}'s")
        if other.short == event_type.short:
            raise ValueError(f"{event_type.type}: short name {other.short!r} is {other.type}'s")
        if other.table == event_type.table and other.columns != event_type.columns:
            raise ValueError(f"{event_type.type}: table {other.table} has other columns for {other.type}")
    TYPES[event_type.type] = event_type
    _derive()
    return event_type


def unregister(name: str) -> None:
    """Remove a type added by `register` (tests)."""
    del TYPES[name]
    _derive()


@contextmanager
def registered(event_type: EventType) -> Iterator[EventType]:
    """`register` for the duration of a `with` block."""
    register(event_type)
    try:
        yield event_type
    finally:
        unregister(event_type.type)


def _derive() -> None:
    maps: list[tuple[dict[Any, Any], Callable[[EventType], tuple[Any, Any]]]] = [
        (EVENT_TYPES, lambda t: (t.type, t.envelope)),
        (PAYLOADS, lambda t: (t.type, t.payload)),
        (TOPIC_OF_TYPE, lambda t: (t.type, t.topic)),
        (TABLE_OF_TYPE, lambda t: (t.type, t.table)),
        (COLUMNS, lambda t: (t.table, t.columns)),
        (KIND_OF_TYPE, lambda t: (t.type, t.kind)),
        (TYPE_OF_KIND, lambda t: (t.kind, t.type)),
        (TOPIC_OF_KIND, lambda t: (t.kind, t.topic)),
        (SHORT, lambda t: (t.type, t.short)),
    ]
    for target, pair in maps:
        target.clear()
        target.update(pair(t) for t in TYPES.values())
    union: Any = Union[tuple(t.envelope for t in TYPES.values())]  # noqa: UP007
    form: Any = Annotated[union, Field(discriminator="type")]
    _ADAPTER[:] = [TypeAdapter(form)]


def adapter() -> TypeAdapter[Any]:
    """The discriminated union of every registered envelope (pydantic's one-pass JSON path)."""
    return _ADAPTER[0]


def topics() -> tuple[str, ...]:
    """The short telemetry topic names, in registration order, each once."""
    return tuple(dict.fromkeys(t.topic for t in TYPES.values()))


def tables() -> tuple[str, ...]:
    """The raw tables of the event types, in registration order, each once."""
    return tuple(dict.fromkeys(t.table for t in TYPES.values()))


def of(event_type: str) -> EventType:
    """The registered type; KeyError when unknown."""
    return TYPES[event_type]


for _t in _builtin():
    register(_t)
