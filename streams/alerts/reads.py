"""The alert evaluator's reads of the store: bounded queries that fill a Snapshot. I/O (ClickHouse).

Blocking calls (run them in a thread from async code). Every query names the window it needs:
the newest event time (`max(time)` of the time-partitioned periodic streams, answered from the
parts' min/max index), when each DC last spoke (`agent_freshness`, one row per DC, for
`dc_silent`), one closed hour of `dc_green_hourly`, one minute of `national_surplus_minute` /
`hub_surplus_minute`, the `window_s` of `pipeline_metrics` (every worker's counters), the
`clear_after_s` of unpriced ledger entries, each DC's heartbeats of the last `window_s` (twice
that back, for a DC whose clock is behind). National and hub figures are read from the whole
store, whatever worker wrote which partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from streams.alerts.snapshot import (
    EPOCH,
    SPOOL_FUTURE,
    Counts,
    Energy,
    Idle,
    Needs,
    Snapshot,
    SpoolTrend,
    utc,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# the periodic streams, partitioned by toYYYYMM(time): ClickHouse answers max(time) from the
# parts' min/max index (`_minmax_count_projection`), reading one row, whatever the history
CLOCK_TABLES = ("capacity_samples", "power_samples", "heartbeats")
COUNTER_BASELINE = timedelta(hours=1)  # how far back a worker's counter is looked up


def text(t: datetime) -> str:
    return utc(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class StoreReads:
    """Reads one database for the alert rules."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def _query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        result = self.client.query(sql.replace("{db}", self.database), parameters=params)
        return [tuple(row) for row in result.result_rows]

    def newest_event(self) -> datetime | None:
        """The newest event time of the periodic streams (capacity, power, heartbeats), or None
        for an empty store."""
        parts = " UNION ALL ".join(f"SELECT max(time) AS t FROM {{db}}.{t}" for t in CLOCK_TABLES)
        rows = self._query(f"SELECT max(t) FROM ({parts})")
        newest = utc(rows[0][0]) if rows and rows[0][0] is not None else None
        return newest if newest is not None and newest > EPOCH else None

    def snapshot(self, need: Needs, now: datetime, wall: datetime, started_at: datetime) -> Snapshot:
        """Everything the rules read at stream time `now`, within the windows of `need`."""
        return Snapshot(
            now=now, wall=wall, started_at=started_at,
            hubs=self.hubs(),
            last_seen=self.last_seen() if need.silence else {},
            energy=self.energy(need.energy_hours),
            national=self.national(need.national_minutes),
            hub_idle=self.hub_idle(need.hub_minutes),
            deadletter={w: self.counts(wall - timedelta(seconds=w), wall)
                        for w in need.deadletter_windows_s},
            unpriced=self.unpriced(need.unpriced_since) if need.unpriced_since else {},
            spool={w: self.spool(now, w) for w in need.spool_windows_s},
        )

    def hubs(self) -> dict[str, str]:
        return {dc: hub for dc, hub in self._query("SELECT dc_id, hub FROM {db}.datacenters")}

    def last_seen(self) -> dict[str, datetime]:
        """Per DC, its newest event time (`agent_freshness`, one row per DC)."""
        rows = self._query("SELECT dc_id, last_seen FROM {db}.agent_freshness")
        return {str(dc): utc(t) for dc, t in rows if t is not None and utc(t) > EPOCH}

    def energy(self, hours: Iterable[datetime]) -> dict[datetime, dict[str, Energy]]:
        """Per closed hour and DC: (facility_kwh, it_kwh, green_kwh) from `dc_green_hourly`."""
        out: dict[datetime, dict[str, Energy]] = {}
        for hour in sorted(hours):
            rows = self._query(
                "SELECT dc_id, facility_kwh, it_kwh, green_kwh FROM {db}.dc_green_hourly "
                "WHERE hour = toDateTime({hour:String}, 'UTC')", hour=text(hour)[:19])
            out[hour] = {str(dc): (float(f), float(i), float(g)) for dc, f, i, g in rows}
        return out

    def national(self, minutes: Iterable[datetime]) -> dict[datetime, Idle]:
        out: dict[datetime, Idle] = {}
        for minute in sorted(minutes):
            rows = self._query(
                "SELECT idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64 "
                "FROM {db}.national_surplus_minute WHERE ts = toDateTime({ts:String}, 'UTC')",
                ts=text(minute)[:19])
            if rows:
                out[minute] = (float(rows[0][0]), float(rows[0][1]), float(rows[0][2]))
        return out

    def hub_idle(self, minutes: Iterable[datetime]) -> dict[datetime, dict[str, Idle]]:
        out: dict[datetime, dict[str, Idle]] = {}
        for minute in sorted(minutes):
            rows = self._query(
                "SELECT hub, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64 "
                "FROM {db}.hub_surplus_minute WHERE ts = toDateTime({ts:String}, 'UTC')",
                ts=text(minute)[:19])
            out[minute] = {str(h): (float(a), float(b), float(c)) for h, a, b, c in rows}
        return out

    def counts(self, start: datetime, end: datetime) -> Counts:
        """Events in and rejected in (start, end], summed over every worker's counters in
        `pipeline_metrics` (counts since each worker's start: the increase over the window)."""
        rows = self._query(
            "SELECT worker, metric, label, "
            "countIf(ts <= toDateTime64({start:String}, 3, 'UTC')) AS before, "
            "argMaxIf(value, ts, ts <= toDateTime64({start:String}, 3, 'UTC')) AS baseline, "
            "countIf(ts > toDateTime64({start:String}, 3, 'UTC')) AS inside, "
            "argMaxIf(value, ts, ts > toDateTime64({start:String}, 3, 'UTC')) AS last "
            "FROM {db}.pipeline_metrics "
            "WHERE metric IN ('events_in', 'rejected') "
            "AND ts > toDateTime64({lookback:String}, 3, 'UTC') "
            "AND ts <= toDateTime64({end:String}, 3, 'UTC') "
            "GROUP BY worker, metric, label",
            start=text(start), end=text(end), lookback=text(start - COUNTER_BASELINE))
        events = rejected = 0.0
        for _worker, metric, _label, before, baseline, inside, last in rows:
            if not inside:
                continue
            # a counter lower than before means the worker restarted: it counts from zero
            increase = last - baseline if before and last >= baseline else last
            if metric == "events_in":
                events += increase
            else:
                rejected += increase
        return Counts(events=int(events), rejected=int(rejected))

    def unpriced(self, since: datetime) -> dict[tuple[str, str], datetime]:
        """Per (dc_id, device_model): the end of its latest ledger entry with no price, after `since`."""
        rows = self._query(
            "SELECT dc_id, device_model, max(period_end) FROM {db}.ledger_entries "
            "WHERE priced = 0 AND period_end > toDateTime64({since:String}, 3, 'UTC') "
            "GROUP BY dc_id, device_model", since=text(since))
        return {(str(dc), str(model)): utc(t) for dc, model, t in rows}

    def spool(self, now: datetime, window_s: float) -> dict[str, SpoolTrend]:
        """Per DC whose latest heartbeat is within `window_s` of stream time `now` (or up to
        300 s ahead of it): the trend of `spool_backlog_events` over its heartbeats in the
        `window_s` up to that latest one (`SpoolTrend`, sums for a least-squares slope). Reads
        `heartbeats` in (now - 2 * window_s, now + 300 s], each `event_id` once."""
        rows = self._query(
            "SELECT dc_id, count(), sum(x), sum(y), sum(x * x), sum(x * y), -min(x), "
            "argMax(b, t), max(t) FROM ("
            " SELECT dc_id, t, b, toFloat64(b) AS y,"
            " (toUnixTimestamp64Milli(t) - toUnixTimestamp64Milli(last)) / 1000.0 AS x FROM ("
            "  SELECT dc_id, t, b, max(t) OVER (PARTITION BY dc_id) AS last FROM ("
            "   SELECT dc_id, event_id, any(time) AS t, any(spool_backlog_events) AS b"
            "   FROM {db}.heartbeats"
            "   WHERE time > toDateTime64({lo:String}, 3, 'UTC')"
            "   AND time <= toDateTime64({hi:String}, 3, 'UTC')"
            "   GROUP BY dc_id, event_id))"
            " WHERE last > toDateTime64({recent:String}, 3, 'UTC')"
            " AND t > last - toIntervalMillisecond({window_ms:Int64})) "
            "GROUP BY dc_id",
            lo=text(now - 2 * timedelta(seconds=window_s)), hi=text(now + SPOOL_FUTURE),
            recent=text(now - timedelta(seconds=window_s)), window_ms=int(window_s * 1000))
        return {str(dc): SpoolTrend(n=int(n), sx=float(sx), sy=float(sy), sxx=float(sxx),
                                    sxy=float(sxy), span_s=float(span), backlog=int(backlog),
                                    last=utc(last))
                for dc, n, sx, sy, sxx, sxy, span, backlog, last in rows}
