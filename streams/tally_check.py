"""The operator's tally against the platform's statements: every hour where they differ. Pure.

The tally is what `surplus agent tally` prints (CSV or JSON: dc_id, hour, job_id, entries,
device_seconds, energy_kwh). Per hour of the statement file's DC, from its first to its last
statement hour, the latest version's entries, device_seconds and energy_kwh are compared with
the tally's sums over jobs; an hour with tally rows and no statement, or with a statement and no
tally rows, differs too. When the file carries entries, the jobs that differ are named (an
entry id is `<dc_id>/<job_id>/<seq>`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from streams.statement_files import BadFile, Document, latest_versions
from streams.statements import Entry, fixed, hour_start, hour_text

FIELDS = ("dc_id", "hour", "job_id", "entries", "device_seconds", "energy_kwh")
Figures = tuple[int, Decimal, Decimal]  # entries, device_seconds, energy_kwh


@dataclass(frozen=True, slots=True)
class TallyRow:
    dc_id: str
    hour: datetime
    job_id: str
    entries: int
    device_seconds: Decimal
    energy_kwh: Decimal


@dataclass(frozen=True, slots=True)
class Difference:
    hour: datetime
    platform: Figures | None
    operator: Figures | None
    jobs: tuple[str, ...] = ()

    def line(self) -> str:
        jobs = f"; jobs {', '.join(self.jobs)}" if self.jobs else ""
        return f"{hour_text(self.hour)}: platform {_text(self.platform)}, " \
            f"operator {_text(self.operator)}{jobs}"


def _text(f: Figures | None) -> str:
    if f is None:
        return "nothing"
    return f"{f[0]} entries, {fixed(f[1], 'device_seconds')} device-seconds, " \
        f"{fixed(f[2], 'energy_kwh')} kWh"


def parse_tally(text: str) -> list[TallyRow]:
    """Rows of a tally file (CSV with a header, or JSON `{"tally": [...]}`); BadFile if not."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            items = json.loads(stripped).get("tally")
        except (json.JSONDecodeError, AttributeError):
            raise BadFile("the tally is neither CSV nor a JSON object with a `tally` list") from None
        if not isinstance(items, list):
            raise BadFile("the tally's JSON has no `tally` list")
    else:
        items = list(csv.DictReader(io.StringIO(text)))
    rows = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str) for f in FIELDS):
            raise BadFile(f"tally row {n}: needs {', '.join(FIELDS)} as strings")
        try:
            hour = datetime.fromisoformat(item["hour"]).astimezone(UTC)
            rows.append(TallyRow(item["dc_id"], hour_start(hour), item["job_id"],
                                 int(item["entries"]), Decimal(item["device_seconds"]),
                                 Decimal(item["energy_kwh"])))
        except (ValueError, InvalidOperation):
            raise BadFile(f"tally row {n}: a bad hour or number") from None
    return rows


def _job(entry: Entry) -> str:
    parts = entry.entry_id.split("/")
    return parts[1] if len(parts) == 3 else entry.entry_id


def differences(doc: Document, tally: list[TallyRow]) -> list[Difference]:
    """Every hour of the file's span where its latest statement and the tally differ."""
    latest = latest_versions(doc.statements)
    hours = sorted(h for dc, h in latest if dc == doc.dc_id)
    if not hours:
        return []
    first, last = hours[0], hours[-1]
    operator: dict[datetime, Figures] = {}
    by_job: dict[tuple[datetime, str], Figures] = {}
    for r in tally:
        if r.dc_id != doc.dc_id or not first <= r.hour <= last:
            continue
        n, sec, kwh = operator.get(r.hour, (0, Decimal(0), Decimal(0)))
        operator[r.hour] = (n + r.entries, sec + r.device_seconds, kwh + r.energy_kwh)
        by_job[(r.hour, r.job_id)] = (r.entries, r.device_seconds, r.energy_kwh)
    entries_of: dict[datetime, list[Entry]] = {}
    for stmt, listed in zip(doc.statements, doc.entries, strict=True):
        if listed is not None and latest.get((stmt.dc_id, stmt.hour)) is stmt:
            entries_of[stmt.hour] = listed
    out = []
    for hour in sorted(set(hours) | set(operator)):
        st = latest.get((doc.dc_id, hour))
        platform = (st.entries, st.device_seconds, st.energy_kwh) if st is not None else None
        mine = operator.get(hour)
        if platform == mine:
            continue
        jobs: tuple[str, ...] = ()
        if hour in entries_of:
            theirs: dict[str, Figures] = {}
            for entry in entries_of[hour]:
                n, sec, kwh = theirs.get(_job(entry), (0, Decimal(0), Decimal(0)))
                theirs[_job(entry)] = (n + 1, sec + entry.device_seconds, kwh + entry.energy_kwh)
            names = set(theirs) | {j for h, j in by_job if h == hour}
            jobs = tuple(sorted(j for j in names if theirs.get(j) != by_job.get((hour, j))))
        out.append(Difference(hour, platform, mine, jobs))
    return out
