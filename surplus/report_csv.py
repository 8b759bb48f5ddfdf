"""`surplus report --format csv`: the report dict as one long CSV table. Presentation (pure).

Columns `section,key,field,value`, one row per figure, in the report's order:

- `section` is the report key (`national`, `hubs`, `top_dcs`, `deadletters.by_reason`, ...);
  `report` for the top-level values (`at`, `data_time`, ...);
- `key` names the row of a list section: its `dc_id`, `tenant_id`, `hub` or `reason` (that
  field is not repeated as a row; the position for a list of other records; empty for a
  section that is a single record);
- `field` is the dotted path inside the record (`idle_pflops.fp16`, `devices.cpu_cores.idle`,
  `reasons.0`);
- `value` is the JSON value as text: numbers in full (Python's shortest round-trip form), money
  as its decimal string, `true`/`false`, and an empty cell for null.

Every number of `--format json` is a row here, so a spreadsheet or `awk` gets the whole report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

HEADER = ("section", "key", "field", "value")
ROW_KEYS = ("dc_id", "tenant_id", "hub", "reason")  # the first a record has names it


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # int, a float's repr, a decimal string, an ISO time


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for name, inner in value.items():
            yield from _leaves(inner, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list) and not (value and isinstance(value[0], Mapping)):
        for i, inner in enumerate(value):
            yield from _leaves(inner, f"{path}.{i}" if path else str(i))
    else:
        yield path, value


def rows(report: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(section, key, field, value) for every figure of the report, in its order."""
    for name, value in report.items():
        yield from _section(name, value, top=True)


def _section(name: str, value: Any, *, top: bool = False) -> Iterator[tuple[str, str, str, str]]:
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        for i, record in enumerate(value):
            named = next((k for k in ROW_KEYS if k in record), None)
            key = str(record[named]) if named is not None else str(i)
            for field, leaf in _leaves({k: v for k, v in record.items() if k != named}, ""):
                yield name, key, field, _text(leaf)
    elif isinstance(value, Mapping):
        plain = {k: v for k, v in value.items()
                 if not (isinstance(v, list) and v and isinstance(v[0], Mapping))}
        for field, leaf in _leaves(plain, ""):
            yield name, "", field, _text(leaf)
        for k, v in value.items():
            if k not in plain:
                yield from _section(f"{name}.{k}", v)
    elif top:
        for field, leaf in _leaves(value, name):
            yield "report", "", field, _text(leaf)
    # an empty list of records has no rows


def to_csv(report: Mapping[str, Any]) -> str:
    """The report as CSV text (RFC 4180, `\\r\\n` line ends as the csv module writes them)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows(report))
    return out.getvalue()
