"""Settings of `surplus place`, `surplus forecast` and `surplus api` (pydantic-settings). Config."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from surplus.paths import default_clickhouse_url


class DispatchSettings(BaseSettings):
    """The dispatcher's side: where the store is, the sell headroom, the forecast cadence."""

    model_config = SettingsConfigDict(env_prefix="SURPLUS_", extra="ignore", populate_by_name=True)

    clickhouse_url: str = Field(
        default_factory=default_clickhouse_url,
        validation_alias=AliasChoices("CLICKHOUSE_URL", "clickhouse_url"),
        description="chdb:///path or http(s)://user:pass@host:8123/cpn",
        repr=False,
    )
    sell_headroom: Decimal = Field(
        Decimal("0.05"), ge=0, le=1,
        description="share of a pool's online devices kept back from sale (rounded up to whole devices)")
    forecast_refresh_s: int = Field(
        3600, ge=60, le=86_400, description="how often `surplus api` refreshes cpn.pool_idle_forecast")
    forecast_lookback_days: int = Field(
        28, ge=14, le=400, description="days of minute snapshots the forecast learns from")
