"""The per-sample metrics of SPEC §4 and the rows that carry them: peaks, idle and online PFLOPS,
green kWh, carbon. Pure: values in, values out; no clock, no I/O.

The one definition of these figures: the worker computes them here and ClickHouse stores them
(migration 011 dropped the column defaults that derived PFLOPS in SQL); the views only sum and
pick them. idle = (devices_online - devices_allocated) * peak / 1000 and
online = devices_online * peak / 1000, in PFLOPS, with the peak in TFLOPS per device.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.catalogue import Catalogue
from schemas.events import CapacityEvent, PowerEvent

PRECISIONS = ("fp16", "fp32", "fp64")


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


def pflops(devices: int, peak_tflops: float) -> float:
    """PFLOPS of `devices` devices of `peak_tflops` TFLOPS each."""
    return devices * peak_tflops / 1000


def capacity_row(event: CapacityEvent, catalogue: Catalogue, received_at: datetime | int) -> tuple[Any, ...]:
    """One capacity_samples row (schemas.registry.CAPACITY_COLUMNS): the sample, its resolved
    peaks, and its idle and online PFLOPS at each precision."""
    d = event.data
    p16, p32, p64 = peaks(event, catalogue)
    online = d.devices_online
    idle = online - d.devices_allocated
    return (
        d.dc_id, d.pool_id, event.id, event.time, d.interval_s, d.device_model, d.devices_total,
        online, d.devices_allocated, d.busy_ratio, p16, p32, p64,
        idle * p16 / 1000, idle * p32 / 1000, idle * p64 / 1000,  # = pflops(idle, peak), inlined
        online * p16 / 1000, online * p32 / 1000, online * p64 / 1000,
        received_at,
    )


def green_kwh(event: PowerEvent) -> float:
    """green = green_contract + onsite_renewable + grid * grid_renewable_share."""
    s = event.data.sources_kwh
    return s.green_contract + s.onsite_renewable + s.grid * event.data.grid_renewable_share


def carbon_kg(event: PowerEvent) -> float:
    """carbon = grid * grid_emission_g_per_kwh / 1000."""
    return event.data.sources_kwh.grid * event.data.grid_emission_g_per_kwh / 1000


def power_row(event: PowerEvent, _catalogue: Catalogue, received_at: datetime | int) -> tuple[Any, ...]:
    """One power_samples row (schemas.registry.POWER_COLUMNS) with its green kWh and carbon."""
    d = event.data
    s = d.sources_kwh
    return (
        d.dc_id, event.id, event.time, d.interval_s, d.it_energy_kwh, d.facility_energy_kwh, s.grid,
        s.green_contract, s.onsite_renewable, d.grid_renewable_share, d.grid_emission_g_per_kwh,
        green_kwh(event), carbon_kg(event), received_at,
    )
