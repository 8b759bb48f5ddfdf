"""The declared shape of `surplus report --json` (and `--tenants --json`): TypedDicts. Pure.

Quantities are floats (PFLOPS, kWh, kg, device-hours, seconds), counts ints, money a decimal
string in CNY with 4 places, times ISO 8601 UTC strings ending in `Z`, absent values null.
`json_schema()` is the JSON Schema (draft 2020-12) of the report, for programs that read it;
`validate` checks a report against it (pydantic; ValidationError names the first bad field).
"""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

_CLOSED = ConfigDict(extra="forbid")


@with_config(_CLOSED)
class ByPrecision(TypedDict):
    fp16: float
    fp32: float
    fp64: float


@with_config(_CLOSED)
class Span(TypedDict):
    min: float
    max: float


@with_config(_CLOSED)
class Period(TypedDict):
    start: str | None  # (start, end]: the 24 h to --at or to the latest data; null: no data
    end: str | None
    hours: list[str | None] | None  # first and last whole hour inside the period


@with_config(_CLOSED)
class Filters(TypedDict):
    hub: str | None
    dc: str | None


@with_config(_CLOSED)
class Head(TypedDict):
    at: str | None  # the snapshot minute
    requested_at: str | None  # --at
    period: Period
    filters: Filters


@with_config(_CLOSED)
class DeviceCounts(TypedDict):
    idle: int
    online: int
    allocated: int


@with_config(_CLOSED)
class Devices(TypedDict):
    """The device counts split by the catalogue's kind: accelerators (GPU/NPU/MLU/DCU devices)
    and CPU cores (a CPU pool's devices are cores). Their sums are the `*_devices` counts."""

    accelerators: DeviceCounts
    cpu_cores: DeviceCounts


@with_config(_CLOSED)
class Surplus(TypedDict):
    idle_pflops: ByPrecision
    online_pflops_fp16: float
    idle_devices: int  # accelerators and CPU cores together: see `devices`
    online_devices: int
    allocated_devices: int
    devices: Devices
    pools_reporting: int
    pools_stale: int


@with_config(_CLOSED)
class Energy(TypedDict):
    facility_kwh: float
    it_kwh: float
    green_kwh: float
    carbon_kg: float
    green_share: float | None  # sum(green) / sum(facility); null without energy
    pue: float | None  # sum(facility) / sum(it)


@with_config(_CLOSED)
class Range(TypedDict):
    first_ts: str | None
    last_ts: str | None
    minutes: int
    fp16: Span
    fp32: Span
    fp64: Span


@with_config(_CLOSED)
class National(Surplus):
    ts: str | None
    range: Range
    energy: Energy


@with_config(_CLOSED)
class HubRow(Surplus, Energy):
    hub: str
    name: str
    green_share_target: float
    green_share_met: bool | None
    pue_target: float | None
    pue_met: bool | None


@with_config(_CLOSED)
class DcRow(Surplus):
    dc_id: str
    name: str
    hub: str
    province: str


@with_config(_CLOSED)
class StaleDc(TypedDict):
    dc_id: str
    name: str
    hub: str
    province: str
    pools_reporting: int
    pools_stale: int
    last_seen: str | None
    age_s: float | None
    spool_backlog_events: int | None
    reasons: list[str]  # "stale_pools", "silent"


@with_config(_CLOSED)
class Tenant(TypedDict):
    tenant_id: str
    device_hours: float
    energy_kwh: float
    amount_cny: str  # Decimal, 4 places
    dcs: int


@with_config(_CLOSED)
class TenantsTotal(TypedDict):
    device_hours: float
    energy_kwh: float
    amount_cny: str
    unpriced_device_hours: float  # the part of device_hours with no price (billed at 0)
    unpriced_share: float | None  # unpriced_device_hours / device_hours; None without usage
    tenants: int


@with_config(_CLOSED)
class Targets(TypedDict):
    green_share: float
    silent_after_s: int


@with_config(_CLOSED)
class ReasonCount(TypedDict):
    reason: str
    count: int


@with_config(_CLOSED)
class DeadLetters(TypedDict):
    total: int
    by_reason: list[ReasonCount]


@with_config(_CLOSED)
class TenantReport(Head):
    """`surplus report --tenants --json`."""

    tenants: list[Tenant]
    tenants_total: TenantsTotal
    charts: NotRequired[list[str]]  # with --png: the files written


@with_config(_CLOSED)
class Report(TenantReport):
    """`surplus report --json`."""

    data_time: str | None  # the latest event time in the store
    targets: Targets
    national: National | None  # null before the first surplus snapshot
    hubs: list[HubRow]
    top_dcs: list[DcRow]
    stale_dcs: list[StaleDc]
    deadletters: DeadLetters


REPORT: TypeAdapter[Report] = TypeAdapter(Report)
TENANT_REPORT: TypeAdapter[TenantReport] = TypeAdapter(TenantReport)


def json_schema(tenants_only: bool = False) -> dict[str, Any]:
    """The JSON Schema of the report (or of the tenant report)."""
    schema = (TENANT_REPORT if tenants_only else REPORT).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def validate(report: object, tenants_only: bool = False) -> None:
    """pydantic.ValidationError when `report` is not of the declared shape."""
    (TENANT_REPORT if tenants_only else REPORT).validate_python(report)
