"""Ledger reconciliation: per job, the sum of its entries against its highest-seq raw totals. I/O (reads)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

TOLERANCE = Decimal("0.000001")

SQL = """
SELECT
    dc_id, job_id,
    e.entries, e.seconds, e.energy, e.top_seq,
    r.events, r.seconds_total, r.energy_total, r.top_seq
FROM
(
    SELECT dc_id, job_id, count() AS entries, max(seq) AS top_seq,
           sum(toDecimal128(device_seconds, 6)) AS seconds, sum(toDecimal128(energy_kwh, 6)) AS energy
    FROM {db}.ledger_entries FINAL
    GROUP BY dc_id, job_id
) AS e
FULL OUTER JOIN
(
    SELECT dc_id, job_id, count() AS events, max(seq) AS top_seq,
           toDecimal128(argMax(device_seconds_total, seq), 6) AS seconds_total,
           toDecimal128(argMax(energy_kwh_total, seq), 6) AS energy_total
    FROM {db}.job_events FINAL
    GROUP BY dc_id, job_id
) AS r
USING (dc_id, job_id)
SETTINGS join_use_nulls = 1
"""


@dataclass(frozen=True, slots=True)
class Difference:
    dc_id: str
    job_id: str
    what: str


def reconcile(client: Client, database: str) -> tuple[int, list[Difference]]:
    """(jobs compared, differences): there should be none."""
    rows: list[Any] = list(client.query(SQL.replace("{db}", database)).result_rows)
    diffs: list[Difference] = []
    for dc_id, job_id, entries, seconds, energy, e_seq, events, s_total, e_total, r_seq in rows:
        if entries is None or entries == 0:
            diffs.append(Difference(dc_id, job_id, f"{events} raw events but no ledger entry"))
            continue
        if events is None or events == 0:
            diffs.append(Difference(dc_id, job_id, f"{entries} ledger entries but no raw event"))
            continue
        if e_seq != r_seq:
            diffs.append(Difference(dc_id, job_id, f"highest seq: entries {e_seq}, raw events {r_seq}"))
        if abs(Decimal(seconds) - Decimal(s_total)) > TOLERANCE:
            diffs.append(Difference(dc_id, job_id, f"device_seconds: entries {seconds}, totals {s_total}"))
        if abs(Decimal(energy) - Decimal(e_total)) > TOLERANCE:
            diffs.append(Difference(dc_id, job_id, f"energy_kwh: entries sum {energy}, totals {e_total}"))
    return len(rows), diffs
