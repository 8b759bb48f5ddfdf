"""Run named SQL queries against a ClickHouse URL in its own process and print JSON results.

chDB holds one data path per process, so tests read a worker's embedded store through this
small program (`python -m tests.e2e.chquery URL < {"name": "SQL"}`) instead of opening it.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from surplus.store import connect


def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def main() -> int:
    url = sys.argv[1]
    queries: dict[str, str] = json.load(sys.stdin)
    client, target = connect(url)
    out: dict[str, Any] = {}
    for name, sql in queries.items():
        if sql.lstrip().upper().startswith(("INSERT", "ALTER", "OPTIMIZE")):
            client.command(sql.replace("{db}", target.database))
            out[name] = []
            continue
        result = client.query(sql.replace("{db}", target.database))
        out[name] = [
            {c: plain(v) for c, v in zip(result.column_names, row, strict=True)} for row in result.result_rows
        ]
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
