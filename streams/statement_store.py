"""Statements in ClickHouse: read the hours to close and their entries from cpn.ledger_entries, read
and write cpn.ledger_statements. I/O (ClickHouse, blocking).

What a close run looks at (so that a run reads what changed, not all history, once statements
exist): hours before the cutoff whose entries were written since the last run (late data,
replays), and hours that were not yet past their grace at the last run. `full=True` looks at
every hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streams.statements import COLUMNS, Entry, Statement

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

HOURS_PER_QUERY = 168


def utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class HourSummary:
    """What the store says of one (dc_id, hour) of the ledger: entries and the newest write."""

    dc_id: str
    hour: datetime
    entries: int
    last_written: datetime


class StatementStore:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database

    def _rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        result = self.client.query(sql.replace("{db}", self.db), parameters=params)
        return [tuple(r) for r in result.result_rows]

    # --- statements ------------------------------------------------------------------------

    def _statements(self, where: str, tail: str = "", **params: Any) -> list[Statement]:
        cols = ", ".join(COLUMNS)
        rows = self._rows(f"SELECT {cols} FROM {{db}}.ledger_statements FINAL WHERE {where} {tail}",
                          **params)
        return [statement_of(r) for r in rows]

    def last_run(self) -> datetime | None:
        """closed_at of the newest statement (every statement of a run shares it)."""
        rows = self._rows("SELECT count(), max(closed_at) FROM {db}.ledger_statements")
        return utc(rows[0][1]) if rows and rows[0][0] else None

    def heads(self) -> dict[str, Statement]:
        """Each DC's last issued statement (the head of its chain)."""
        found = self._statements("1", "ORDER BY closed_at DESC, hour DESC, version DESC "
                                 "LIMIT 1 BY dc_id")
        return {s.dc_id: s for s in found}

    def latest(self, hours: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], Statement]:
        """The latest version of each of `hours` that has a statement."""
        wanted = set(hours)
        if not wanted:
            return {}
        lo = min(h for _, h in wanted)
        hi = max(h for _, h in wanted) + timedelta(hours=1)
        found = self._statements("hour >= {lo:DateTime('UTC')} AND hour < {hi:DateTime('UTC')} "
                                 "AND dc_id IN {dcs:Array(String)}",
                                 "ORDER BY version DESC LIMIT 1 BY dc_id, hour",
                                 lo=lo, hi=hi, dcs=sorted({d for d, _ in wanted}))
        return {(s.dc_id, s.hour): s for s in found if (s.dc_id, s.hour) in wanted}

    def chain(self, dc_id: str) -> list[Statement]:
        """Every statement of a DC in the order it was issued."""
        return self._statements("dc_id = {dc:String}", "ORDER BY closed_at, hour, version",
                                dc=dc_id)

    def insert(self, statements: Sequence[Statement]) -> None:
        """One insert (one block: all or nothing) of a run's statements."""
        if statements:
            rows = [[s.dc_id, s.hour, s.version, s.reason, s.entries, s.device_seconds,
                     s.energy_kwh, s.amount_cny, s.entries_digest, s.prev_hash, s.hash, s.key_id,
                     s.signature, s.closed_at] for s in statements]
            self.client.insert(f"{self.db}.ledger_statements", rows, column_names=list(COLUMNS))

    # --- the ledger ------------------------------------------------------------------------

    def hours(self, cutoff: datetime, *, since: datetime | None, grace_s: float) -> list[HourSummary]:
        """The (dc_id, hour)s with entries before `cutoff` that a run must look at: all of them
        when `since` (the last run) is None, else those written since `since` or whose hour
        was not yet past its grace at `since`."""
        where = "period_end < {cutoff:DateTime64(3, 'UTC')}"
        params: dict[str, Any] = {"cutoff": cutoff}
        if since is not None:
            where += (" AND (written_at >= {since:DateTime64(3, 'UTC')} "
                      "OR period_end >= {open_from:DateTime64(3, 'UTC')})")
            params["since"] = since
            params["open_from"] = since - timedelta(seconds=grace_s, hours=2)
        rows = self._rows(
            "SELECT dc_id, toStartOfHour(period_end) AS h, count(), max(written_at) "
            f"FROM {{db}}.ledger_entries FINAL WHERE {where} GROUP BY dc_id, h", **params)
        return [HourSummary(dc, utc(h), int(n), utc(w)) for dc, h, n, w in rows]

    def entries(self, hours: Iterable[tuple[str, datetime]],
                written_by: datetime | None = None) -> dict[tuple[str, datetime], list[Entry]]:
        """The entries of each of `hours` (only those written by `written_by`, when given)."""
        wanted = sorted(set(hours), key=lambda k: (k[1], k[0]))
        out: dict[tuple[str, datetime], list[Entry]] = {k: [] for k in wanted}
        distinct = sorted({h for _, h in wanted})
        for i in range(0, len(distinct), HOURS_PER_QUERY):
            chunk = distinct[i:i + HOURS_PER_QUERY]
            dcs = sorted({d for d, h in wanted if chunk[0] <= h <= chunk[-1]})
            sql = ("SELECT dc_id, toStartOfHour(period_end) AS h, entry_id, device_seconds, "
                   "energy_kwh, amount_cny FROM {db}.ledger_entries FINAL "
                   "WHERE period_end >= {lo:DateTime64(3, 'UTC')} "
                   "AND period_end < {hi:DateTime64(3, 'UTC')} AND dc_id IN {dcs:Array(String)}")
            params: dict[str, Any] = {"lo": chunk[0], "hi": chunk[-1] + timedelta(hours=1),
                                      "dcs": dcs}
            if written_by is not None:
                sql += " AND written_at <= {by:DateTime64(3, 'UTC')}"
                params["by"] = written_by
            for dc, h, entry_id, seconds, energy, amount in self._rows(sql, **params):
                key = (dc, utc(h))
                if key in out:
                    out[key].append(Entry.of(entry_id, seconds, energy, Decimal(amount)))
        return out


def statement_of(row: Sequence[Any]) -> Statement:
    (dc_id, hour, version, reason, entries, seconds, energy, amount, digest, prev, h, key_id,
     signature, closed_at) = row
    return Statement(dc_id, utc(hour), int(version), reason, int(entries), Decimal(seconds),
                     Decimal(energy), Decimal(amount), digest, prev, h, key_id, signature,
                     utc(closed_at))
