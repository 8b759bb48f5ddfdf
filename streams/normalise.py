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


def capacity_row(event: CapacityEvent, catalogue: Catalogue, received_at: datetime) -> dict[str, Any]:
    """One capacity_samples row: the sample with its peaks and idle/online PFLOPS."""
    d = event.data
    p16, p32, p64 = peaks(event, catalogue)
    idle = d.devices_online - d.devices_allocated
    online = d.devices_online
    return {
        "dc_id": d.dc_id,
        "pool_id": d.pool_id,
        "event_id": event.id,
        "time": event.time,
        "interval_s": d.interval_s,
        "device_model": d.device_model,
        "devices_total": d.devices_total,
        "devices_online": online,
        "devices_allocated": d.devices_allocated,
        "busy_ratio": d.busy_ratio,
        "peak_tflops_fp16": p16,
        "peak_tflops_fp32": p32,
        "peak_tflops_fp64": p64,
        "idle_pflops_fp16": idle * p16 / 1000,
        "idle_pflops_fp32": idle * p32 / 1000,
        "idle_pflops_fp64": idle * p64 / 1000,
        "online_pflops_fp16": online * p16 / 1000,
        "online_pflops_fp32": online * p32 / 1000,
        "online_pflops_fp64": online * p64 / 1000,
        "received_at": received_at,
    }


def green_kwh(event: PowerEvent) -> float:
    """green = green_contract + onsite_renewable + grid * grid_renewable_share."""
    s = event.data.sources_kwh
    return s.green_contract + s.onsite_renewable + s.grid * event.data.grid_renewable_share


def carbon_kg(event: PowerEvent) -> float:
    """carbon = grid * grid_emission_g_per_kwh / 1000."""
    return event.data.sources_kwh.grid * event.data.grid_emission_g_per_kwh / 1000


def power_row(event: PowerEvent, received_at: datetime) -> dict[str, Any]:
    d = event.data
    return {
        "dc_id": d.dc_id,
        "event_id": event.id,
        "time": event.time,
        "interval_s": d.interval_s,
        "it_energy_kwh": d.it_energy_kwh,
        "facility_energy_kwh": d.facility_energy_kwh,
        "grid_kwh": d.sources_kwh.grid,
        "green_contract_kwh": d.sources_kwh.green_contract,
        "onsite_renewable_kwh": d.sources_kwh.onsite_renewable,
        "grid_renewable_share": d.grid_renewable_share,
        "grid_emission_g_per_kwh": d.grid_emission_g_per_kwh,
        "green_energy_kwh": green_kwh(event),
        "carbon_emission_kg": carbon_kg(event),
        "received_at": received_at,
    }


def registration_row(event: RegistrationEvent, received_at: datetime) -> dict[str, Any]:
    d = event.data
    return {
        "dc_id": d.dc_id,
        "event_id": event.id,
        "time": event.time,
        "name": d.name,
        "operator": d.operator,
        "province": d.province,
        "hub": d.hub,
        "cluster": d.cluster,
        "lat": d.lat,
        "lon": d.lon,
        "racks_total": d.racks_total,
        "received_at": received_at,
    }


def heartbeat_row(event: HeartbeatEvent, received_at: datetime) -> dict[str, Any]:
    d = event.data
    return {
        "dc_id": d.dc_id,
        "event_id": event.id,
        "time": event.time,
        "agent_version": d.agent_version,
        "boot_id": d.boot_id,
        "uptime_s": d.uptime_s,
        "spool_backlog_events": d.spool_backlog_events,
        "spool_oldest_age_s": d.spool_oldest_age_s,
        "received_at": received_at,
    }


def job_row(event: JobEvent, received_at: datetime) -> dict[str, Any]:
    d = event.data
    return {
        "dc_id": d.dc_id,
        "event_id": event.id,
        "time": event.time,
        "job_id": d.job_id,
        "tenant_id": d.tenant_id,
        "pool_id": d.pool_id,
        "device_model": d.device_model,
        "devices": d.devices,
        "phase": d.phase,
        "seq": d.seq,
        "device_seconds_total": d.device_seconds_total,
        "energy_kwh_total": d.energy_kwh_total,
        "status": d.status,
        "received_at": received_at,
    }
