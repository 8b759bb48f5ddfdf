"""CloudEvents 1.0 envelope and the five payload models (SPEC §3). Pure.

Which type goes to which topic and table is declared in schemas/registry.py, not here.

Strict pydantic v2 models: unknown fields are rejected, numbers are not coerced from strings,
times must be RFC 3339 strings with a zone, NaN and Infinity are refused. Units are in names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from schemas.attributes import (
    ATTRIBUTE_NAME_PATTERN,
    FINITE_MAX,
    JSON_MEDIA_TYPE_PATTERN,
    URI_PATTERN,
    AttributeName,
    ExtensionValue,
    Integral,
    Pattern,
    ce_string,
)
from schemas.hubs import HUB_IDS, HubId

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
SOURCE_PREFIX = "//cpn/dc/"
HUBS = HUB_IDS  # the hub ids a registration may name (schemas/hubs.py)
MAX_DEVICES = 10_000_000

# Bounds keep every accepted value storable: counts fit their ClickHouse columns (UInt32 or
# UInt64), totals keep a job's amount inside Decimal(18, 4), times inside DateTime64(3).
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
MAX_TOTAL = 1e12  # device-seconds (about 31,700 device-years) or kWh in one counter
MIN_YEAR, MAX_YEAR = 1970, 9999  # later than now + 300 s is `future_time`, checked after the schema

Ident = Annotated[str, Field(pattern=ID_PATTERN)]
# counts and integers: a JSON number with a zero fractional part is that integer (SPEC §3)
NonNegInt = Annotated[int, Integral(0, INT64_MAX)]
Count32 = Annotated[int, Integral(0, UINT32_MAX)]
Count = Annotated[int, Integral(0)]
IntervalS = Annotated[int, Integral(1, 3600)]
NonNegFloat = Annotated[float, Field(ge=0, le=FINITE_MAX)]
Total = Annotated[float, Field(ge=0, le=MAX_TOTAL)]
Ratio = Annotated[float, Field(ge=0, le=1)]
Text = Annotated[str, Field(min_length=1, max_length=200)]

# RFC 3339 date-time with a zone, years 1970..9999 ([0-9], not \d: no other scripts' digits).
# The day of the month is checked against the calendar when parsed (2026-02-30 is refused).
_DAY = r"((?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01]))"
_CLOCK = r"((?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])(?:\.([0-9]{1,9}))?"
_ZONE = r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
TIME_PATTERN = f"^{_DAY}[Tt ]{_CLOCK}{_ZONE}$"
_RFC3339 = re.compile(TIME_PATTERN)
_RFC3339_NO_ZONE = re.compile(f"^{_DAY}[Tt ]{_CLOCK}$")


def _rfc3339(value: object) -> datetime:
    """Accept only an RFC 3339 date-time string with a zone; never a number or a naive time."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        match = _RFC3339.match(value) if len(value) <= 40 else None
        if match is None or match.end() != len(value):
            if len(value) <= 40 and _RFC3339_NO_ZONE.fullmatch(value):
                raise ValueError("time has no zone")
            raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac]Z or +HH:MM, "
                             f"years {MIN_YEAR}..{MAX_YEAR})")
        day, clock, fraction, zone = match.groups()
        text = f"{day}T{clock}{'.' + (fraction + '00000')[:6] if fraction else ''}{'+00:00' if zone in 'Zz' else zone}"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not a valid time: {exc}") from None
    else:
        raise ValueError("time must be an RFC 3339 string")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("time has no zone")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"time must be in the years {MIN_YEAR}..{MAX_YEAR}")
    return parsed


EventTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIME_PATTERN}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# --- payloads -----------------------------------------------------------------------------


class Registration(Strict):
    """`cpn.dc.v1`: who a data center is and where (sent at agent start, then daily)."""

    dc_id: Ident
    name: Text
    operator: Text
    province: Annotated[str, Field(pattern=r"^CN-[A-Z]{2}$")]
    hub: HubId
    cluster: Ident | None
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    racks_total: Count32


class PeakTflops(Strict):
    """Peak dense TFLOPS per device (per core for CPUs); null where the vendor gives none."""

    fp16: NonNegFloat | None = None
    fp32: NonNegFloat | None = None
    fp64: NonNegFloat | None = None


class Capacity(Strict):
    """`cpn.capacity.v1`: one pool's devices and their allocation, every `interval_s`."""

    dc_id: Ident
    pool_id: Ident
    device_model: Ident
    # unbounded here: `devices_total <= 10_000_000` is a cross-field rule (`inconsistent`)
    devices_total: Count
    devices_online: Count
    devices_allocated: Count
    busy_ratio: Ratio | None = None
    interval_s: IntervalS
    peak_tflops_per_device: PeakTflops | None = None


