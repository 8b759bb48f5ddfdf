"""The operator's own tally of what the agent metered: job events as delivered, and their hourly sums
per job. I/O (one small SQLite file beside the spool); `hourly` is the pure part.

Every job event the broker acknowledged (the outbox's delivery reports, in the order they come,
which is the partition's order) is recorded once: `INSERT OR IGNORE` on `(dc_id, job_id, seq)`,
so a resend after a rewind or a restart changes nothing, with its cumulative totals and its
arrival number. An event spooled but not yet delivered, or given up, is not in the tally: it is
not in the platform's ledger either. The tally applies SPEC §4's ledger rule to them on its own:
per job, in arrival order, each event whose seq is above every earlier one yields
`device_seconds = its total - the previous highest seq's total` (the first: its total), likewise
`energy_kwh`, in the UTC hour that holds its `time`; a late lower seq yields nothing, a falling
total is skipped (the platform's counter_regression). The figures are rounded as SPEC §4.1
rounds a statement's entries (3 and 6 decimals, half-even, from the shortest round-trip decimal
form). Summed per DC and hour, they are what the platform's statements must say
(`surplus ledger verify FILE --tally TALLY`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from agents.records import JOB, Record
from surplus.paths import make_dir

log = logging.getLogger("agents.tally")
FILE_NAME = "tally.sqlite"
THREE, SIX = Decimal("0.001"), Decimal("0.000001")
COLUMNS = ("dc_id", "hour", "job_id", "entries", "device_seconds", "energy_kwh")

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_events (
    dc_id TEXT NOT NULL, job_id TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
    device_seconds_total REAL NOT NULL, energy_kwh_total REAL NOT NULL, arrival INTEGER,
    PRIMARY KEY (dc_id, job_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_events_time ON job_events (time_ms);
"""
# a tally written before arrival numbers were kept: its rows read in seq order, before new ones
UPGRADE = "ALTER TABLE job_events ADD COLUMN arrival INTEGER"
READ_ORDER = "ORDER BY e.arrival IS NOT NULL, e.arrival, e.seq"


@dataclass(frozen=True, slots=True)
class Sent:
    """One job event as delivered: its job, seq, event time (ms) and cumulative totals."""

    dc_id: str
    job_id: str
    seq: int
    time_ms: int
    device_seconds_total: float
    energy_kwh_total: float


@dataclass(frozen=True, slots=True)
class HourlyJob:
    """One row of the tally: a job's metering in one UTC hour."""

    dc_id: str
    hour: datetime
    job_id: str
    entries: int
    device_seconds: Decimal
    energy_kwh: Decimal

    def as_strings(self) -> dict[str, str]:
        return {"dc_id": self.dc_id, "hour": self.hour.strftime("%Y-%m-%dT%H:00:00Z"),
                "job_id": self.job_id, "entries": str(self.entries),
                "device_seconds": format(self.device_seconds, "f"),
                "energy_kwh": format(self.energy_kwh, "f")}


def _round(value: float, places: Decimal) -> Decimal:
    q = Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_EVEN)
    return q.copy_abs() if q.is_zero() else q


def _delta(total: float, previous: float | None) -> float:
    """The entry's figure as the platform stores it: exact decimal difference, as a float."""
    if previous is None:
        return total
    return float(Decimal(repr(total)) - Decimal(repr(previous)))


