"""Allocated against metered accelerator device-hours in the demo, and why they differ. Reads the
store (ClickHouse side); `explain` is pure.

The two figures measure different things. *Allocated* device-hours come from the capacity
samples: `devices_allocated * interval_s / 3600` per sample (a sample covers its interval).
*Metered* device-hours are the ledger's: the usage jobs reported (SPEC §4). In the simulator
(agents/simpool.py) a pool's allocation follows its diurnal curve, and metered jobs are sized to
fill only `metered_share` of it (0.3 in the demo's fleet): the rest stands for capacity allocated
outside per-job metering (reservations, the operator's own use). And the live part starts with
no job running: jobs arrive from its first minute and run for hours, so over a few simulated
hours the metered share climbs from 0 towards `metered_share` and stays below it. The backfilled
history (`--backfill-days`) has capacity samples and no jobs at all. The same comparison in SQL:

    SELECT sum(devices_allocated * interval_s) / 3600 FROM cpn.capacity_samples
    WHERE time > {since} AND device_model IN {accelerators};
    SELECT sum(device_seconds) / 3600 FROM cpn.ledger
    WHERE period_end > {since} AND device_model IN {accelerators};
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def simulated_share(pools: Iterable[tuple[str, int, float]], accelerators: set[str]) -> float | None:
    """The device-weighted `metered_share` of the accelerator pools, from (model, devices,
    metered_share) triples; None without accelerator pools."""
    chosen = [(devices, share) for model, devices, share in pools if model in accelerators]
    total = sum(d for d, _ in chosen)
    return sum(d * s for d, s in chosen) / total if total else None


def metering(client: Client, database: str, since: datetime, accelerators: set[str],
             simulated: float | None) -> dict[str, Any]:
    """Allocated and metered accelerator device-hours after `since` (the live part's start):
    `{"since", "allocated_device_hours", "metered_device_hours", "metered_share",
    "simulated_metered_share"}` (shares 0..1, None when nothing was allocated)."""
    models = sorted(accelerators)
    params = {"since": since, "models": models}
    allocated = client.query(
        f"SELECT sum(devices_allocated * interval_s) / 3600 FROM {database}.capacity_samples "
        "WHERE time > {since:DateTime64(3, 'UTC')} AND device_model IN {models:Array(String)}",
        parameters=params).result_rows[0][0] or 0.0
    metered = client.query(
        f"SELECT sum(device_seconds) / 3600 FROM {database}.ledger "
        "WHERE period_end > {since:DateTime64(3, 'UTC')} AND device_model IN {models:Array(String)}",
        parameters=params).result_rows[0][0] or 0.0
    return {"since": since.isoformat().replace("+00:00", "Z"),
            "allocated_device_hours": float(allocated), "metered_device_hours": float(metered),
            "metered_share": float(metered) / float(allocated) if allocated else None,
            "simulated_metered_share": simulated}


def explain(m: dict[str, Any]) -> str:
    """The demo's lines on the two figures (plain text, wraps at spaces)."""
    share = m["metered_share"]
    target = m["simulated_metered_share"]
    figures = (f"Accelerator device-hours since the live part began: {m['metered_device_hours']:,.1f} "
               f"metered (ledger) of {m['allocated_device_hours']:,.1f} allocated (capacity samples)"
               + (f", {share:.1%}" if share is not None else "") + ".")
    why = ("They differ by design: the simulated jobs fill about "
           + (f"{target:.0%}" if target is not None else "a share")
           + " of each pool's allocation (the rest is allocated outside metered jobs: reservations, "
           "the operator's own use), and the live part starts with no job running, so the metered "
           "share climbs towards that over the jobs' hours; the backfilled history has no jobs.")
    return figures + "\n" + why
