"""Settings of the simulated data center: its pools, load profile, energy and randomness. Config.

Defaults follow schemas/reference (domain-data.md §5): allocation curves from the Helios and
Philly traces, job sizes and durations from the AcmeTrace summary, PUE per the hub targets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.catalogue import load_catalogue
from schemas.events import ID_PATTERN

Profile = Literal["training", "inference", "cloud", "batch"]


class PoolSpec(BaseModel):
    """One simulated resource pool: catalogue hardware and how it is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_id: str = Field(pattern=ID_PATTERN, max_length=40, description="pool id (unique in the DC)")
    device_model: str = Field(description="catalogue id from schemas/devices.toml")
    devices: int = Field(ge=1, le=1_000_000, description="devices (cores for a CPU model)")
    profile: Profile = Field("training", description="training | inference | cloud | batch")
    allocation_mean: float | None = Field(None, ge=0, le=1, description="mean allocated share")
    metered_share: float = Field(0.5, ge=0, le=1, description="share of allocation from metered jobs")
    failure_rate_per_device_day: float = Field(0.002, ge=0, le=1, description="device failures")

    @field_validator("device_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in load_catalogue():
            raise ValueError(f"{value!r} is not a device_model of the catalogue (schemas/devices.toml)")
        return value


class SimulatorSettings(BaseModel):
    """A simulated DC: seeded and reproducible (same seed and start, same events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="run the simulator")
    seed: int = Field(0, description="random seed")
    pools: list[PoolSpec] = Field(default_factory=list, description="the simulated pools (a list of tables)")
    pue: float = Field(1.3, ge=1.0, le=3.0, description="mean power usage effectiveness")
    green_contract_share: float = Field(0.0, ge=0, le=1, description="share bought as green power")
    onsite_renewable_share: float = Field(0.0, ge=0, le=1, description="daily mean share from onsite solar")
    grid_emission_g_per_kwh: float | None = Field(None, ge=0,
                                                  description="default: the province's 2022 factor")
    grid_renewable_share: float | None = Field(None, ge=0, le=1, description="default: the province's mix")
    tenants: list[str] = Field(default_factory=list, description="tenant ids (default: a seeded handful)")
    speed: float = Field(1.0, gt=0, le=100_000, description="simulated seconds per real second")
    start_offset_s: float = Field(0.0, description="start the simulated clock this far from now (<0: past)")

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, value: list[str]) -> list[str]:
        import re

        bad = [t for t in value if not re.match(ID_PATTERN, t)]
        if bad:
            raise ValueError(f"tenant ids must match {ID_PATTERN}: {bad[0]!r}")
        return value

    @model_validator(mode="after")
    def _pools(self) -> SimulatorSettings:
        if self.enabled and not self.pools:
            raise ValueError("the simulator needs at least one [[collectors.simulator.pools]]")
        ids = [p.pool_id for p in self.pools]
        if len(set(ids)) != len(ids):
            raise ValueError("pool ids must be unique")
        if self.green_contract_share + self.onsite_renewable_share > 1:
            raise ValueError("green_contract_share + onsite_renewable_share is over 1")
        return self
