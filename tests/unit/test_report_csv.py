"""`surplus report --format csv`: one row per figure, every JSON value there exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from surplus.report_csv import HEADER, ROW_KEYS, to_csv
from tests.unit.test_report_text import demo_sized_report


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, str(i)))
    else:
        yield path, value


def _parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_json_value_is_a_row() -> None:
    report = demo_sized_report()
    text = to_csv(report)
    rows = _parse(text)
    assert text.splitlines()[0] == ",".join(HEADER)
    by = {(r["section"], r["key"], r["field"]): r["value"] for r in rows}
    assert len(by) == len(rows)  # no two rows for one figure
    count = 0
    for path, value in _leaves(report):
        section, rest = path[0], path[1:]
        if section in ("hubs", "top_dcs", "stale_dcs", "tenants"):
            record = report[section][int(rest[0])]
            key_field = next(k for k in ROW_KEYS if k in record)
            if rest[1] == key_field:
                continue  # the row's key
            cell = by[(section, str(record[key_field]), ".".join(rest[1:]))]
        elif path[:2] == ("deadletters", "by_reason"):
            record = report["deadletters"]["by_reason"][int(rest[1])]
            if rest[2] == "reason":
                continue
            cell = by[("deadletters.by_reason", record["reason"], ".".join(rest[2:]))]
        elif isinstance(report[section], dict):
            cell = by[(section, "", ".".join(rest))]
        else:
            cell = by[("report", "", section)]
        count += 1
        if value is None:
            assert cell == ""
        elif isinstance(value, bool):
            assert cell == ("true" if value else "false")
        elif isinstance(value, int):
            assert int(cell) == value
        elif isinstance(value, float):
            assert float(cell) == value  # in full: the shortest repr round-trips
        else:
            assert cell == value
    assert count == len(rows)  # and nothing else


def test_empty_lists_have_no_rows() -> None:
    report = {**demo_sized_report(), "stale_dcs": [], "tenants": []}
    sections = {r["section"] for r in _parse(to_csv(report))}
    assert "stale_dcs" not in sections and "tenants" not in sections and "hubs" in sections
