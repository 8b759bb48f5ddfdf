"""Roll-ups of the surplus relations: settle the hours touched since the last run. I/O (ClickHouse).

Migration 021 reads the minutes of *settled* hours from `dc_minute_rollup` and the hourly
relations of settled hours from `*_hourly_rollup`; every other hour is computed on the fly from
the incremental state, so the relations are exact whether or not a roll-up ran. A roll-up
computes the unsettled hours (`surplus_unsettled_hours`) from that state, writes their rows and
then marks them settled as of the moment its reads began, less `MARGIN_S` for inserts still in
flight; a sample that touches an hour later unsettles it again. Idempotent; safe to run from
several processes (the newest roll-up of an hour wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

MARGIN_S = 60
HUBS = ("jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx", "none")

_HOURLY = (
    "count() AS minutes, "
    "avg(idle_pflops_fp16), min(idle_pflops_fp16), max(idle_pflops_fp16), "
    "avg(idle_pflops_fp32), min(idle_pflops_fp32), max(idle_pflops_fp32), "
    "avg(idle_pflops_fp64), min(idle_pflops_fp64), max(idle_pflops_fp64), "
    "avg(online_pflops_fp16), avg(idle_devices)"
)
_SUMS = (
    "sum(idle_pflops_fp16) AS idle_pflops_fp16, sum(idle_pflops_fp32) AS idle_pflops_fp32, "
    "sum(idle_pflops_fp64) AS idle_pflops_fp64, sum(online_pflops_fp16) AS online_pflops_fp16, "
    "sum(idle_devices) AS idle_devices, sum(pools_reporting) AS pools_reporting"
)


@dataclass(frozen=True, slots=True)
class Rolled:
    """What one roll-up did: the hours it settled (oldest, newest) and how many."""

    hours: int
    first: str | None = None
    last: str | None = None


def rollup(client: Client, database: str, *, margin_s: int = MARGIN_S) -> Rolled:
    """Compute and settle every unsettled hour; returns what was settled (0 hours: nothing to do).

    `margin_s`: how long before the roll-up's start an insert may still be in flight (seconds);
    an hour touched within it stays unsettled until the next run.
    """
    db = database
    started, hub_map = client.query(
        f"SELECT now64(6, 'UTC'), (SELECT hub_map FROM {db}.surplus_hub_map)"
    ).result_rows[0]
    hours = [r[0] for r in client.query(
        f"SELECT hour FROM {db}.surplus_unsettled_hours ORDER BY hour").result_rows]
    if not hours:
        return Rolled(0)
    at = {"at": started}
    stamp = "{at:DateTime64(6, 'UTC')}"
    client.command(
        f"INSERT INTO {db}.dc_minute_rollup SELECT ts, dc_id, idle_pflops_fp16, idle_pflops_fp32, "
        "idle_pflops_fp64, online_pflops_fp16, idle_devices, online_devices, allocated_devices, "
        f"pools_reporting, pools_stale, {stamp} FROM {db}.dc_minute_live",
        parameters=at,
    )
    # the hourly roll-ups of the hours just written, from those rows (the live state is read once)
    minutes = (f"(SELECT * FROM {db}.dc_minute_rollup FINAL WHERE ts >= {{first:DateTime('UTC')}} "
               "AND toStartOfHour(ts) IN {hours:Array(DateTime('UTC'))})")
    at = {**at, "first": hours[0], "hours": hours}
    client.command(
        f"INSERT INTO {db}.dc_hourly_rollup SELECT toStartOfHour(ts) AS hour, dc_id, {_HOURLY}, {stamp} "
        f"FROM {minutes} WHERE pools_reporting > 0 GROUP BY hour, dc_id",
        parameters=at,
    )
    client.command(
        f"INSERT INTO {db}.national_hourly_rollup SELECT toStartOfHour(ts) AS hour, {_HOURLY}, {stamp} "
        f"FROM (SELECT ts, {_SUMS} FROM {minutes} GROUP BY ts HAVING pools_reporting > 0) "
        "GROUP BY hour",
        parameters=at,
    )
    # every hub of every hour, zeros where a hub had no minute: a newer roll-up replaces them all
    hubs = ", ".join(f"'{h}'" for h in HUBS)
    client.command(
        f"INSERT INTO {db}.hub_hourly_rollup "
        "SELECT _g.hour, _g.hub, _c.minutes, _c.a16, _c.n16, _c.x16, _c.a32, _c.n32, _c.x32, "
        f"_c.a64, _c.n64, _c.x64, _c.o16, _c.d, {stamp} "
        f"FROM (SELECT arrayJoin({{hours:Array(DateTime('UTC'))}}) AS hour, arrayJoin([{hubs}]) AS hub) AS _g "
        "LEFT JOIN ("
        "SELECT toStartOfHour(ts) AS hour, hub, count() AS minutes, "
        "avg(idle_pflops_fp16) AS a16, min(idle_pflops_fp16) AS n16, max(idle_pflops_fp16) AS x16, "
        "avg(idle_pflops_fp32) AS a32, min(idle_pflops_fp32) AS n32, max(idle_pflops_fp32) AS x32, "
        "avg(idle_pflops_fp64) AS a64, min(idle_pflops_fp64) AS n64, max(idle_pflops_fp64) AS x64, "
        "avg(online_pflops_fp16) AS o16, avg(idle_devices) AS d FROM ("
        f"SELECT _l.ts AS ts, if(_d.hub = '', 'none', _d.hub) AS hub, {_SUMS.replace('sum(', 'sum(_l.')} "
        f"FROM {minutes} AS _l LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _l.dc_id "
        "GROUP BY ts, hub HAVING pools_reporting > 0) GROUP BY hour, hub"
        ") AS _c ON _c.hour = _g.hour AND _c.hub = _g.hub",
        parameters=at,
    )
    client.command(
        f"INSERT INTO {db}.surplus_rolled_hours (hour, computed_from, hub_map) "
        f"SELECT arrayJoin({{hours:Array(DateTime('UTC'))}}), {stamp} - toIntervalSecond({int(margin_s)}), "
        "{hub_map:UInt64}",
        parameters={**at, "hub_map": int(hub_map)},
    )
    return Rolled(len(hours), str(hours[0]), str(hours[-1]))
