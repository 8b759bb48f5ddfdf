"""Accepted events -> table rows (SPEC §4), by the registry of event types. Pure: values in, rows out.

Each type's table, column order and row builder are declared in schemas/registry.py; the
metrics the rows carry (idle/online PFLOPS, green kWh, carbon) are defined once, in
schemas/metrics.py. Every column of a row is written (no column is derived by ClickHouse but the
pool minutes, migration 009); `streams.sink.Sink.check_schema` compares these columns with the
tables at start and refuses to run on a drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import registry
from schemas.catalogue import Catalogue
from schemas.metrics import capacity_row, carbon_kg, catalogue_peaks, green_kwh, peaks, power_row

__all__ = ["COLUMNS", "capacity_row", "carbon_kg", "catalogue_peaks", "green_kwh", "peaks",
           "power_row", "row"]

# raw table -> column order of its rows (tuples on the hot path: no dict per event)
COLUMNS = registry.COLUMNS


def row(event: Any, catalogue: Catalogue, received_at: datetime | int) -> tuple[Any, ...]:
    """The row of an accepted event in its type's table, in that table's COLUMNS order."""
    return registry.TYPES[event.type].build_row(event, catalogue, received_at)
