"""The dispatcher's request, an offer and the answer (SPEC §8), as strict pydantic models. Pure.

A request is validated once, at the edge (CLI options or API query parameters); the ranking core
takes a valid `Request` and returns an `Answer`. Money is Decimal (JSON: a decimal string).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from surplus.dispatch.latency import provinces

ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"
PRICE_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"
MAX_HOURS = 168  # the forecast horizon: a week
Precision = Literal["fp16", "fp32", "fp64"]
RankKey = Literal["cost", "carbon", "latency"]
# The limits a pool can fail, in the order the excluded-by answer breaks ties.
LIMITS = ("devices", "forecast", "precision", "device_model", "min_tflops", "max_latency_ms",
          "min_green_share", "unpriced", "max_price")
Limit = Literal["devices", "forecast", "precision", "device_model", "min_tflops", "max_latency_ms",
                "min_green_share", "unpriced", "max_price"]


class Request(BaseModel):
    """What the dispatcher asks for: N devices for H hours near an origin, within limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: Annotated[int, Field(ge=1, le=10_000_000, description="N, devices wanted (cores for CPUs)")]
    precision: Precision = Field("fp16", description="the precision min_tflops and the device class refer to")
    device_model: Annotated[str | None, Field(pattern=ID, description="only this catalogue model")] = None
    min_tflops: Annotated[float | None, Field(gt=0, le=1e6, allow_inf_nan=False,
                                              description="peak TFLOPS per device at `precision`, at least")] = None
    hours: Annotated[int, Field(ge=1, le=MAX_HOURS, description="H, hours the devices are wanted for")] = 1
    origin: Annotated[str, Field(description="province the job is sent from, ISO 3166-2:CN (e.g. CN-SH)",
                                 json_schema_extra={"enum": sorted(provinces())})]
    max_latency_ms: Annotated[float | None, Field(
        gt=0, le=1e4, allow_inf_nan=False, description="estimated round trip from the origin, at most")] = None
    min_green_share: Annotated[float | None, Field(
        ge=0, le=1, allow_inf_nan=False, description="the DC's green share over the last 24 h, at least")] = None
    max_price: Annotated[Decimal | None, Field(
        ge=0, le=Decimal("1e9"), allow_inf_nan=False, description="CNY per device-hour, at most (a decimal string)"),
        WithJsonSchema({"anyOf": [{"type": "string", "pattern": PRICE_PATTERN}, {"type": "null"}]})] = None
    tenant_id: Annotated[str | None, Field(
        pattern=ID, description="price for this tenant (its own price when the book has one)")] = None
    rank: RankKey = Field("cost", description="rank offers by cost, carbon or latency")
    limit: Annotated[int, Field(ge=1, le=1000, description="at most this many offers")] = 10

    @field_validator("max_price", mode="before")
    @classmethod
    def _plain_decimal(cls, value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(PRICE_PATTERN, value):
            raise ValueError("must be a plain decimal such as 9.50 (up to 9 digits, 6 decimals)")
        if isinstance(value, float):
            raise ValueError("must be a decimal string such as '9.50', not a float (money is never a float)")
        return value

    @field_validator("origin")
    @classmethod
    def _province(cls, value: str) -> str:
        if value not in provinces():
            raise ValueError(f"{value!r} is not an ISO 3166-2:CN provincial-level division (e.g. CN-SH)")
        return value


class Offer(BaseModel):
    """One pool that can take the whole request (SPEC §8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dc_id: str
    pool_id: str
    hub: str
    province: str
    device_model: str
    devices_idle_now: int
    devices_sellable: int
    price_cny_per_device_hour: Decimal
    cost_cny: Decimal = Field(description="devices x hours x price, exact")
    green_share: float | None = Field(description="the DC's last 24 h, energy-weighted")
    pue: float | None = Field(description="the DC's last 24 h, energy-weighted")
    carbon_kg_per_hour: float | None = Field(
        description="N devices at catalogue TDP x the DC's PUE x its carbon per facility kWh (last 24 h)")
    latency_ms: float = Field(description="estimated round trip from the origin's capital")


class Exclusion(BaseModel):
    """Pools (and their idle devices now) that one limit ruled out; a pool can fail several."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Limit
    pools: int
    devices_idle: int


class Answer(BaseModel):
    """Ranked offers, and what the limits excluded."""

    model_config = ConfigDict(extra="forbid")

    as_of: datetime | None = Field(description="the minute the store's figures are for (UTC)")
    request: Request
    offers: list[Offer]
    pools_considered: int
    excluded: list[Exclusion] = Field(description="per limit, most idle devices excluded first")
    excluded_most_by: Limit | None = Field(description="the limit that excluded the most idle devices")
    message: str