class SourcesKwh(Strict):
    grid: NonNegFloat
    green_contract: NonNegFloat
    onsite_renewable: NonNegFloat


class Power(Strict):
    """`cpn.power.v1`: a DC's energy over `(time - interval_s, time]` and where it came from."""

    dc_id: Ident
    interval_s: IntervalS
    it_energy_kwh: NonNegFloat
    facility_energy_kwh: NonNegFloat
    sources_kwh: SourcesKwh
    grid_renewable_share: Ratio
    grid_emission_g_per_kwh: NonNegFloat


class Job(Strict):
    """`cpn.job.v1`: job metering, cumulative totals with a rising `seq` per job."""

    dc_id: Ident
    job_id: Ident
    tenant_id: Ident
    pool_id: Ident
    device_model: Ident
    devices: Count32
    phase: Literal["start", "usage", "end"]
    seq: NonNegInt
    device_seconds_total: Total
    energy_kwh_total: Total
    status: Literal["succeeded", "failed", "cancelled"] | None = None

    model_config = ConfigDict(json_schema_extra={
        # the rule of `_status_only_at_end`, for validators in other languages
        "if": {"properties": {"phase": {"const": "end"}}},
        "then": {"required": ["status"], "properties": {"status": {"type": "string"}}},
        "else": {"properties": {"status": {"type": "null"}}},
    })

    @model_validator(mode="after")
    def _status_only_at_end(self) -> Job:
        if self.phase == "end" and self.status is None:
            raise ValueError("an `end` event needs a status")
        if self.phase != "end" and self.status is not None:
            raise ValueError("status is for `end` events only")
        return self


class Heartbeat(Strict):
    """`cpn.heartbeat.v1`: the agent is alive, and how much it has not yet delivered."""

    dc_id: Ident
    agent_version: Annotated[str, Field(min_length=1, max_length=64)]
    boot_id: Annotated[str, Field(min_length=1, max_length=128)]
    uptime_s: NonNegFloat
    spool_backlog_events: NonNegInt
    spool_oldest_age_s: NonNegFloat


# --- envelope -----------------------------------------------------------------------------


def _envelope_json_schema(schema: dict[str, Any]) -> None:
    # extension attributes: any name CloudEvents allows, with a value of its type system
    schema["propertyNames"] = {"pattern": ATTRIBUTE_NAME_PATTERN}


class _Envelope(Strict):
    """The CloudEvents 1.0 context attributes (SPEC §3). `subject`, `dataschema` and extension
    attributes (e.g. `traceparent`) are accepted and ignored; `datacontenttype` defaults to
    `application/json`."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_envelope_json_schema)
    # extension attributes: names validated by pydantic-core too (no Python call per event)
    __pydantic_extra__: dict[AttributeName, ExtensionValue] = Field(init=False)

    specversion: Literal["1.0"]
    id: Annotated[str, ce_string(1, 128)]
    source: Annotated[str, Field(pattern=r"^//cpn/dc/[a-z0-9][a-z0-9._-]{0,62}$")]
    time: EventTime
    datacontenttype: Annotated[str, Pattern(JSON_MEDIA_TYPE_PATTERN, "application/json")] | None = None
    dataschema: Annotated[str, Pattern(URI_PATTERN, "an absolute URI (RFC 3986)")] | None = None
    subject: Annotated[str, ce_string(1)] | None = None

    @property
    def source_dc(self) -> str:
        return self.source[len(SOURCE_PREFIX):]


class RegistrationEvent(_Envelope):
    type: Literal["cpn.dc.v1"]
    data: Registration


class CapacityEvent(_Envelope):
    type: Literal["cpn.capacity.v1"]
    data: Capacity


class PowerEvent(_Envelope):
    type: Literal["cpn.power.v1"]
    data: Power


class JobEvent(_Envelope):
    type: Literal["cpn.job.v1"]
    data: Job


class HeartbeatEvent(_Envelope):
    type: Literal["cpn.heartbeat.v1"]
    data: Heartbeat


Event = Annotated[
    RegistrationEvent | CapacityEvent | PowerEvent | JobEvent | HeartbeatEvent,
    Field(discriminator="type"),
]
# the static union for type checkers; at run time every type, its topic and its table are
# those of schemas/registry.py (which also builds the decoding union from the registered types)
CONTENT_TYPE = "application/cloudevents+json"


def source_of(dc_id: str) -> str:
    return f"{SOURCE_PREFIX}{dc_id}"


def make_event(event_type: str, event_id: str, time: datetime, data: Strict) -> dict[str, object]:
    """A structured-mode CloudEvent as a JSON-ready dict (what an agent serialises)."""
    dc_id = data.dc_id  # type: ignore[attr-defined]
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source_of(dc_id),
        "type": event_type,
        "time": time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data.model_dump(mode="json", exclude_none=event_type != "cpn.dc.v1"),
    }