def hourly(events: Iterable[Sent]) -> list[HourlyJob]:
    """Per DC, hour and job: the entries the ledger rule yields and their rounded sums, the events
    taken in the order given (their arrival order). Per job, an event whose seq is not above
    every earlier seq yields nothing, nor one whose totals fall (the platform rejects it as
    counter_regression)."""
    sums: dict[tuple[str, datetime, str], tuple[int, Decimal, Decimal]] = {}
    last: dict[tuple[str, str], Sent] = {}
    for e in events:
        before = last.get((e.dc_id, e.job_id))
        if before is not None and (e.seq <= before.seq
                                   or e.device_seconds_total < before.device_seconds_total
                                   or e.energy_kwh_total < before.energy_kwh_total):
            continue
        seconds = _delta(e.device_seconds_total, before.device_seconds_total if before else None)
        energy = _delta(e.energy_kwh_total, before.energy_kwh_total if before else None)
        last[(e.dc_id, e.job_id)] = e
        key = (e.dc_id, datetime.fromtimestamp(e.time_ms // 3_600_000 * 3600, tz=UTC), e.job_id)
        n, s, kwh = sums.get(key, (0, Decimal("0.000"), Decimal("0.000000")))
        sums[key] = (n + 1, s + _round(seconds, THREE), kwh + _round(energy, SIX))
    return [HourlyJob(dc, hour, job, n, s, kwh) for (dc, hour, job), (n, s, kwh) in sorted(sums.items())]


def parse_job(rec: Record) -> Sent | None:
    """The tally's view of a spooled job event (None if its bytes are not a job event); the event
    time is the record's own (`time_ms`, what the spool keeps beside the bytes)."""
    try:
        d = json.loads(rec.value)["data"]
        return Sent(str(d["dc_id"]), str(d["job_id"]), int(d["seq"]), rec.time_ms,
                    float(d["device_seconds_total"]), float(d["energy_kwh_total"]))
    except (ValueError, KeyError, TypeError):
        return None


class Tally:
    """The tally file. `record` is called by the outbox with the records the broker acknowledged,
    in the order of their delivery reports."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        make_dir(self.path.parent, "the spool directory")  # never its missing parents
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        if "arrival" not in {row[1] for row in self._db.execute("PRAGMA table_info(job_events)")}:
            self._db.execute(UPGRADE)
        self._arrival = int(self._db.execute(
            "SELECT coalesce(max(arrival), 0) FROM job_events").fetchone()[0])

    def record(self, records: Sequence[Record]) -> int:
        """Keep the job events among `records` (delivered, in delivery order); return how many were
        job events. One already kept (a resend) keeps its first arrival."""
        sent = [s for r in records if r.kind == JOB and (s := parse_job(r)) is not None]
        if sent:
            first = self._arrival + 1
            self._arrival += len(sent)
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR IGNORE INTO job_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(s.dc_id, s.job_id, s.seq, s.time_ms, s.device_seconds_total,
                      s.energy_kwh_total, first + i) for i, s in enumerate(sent)])
        return len(sent)

    def between(self, start: datetime, end: datetime) -> list[HourlyJob]:
        """The tally rows of the hours that start in [start, end), every job's full history
        read so that each entry's figure is against its previous seq."""
        lo = int(start.timestamp()) // 3600 * 3_600_000
        hi = int(end.timestamp() * 1000)
        rows = self._db.execute(
            "SELECT e.dc_id, e.job_id, e.seq, e.time_ms, e.device_seconds_total, e.energy_kwh_total "
            "FROM job_events e JOIN (SELECT DISTINCT dc_id, job_id FROM job_events "
            f"WHERE time_ms >= ? AND time_ms < ?) j USING (dc_id, job_id) {READ_ORDER}",
            (lo, hi)).fetchall()
        start_hour = datetime.fromtimestamp(lo / 1000, tz=UTC)
        return [h for h in hourly(Sent(*r) for r in rows)
                if start_hour <= h.hour < end]

    def close(self) -> None:
        self._db.close()


def open_tally(spool_dir: Path) -> Tally | None:
    """The tally beside a spool; None (logged once) if the file cannot be opened."""
    try:
        return Tally(Path(spool_dir) / FILE_NAME)
    except (OSError, sqlite3.Error) as exc:
        log.error("the operator's tally %s cannot be opened (%s); metering goes on without it",
                  Path(spool_dir) / FILE_NAME, exc)
        return None


def render(rows: Sequence[HourlyJob], fmt: str) -> str:
    """The tally as CSV (columns dc_id, hour, job_id, entries, device_seconds, energy_kwh) or a
    JSON object `{"tally": [...]}` of the same fields as strings."""
    if fmt == "json":
        return json.dumps({"tally": [r.as_strings() for r in rows]}, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r.as_strings())
    return out.getvalue()
