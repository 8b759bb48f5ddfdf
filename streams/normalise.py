"""Accepted events -> table rows (SPEC §4): idle/online PFLOPS per sample, green kWh and carbon per
power sample. Pure: values in, rows out; no clock, no I/O. (The minutes a capacity sample stands
for are derived by ClickHouse on insert: migration 009.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.catalogue import Catalogue
from schemas.events import (
    CapacityEvent,
    HeartbeatEvent,
    JobEvent,
    PowerEvent,
    RegistrationEvent,
)


def peaks(event: CapacityEvent, catalogue: Catalogue) -> tuple[float, float, float]:
    """Peak TFLOPS per device for fp16, fp32, fp64: the event's own, else the catalogue's."""
    given = event.data.peak_tflops_per_device
    if given is not None:
        return (given.fp16 or 0.0, given.fp32 or 0.0, given.fp64 or 0.0)
    return catalogue_peaks(catalogue, event.data.device_model)


_PEAKS: dict[tuple[int, str], tuple[Catalogue, tuple[float, float, float]]] = {}


def catalogue_peaks(catalogue: Catalogue, device_model: str) -> tuple[float, float, float]:
    """The catalogue's peaks of a model, memoised per catalogue object (a hot path)."""
    cached = _PEAKS.get((id(catalogue), device_model))
    if cached is not None and cached[0] is catalogue:
        return cached[1]
    device = catalogue.get(device_model)
    # decode rejects an unknown model without peaks; keep the function total all the same
    found = (device.peak("fp16"), device.peak("fp32"), device.peak("fp64")) if device else (0.0, 0.0, 0.0)
    if len(_PEAKS) < 4096:
        _PEAKS[(id(catalogue), device_model)] = (catalogue, found)
    return found


# Column order of each table's rows. Rows are tuples on the hot path (no dict per event); the
# first STORED[table] columns are written, any after them are for the observers only.
COLUMNS: dict[str, tuple[str, ...]] = {
    "capacity_samples": (
        "dc_id", "pool_id", "event_id", "time", "interval_s", "device_model", "devices_total",
        "devices_online", "devices_allocated", "busy_ratio", "peak_tflops_fp16", "peak_tflops_fp32",
        "peak_tflops_fp64", "received_at",
        # derived by ClickHouse on insert (migration 010); kept here for the alert rules
        "idle_pflops_fp16", "idle_pflops_fp32", "idle_pflops_fp64",
    ),
    "power_samples": (
        "dc_id", "event_id", "time", "interval_s", "it_energy_kwh", "facility_energy_kwh", "grid_kwh",
        "green_contract_kwh", "onsite_renewable_kwh", "grid_renewable_share", "grid_emission_g_per_kwh",
        "green_energy_kwh", "carbon_emission_kg", "received_at",
    ),
    "registrations": (
        "dc_id", "event_id", "time", "name", "operator", "province", "hub", "cluster", "lat", "lon",
        "racks_total", "received_at",
    ),
    "heartbeats": (
        "dc_id", "event_id", "time", "agent_version", "boot_id", "uptime_s", "spool_backlog_events",
        "spool_oldest_age_s", "received_at",
    ),
    "job_events": (
        "dc_id", "event_id", "time", "job_id", "tenant_id", "pool_id", "device_model", "devices", "phase",
        "seq", "device_seconds_total", "energy_kwh_total", "status", "received_at",
    ),
}
STORED: dict[str, int] = {"capacity_samples": 14}


def capacity_row(event: CapacityEvent, catalogue: Catalogue, received_at: datetime | int) -> tuple[Any, ...]:
    """One capacity_samples row: the sample with its resolved peaks (and idle PFLOPS for observers)."""
    d = event.data
    p16, p32, p64 = peaks(event, catalogue)
    idle = d.devices_online - d.devices_allocated
    return (
        d.dc_id, d.pool_id, event.id, event.time, d.interval_s, d.device_model, d.devices_total,
        d.devices_online, d.devices_allocated, d.busy_ratio, p16, p32, p64, received_at,
        idle * p16 / 1000, idle * p32 / 1000, idle * p64 / 1000,
    )


def green_kwh(event: PowerEvent) -> float:
    """green = green_contract + onsite_renewable + grid * grid_renewable_share."""
    s = event.data.sources_kwh
    return s.green_contract + s.onsite_renewable + s.grid * event.data.grid_renewable_share


def carbon_kg(event: PowerEvent) -> float:
    """carbon = grid * grid_emission_g_per_kwh / 1000."""
    return event.data.sources_kwh.grid * event.data.grid_emission_g_per_kwh / 1000


def power_row(event: PowerEvent, received_at: datetime | int) -> tuple[Any, ...]:
    d = event.data
    s = d.sources_kwh
    return (
        d.dc_id, event.id, event.time, d.interval_s, d.it_energy_kwh, d.facility_energy_kwh, s.grid,
        s.green_contract, s.onsite_renewable, d.grid_renewable_share, d.grid_emission_g_per_kwh,
        green_kwh(event), carbon_kg(event), received_at,
    )


def registration_row(event: RegistrationEvent, received_at: datetime | int) -> tuple[Any, ...]:
    d = event.data
    return (
        d.dc_id, event.id, event.time, d.name, d.operator, d.province, d.hub, d.cluster, d.lat, d.lon,
        d.racks_total, received_at,
    )


def heartbeat_row(event: HeartbeatEvent, received_at: datetime | int) -> tuple[Any, ...]:
    d = event.data
    return (
        d.dc_id, event.id, event.time, d.agent_version, d.boot_id, d.uptime_s, d.spool_backlog_events,
        d.spool_oldest_age_s, received_at,
    )


def job_row(event: JobEvent, received_at: datetime | int) -> tuple[Any, ...]:
    d = event.data
    return (
        d.dc_id, event.id, event.time, d.job_id, d.tenant_id, d.pool_id, d.device_model, d.devices, d.phase,
        d.seq, d.device_seconds_total, d.energy_kwh_total, d.status, received_at,
    )
