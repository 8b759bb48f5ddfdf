"""The SQL reads behind `surplus report`, on the analyst relations of SPEC §5. I/O (ClickHouse).

Each function takes a client, the database name (a plain identifier, checked by
`surplus.store.parse_url`) and a `Scope`; it returns plain rows (dicts) with times made
timezone-aware UTC. Values are bound as query parameters, never pasted into the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from schemas import registry

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SURPLUS_COLUMNS = (
    "idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64, online_pflops_fp16, "
    "idle_devices, online_devices, allocated_devices, pools_reporting, pools_stale"
)
# tables whose rows carry an event `time` and a `dc_id` (every event type's, by the registry):
# when a DC last spoke
EVENT_TABLES = registry.tables()


@dataclass(frozen=True, slots=True)
class Scope:
    """What a report covers: the snapshot minute, the period, and the hub / DC restriction.

    `start`/`end` bound the period `(start, end]` (None: all data); `hours` are the first and
    last hour starts of the whole hours inside it, for the hourly energy relations.
    """

    ts: datetime | None
    start: datetime | None = None
    end: datetime | None = None
    hours: tuple[datetime, datetime] | None = None
    hub: str | None = None
    dc: str | None = None


def _rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params or {})
    return [
        {name: _utc(value) for name, value in zip(result.column_names, row, strict=True)}
        for row in result.result_rows
    ]


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _period(scope: Scope, column: str, params: dict[str, Any]) -> list[str]:
    conditions = []
    if scope.start is not None:
        conditions.append(f"{column} > {{start:DateTime('UTC')}}")
        params["start"] = scope.start
    if scope.end is not None:
        conditions.append(f"{column} <= {{end:DateTime('UTC')}}")
        params["end"] = scope.end
    return conditions


def _hours(scope: Scope, params: dict[str, Any]) -> list[str]:
    if scope.hours is None:
        return []
    params["hour0"], params["hour1"] = scope.hours
    return ["hour >= {hour0:DateTime('UTC')}", "hour <= {hour1:DateTime('UTC')}"]


def _place(scope: Scope, params: dict[str, Any], *, hub: str = "hub", dc: str | None = "dc_id") -> list[str]:
    conditions = []
    if scope.hub is not None:
        conditions.append(f"{hub} = {{hub:String}}")
        params["hub"] = scope.hub
    if scope.dc is not None and dc is not None:
        conditions.append(f"{dc} = {{dc:String}}")
        params["dc"] = scope.dc
    return conditions


# --- the store and its time -----------------------------------------------------------------


def relations(client: Client, database: str) -> set[str]:
    """The tables and views of the database (empty when it does not exist)."""
    rows = _rows(client, "SELECT name FROM system.tables WHERE database = {db:String}", {"db": database})
    return {r["name"] for r in rows}


def has_data(client: Client, database: str) -> bool:
    """Whether any capacity, power or ledger row has been written."""
    sql = " UNION ALL ".join(
        f"SELECT 1 FROM {database}.{table} LIMIT 1"
        for table in ("capacity_samples", "power_samples", "ledger_entries")
    )
    return bool(client.query(sql).result_rows)


def snapshot_minute(client: Client, database: str, at: datetime | None) -> datetime | None:
    """The latest `ts` of the national snapshot (at or before `at`); None when there is none."""
    params: dict[str, Any] = {}
    condition = ""
    if at is not None:
        condition = "WHERE ts <= {at:DateTime('UTC')}"
        params["at"] = at
    rows = _rows(
        client,
        f"SELECT ts FROM {database}.national_surplus_minute {condition} ORDER BY ts DESC LIMIT 1",
        params,
    )
    return rows[0]["ts"] if rows else None


def data_time(client: Client, database: str) -> datetime | None:
    """The latest event time in the store: "now" for data with a simulated clock."""
    sql = " UNION ALL ".join(
        f"SELECT max(time) AS t FROM {database}.{table} HAVING count() > 0" for table in EVENT_TABLES
    )
    rows = _rows(client, f"SELECT max(t) AS t, count() AS n FROM ({sql})")
    return rows[0]["t"] if rows and rows[0]["n"] else None


def dc_hub(client: Client, database: str, dc_id: str) -> str | None:
    """The hub of a DC ('none' when it never registered); None when the store never saw it."""
    seen = " UNION ALL ".join(
        f"SELECT 1 FROM {database}.{table} WHERE dc_id = {{dc:String}} LIMIT 1"
        for table in EVENT_TABLES
    )
    if not client.query(seen, parameters={"dc": dc_id}).result_rows:
        return None
    rows = _rows(client, f"SELECT hub FROM {database}.datacenters WHERE dc_id = {{dc:String}}",
                 {"dc": dc_id})
    hub = rows[0]["hub"] if rows else ""
    return str(hub) if hub else "none"


# --- surplus --------------------------------------------------------------------------------


def national_at(client: Client, database: str, scope: Scope) -> dict[str, Any] | None:
    rows = _rows(
        client,
        f"SELECT ts, {SURPLUS_COLUMNS} FROM {database}.national_surplus_minute "
        "WHERE ts = {ts:DateTime('UTC')}",
        {"ts": scope.ts},
    )
    return rows[0] if rows else None


def national_range(client: Client, database: str, scope: Scope) -> dict[str, Any]:
    """min / max of the national idle PFLOPS over the period (up to the snapshot minute)."""
    params: dict[str, Any] = {"ts": scope.ts}
    conditions = ["ts <= {ts:DateTime('UTC')}", *_period(scope, "ts", params)]
    sql = (
        "SELECT min(ts) AS first_ts, max(ts) AS last_ts, count() AS minutes, "
        + ", ".join(
            f"min(idle_pflops_{p}) AS min_{p}, max(idle_pflops_{p}) AS max_{p}"
            for p in ("fp16", "fp32", "fp64")
        )
        + f" FROM {database}.national_surplus_minute {_where(conditions)}"
    )
    return _rows(client, sql, params)[0]


def national_series(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    """The national idle PFLOPS per minute over the period, in time order."""
    params: dict[str, Any] = {}
    conditions = _period(scope, "ts", params)
    return _rows(
        client,
        "SELECT ts, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64 "
        f"FROM {database}.national_surplus_minute {_where(conditions)} ORDER BY ts",
        params,
    )


def hub_series(client: Client, database: str, scope: Scope, step_min: int = 1) -> list[dict[str, Any]]:
    """Idle FP16 PFLOPS per hub (`ts`, `hub`, `idle_pflops_fp16`) over the period, in time
    order: per minute, or per `step_min`-minute bucket the mean over the minutes the hub had a
    reporting pool (so that a month stays a chart of a few thousand points)."""
    params: dict[str, Any] = {"step": max(1, step_min)}
    conditions = [*_period(scope, "ts", params), *_place(scope, params, dc=None)]
    if scope.ts is not None:
        conditions.append("ts <= {ts:DateTime('UTC')}")
        params["ts"] = scope.ts
    rows = _rows(
        client,
        "SELECT toStartOfInterval(ts, toIntervalMinute({step:UInt32})) AS bucket, hub, "
        "avg(idle_pflops_fp16) AS idle_pflops_fp16 "
        f"FROM {database}.hub_surplus_minute {_where(conditions)} "
        "GROUP BY bucket, hub ORDER BY bucket, hub",
        params,
    )
    return [{"ts": r.pop("bucket"), **r} for r in rows]


def hubs_at(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"ts": scope.ts}
    conditions = ["ts = {ts:DateTime('UTC')}", *_place(scope, params, dc=None)]
    return _rows(
        client,
        f"SELECT hub, {SURPLUS_COLUMNS} FROM {database}.hub_surplus_minute {_where(conditions)}",
        params,
    )


def dcs_at(client: Client, database: str, scope: Scope, limit: int) -> list[dict[str, Any]]:
    """The DCs with the most idle FP16 PFLOPS at the snapshot minute."""
    params: dict[str, Any] = {"ts": scope.ts, "limit": limit}
    conditions = ["ts = {ts:DateTime('UTC')}", *_place(scope, params)]
    return _rows(
        client,
        f"SELECT dc_id, hub, province, {SURPLUS_COLUMNS} FROM {database}.dc_surplus_minute "
        f"{_where(conditions)} ORDER BY idle_pflops_fp16 DESC, dc_id LIMIT {{limit:UInt32}}",
        params,
    )


def devices_at(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    """Per DC and device model at the snapshot minute: idle, online and allocated devices of its
    reporting pools (each pool's latest sample standing for the minute, as in the surplus
    relations), so that accelerators and CPU cores can be told apart (the catalogue's `kind`).

    Every DC: the hub / DC restriction is the caller's. `device_model` is '' for a sample the
    store no longer holds.
    """
    ts = "{ts:DateTime('UTC')}"
    latest = (f"SELECT dc_id, pool_id, argMax((idle_devices, online_devices, allocated_devices, "
              f"event_id), (sample_time, event_id)) AS v FROM {database}.pool_minutes "
              f"WHERE ts = {ts} GROUP BY dc_id, pool_id")
    return _rows(
        client,
        "SELECT _p.dc_id AS dc_id, if(_d.hub = '', 'none', _d.hub) AS hub, "
        "_c.device_model AS device_model, sum(tupleElement(_p.v, 1)) AS idle_devices, "
        "sum(tupleElement(_p.v, 2)) AS online_devices, sum(tupleElement(_p.v, 3)) AS allocated_devices "
        f"FROM ({latest}) AS _p "
        "LEFT JOIN (SELECT dc_id, event_id, any(device_model) AS device_model "
        f"FROM {database}.capacity_samples WHERE time <= {ts} AND (dc_id, event_id) IN "
        f"(SELECT dc_id, tupleElement(v, 4) FROM ({latest})) GROUP BY dc_id, event_id) AS _c "
        "ON _c.dc_id = _p.dc_id AND _c.event_id = tupleElement(_p.v, 4) "
        f"LEFT JOIN {database}.datacenters AS _d ON _d.dc_id = _p.dc_id "
        "GROUP BY dc_id, hub, device_model",
        {"ts": scope.ts},
    )


def stale_pools_at(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    """Per DC with at least one stale pool at the snapshot minute: its pool counts."""
    params: dict[str, Any] = {"ts": scope.ts}
    conditions = ["ts = {ts:DateTime('UTC')}", *_place(scope, params)]
    return _rows(
        client,
        # per (minute, DC) rows, also of DCs with no reporting pool (the bounded path, SPEC §5)
        "SELECT dc_id, hub, province, pools_reporting, pools_stale FROM ("
        "SELECT _a.ts AS ts, _a.dc_id AS dc_id, if(_d.hub = '', 'none', _d.hub) AS hub, "
        "_d.province AS province, _a.pools_reporting AS pools_reporting, _a.pools_stale AS pools_stale "
        f"FROM {database}.dc_minute_all AS _a LEFT JOIN {database}.datacenters AS _d ON _d.dc_id = _a.dc_id "
        f"WHERE _a.ts = {{ts:DateTime('UTC')}}) {_where(conditions)} AND pools_stale > 0",
        params,
    )


def last_seen(client: Client, database: str, until: datetime) -> list[dict[str, Any]]:
    """Per DC, its latest event at or before `until` and its latest spool backlog (as of then).

    Like `agent_freshness`, but measured against the data's own clock instead of the wall clock.
    """
    union = " UNION ALL ".join(
        f"SELECT dc_id, max(time) AS t, toUInt64(0) AS backlog, toDateTime64(0, 3, 'UTC') AS bt "
        f"FROM {database}.{table} WHERE time <= {{until:DateTime64(3, 'UTC')}} GROUP BY dc_id"
        for table in EVENT_TABLES if table != "heartbeats"
    )
    union += (
        " UNION ALL SELECT dc_id, max(time), argMax(spool_backlog_events, time), max(time) "
        f"FROM {database}.heartbeats WHERE time <= {{until:DateTime64(3, 'UTC')}} GROUP BY dc_id"
    )
    return _rows(
        client,
        "SELECT u.dc_id AS dc_id, max(u.t) AS last_seen, argMax(u.backlog, u.bt) AS spool_backlog_events, "
        "if(any(d.hub) = '', 'none', any(d.hub)) AS hub, any(d.province) AS province "
        f"FROM ({union}) AS u LEFT JOIN {database}.datacenters AS d ON d.dc_id = u.dc_id "
        "GROUP BY u.dc_id",
        {"until": until},
    )


def dc_names(client: Client, database: str) -> dict[str, str]:
    return {r["dc_id"]: r["name"] for r in _rows(client, f"SELECT dc_id, name FROM {database}.datacenters")}


# --- energy, money, dead letters ------------------------------------------------------------


def green_by_hub(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    """Energy sums per hub over the period (ratios are taken from the sums by the caller)."""
    params: dict[str, Any] = {}
    conditions = [*_hours(scope, params), *_place(scope, params, dc=None)]
    return _rows(
        client,
        "SELECT hub, sum(facility_kwh) AS facility_kwh, sum(it_kwh) AS it_kwh, "
        "sum(green_kwh) AS green_kwh, sum(carbon_kg) AS carbon_kg "
        f"FROM {database}.hub_green_hourly {_where(conditions)} GROUP BY hub",
        params,
    )


def green_national(client: Client, database: str, scope: Scope) -> dict[str, Any]:
    params: dict[str, Any] = {}
    conditions = _hours(scope, params)
    return _rows(
        client,
        "SELECT sum(facility_kwh) AS facility_kwh, sum(it_kwh) AS it_kwh, "
        "sum(green_kwh) AS green_kwh, sum(carbon_kg) AS carbon_kg "
        f"FROM {database}.national_green_hourly {_where(conditions)}",
        params,
    )[0]


def green_series(client: Client, database: str, scope: Scope) -> list[dict[str, Any]]:
    """Hourly green share per hub over the period, in time order."""
    params: dict[str, Any] = {}
    conditions = [*_hours(scope, params), *_place(scope, params, dc=None)]
    return _rows(
        client,
        "SELECT hour, hub, green_share FROM "
        f"{database}.hub_green_hourly {_where(conditions)} ORDER BY hub, hour",
        params,
    )


def power_coverage(client: Client, database: str, scope: Scope) -> tuple[datetime, datetime, float] | None:
    """What the power samples of the period's hours cover: (the start of the first sample's
    interval, the time of the last sample, the longest interval in s); None without samples."""
    params: dict[str, Any] = {}
    conditions = []
    if scope.hours is not None:
        conditions = ["time >= {hour0:DateTime('UTC')}",
                      "time < {hour1:DateTime('UTC')} + toIntervalHour(1)"]
        params["hour0"], params["hour1"] = scope.hours
    rows = _rows(
        client,
        "SELECT min(time - toIntervalSecond(interval_s)) AS first, max(time) AS last, "
        f"max(interval_s) AS longest_s, count() AS n FROM {database}.power_samples "
        f"{_where(conditions)}",
        params,
    )
    row = rows[0] if rows else None
    if not row or not row["n"]:
        return None
    return row["first"], row["last"], float(row["longest_s"])


def tenants(client: Client, database: str, scope: Scope, limit: int | None) -> list[dict[str, Any]]:
    """Usage and amounts per tenant over the period, the largest amounts first, with the
    device-hours that had no price (`unpriced_device_hours`).

    All data: the daily relation `tenant_usage_daily`. A bounded period: the entries of
    `ledger` whose `period_end` is in it (the same attribution, exact to the entry).
    """
    params: dict[str, Any] = {}
    if scope.start is None and scope.end is None:
        source = (f"SELECT tenant_id, dc_id, device_hours, energy_kwh, amount_cny, unpriced_device_hours "
                  f"FROM {database}.tenant_usage_daily")
    else:  # the entries behind cpn.ledger, with their `priced` flag
        source = (f"SELECT tenant_id, dc_id, device_seconds / 3600 AS device_hours, energy_kwh, "
                  f"amount_cny, if(priced = 0, device_seconds, 0) / 3600 AS unpriced_device_hours "
                  f"FROM {database}.ledger_entries FINAL "
                  f"{_where(_period(scope, 'period_end', params))}")
    conditions = _place(scope, params, hub="if(d.hub = '', 'none', d.hub)", dc="u.dc_id")
    limit_sql = ""
    if limit is not None:
        limit_sql = "LIMIT {limit:UInt32}"
        params["limit"] = limit
    rows = _rows(
        client,
        "SELECT u.tenant_id AS tenant_id, sum(u.device_hours) AS device_hours, "
        "sum(u.energy_kwh) AS energy_kwh, sum(u.amount_cny) AS amount_cny, "
        "sum(u.unpriced_device_hours) AS unpriced_device_hours, "
        f"uniqExact(u.dc_id) AS dcs FROM ({source}) AS u "
        f"LEFT JOIN {database}.datacenters AS d ON d.dc_id = u.dc_id {_where(conditions)} "
        f"GROUP BY u.tenant_id ORDER BY amount_cny DESC, tenant_id {limit_sql}",
        params,
    )
    for row in rows:
        row["amount_cny"] = Decimal(row["amount_cny"])
    return rows


def deadletters(client: Client, database: str) -> list[dict[str, Any]]:
    """Rejected messages by reason (all of them: `received_at` is the receiver's clock)."""
    return _rows(
        client,
        f"SELECT reason, count() AS count FROM {database}.deadletter FINAL "
        "GROUP BY reason ORDER BY count DESC, reason",
    )
