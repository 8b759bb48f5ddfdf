"""`cpn.agent_freshness` from incremental state (migration 070): the same rows as the full GROUP BY
over every raw table it replaced, with duplicates and heartbeats out of order, on a store
migrated before 070 (back-fill) and on a fresh one; and a read whose cost follows the number of
DCs, not the samples stored."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from surplus.migrations import MIGRATIONS_DIR, migrate

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def old_view() -> str:
    """The oracle: the view as migration 003 defined it (a GROUP BY over every raw table), as a query."""
    text = (MIGRATIONS_DIR / "003_datacenters.sql").read_text()
    body = text.split("CREATE VIEW IF NOT EXISTS {db}.agent_freshness AS", 1)[1].split(";", 1)[0]
    return f"SELECT dc_id, last_seen, spool_backlog_events FROM ({body}) ORDER BY dc_id"


OLD = old_view()
NEW = "SELECT dc_id, last_seen, spool_backlog_events FROM {db}.agent_freshness ORDER BY dc_id"


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def insert(client: Any, db: str, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    client.insert(f"{db}.{table}", [[r[c] for c in columns] for r in rows], column_names=columns)


def fill(client: Any, db: str, *, samples: int, offset: float = 0.0) -> None:
    """Four DCs: `a` with every kind of event, `b` heartbeats only (out of order, a duplicate,
    two on one time), `c` a registration only, `d` capacity and job events only."""
    insert(client, db, "registrations", [
        {"dc_id": dc, "event_id": f"reg-{dc}", "time": s(offset - 86400), "name": dc, "operator": "op",
         "province": "CN-GZ", "hub": "gz", "lat": 0.0, "lon": 0.0, "racks_total": 1, "received_at": T0}
        for dc in ("a", "c", "d")])
    insert(client, db, "capacity_samples", [
        {"dc_id": dc, "pool_id": "p", "event_id": f"cap-{dc}-{offset}-{i}", "time": s(offset + 15 * i),
         "interval_s": 15, "device_model": "m", "devices_total": 8, "devices_online": 8,
         "devices_allocated": 0, "idle_pflops_fp16": 1.0, "idle_pflops_fp32": 0.5, "idle_pflops_fp64": 0.0,
         "online_pflops_fp16": 1.0, "received_at": T0}
        for dc in ("a", "d") for i in range(samples)])
    insert(client, db, "power_samples", [
        {"dc_id": "a", "event_id": f"pow-{offset}", "time": s(offset + 15 * samples + 30), "interval_s": 60,
         "it_energy_kwh": 1.0, "facility_energy_kwh": 1.2, "green_energy_kwh": 0.3, "received_at": T0}])
    beats = [(s(offset + 40), "hb-3", 30), (s(offset + 10), "hb-1", 10), (s(offset + 40), "hb-2", 20),
             (s(offset + 10), "hb-1", 10)]  # newest by (time, event id) is hb-3 -> 30
    for dc, bump in (("a", 0), ("b", 100)):
        insert(client, db, "heartbeats", [
            {"dc_id": dc, "event_id": f"{eid}-{offset}", "time": t, "agent_version": "1", "boot_id": "x",
             "uptime_s": 1.0, "spool_backlog_events": backlog + bump, "spool_oldest_age_s": 0.0, "received_at": T0}
            for t, eid, backlog in beats])
    insert(client, db, "job_events", [
        {"dc_id": "d", "event_id": f"job-{offset}", "time": s(offset + 15 * samples + 90), "job_id": "j",
         "tenant_id": "t", "pool_id": "p", "device_model": "m", "devices": 1, "phase": "end", "seq": 1,
         "device_seconds_total": 1.0, "energy_kwh_total": 0.0, "status": None, "received_at": T0}])


def rows(client: Any, db: str, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql.replace("{db}", db)).result_rows]


def rows_read(client: Any, db: str, sql: str) -> int:
    """Rows the engine read from tables for `sql`: chDB's own counter (as bench/read_bench.py),
    or a server's query summary."""
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    if handle is None:
        return int(client.query(sql.replace("{db}", db)).summary.get("read_rows", 0))
    with handle.lock:
        return int(handle.conn.query(sql.replace("{db}", db), "CSV").storage_rows_read())


def merged(client: Any, db: str) -> None:
    """The state tables merged to one part each, as ClickHouse's background merges leave them."""
    for table in ("dc_last_seen", "dc_spool_backlog"):
        client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")


@pytest.fixture
def database(clickhouse_client: Any) -> Any:
    db = f"t_{uuid.uuid4().hex[:12]}"
    yield db
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_view_equals_the_full_group_by_it_replaced(clickhouse_client: Any, database: str) -> None:
    migrate(clickhouse_client, database)
    fill(clickhouse_client, database, samples=50)
    fill(clickhouse_client, database, samples=50)  # every event again: a replay changes nothing
    fill(clickhouse_client, database, samples=20, offset=-3600)  # older events arriving late
    got = rows(clickhouse_client, database, NEW)
    assert got == rows(clickhouse_client, database, OLD)
    assert [(dc, backlog) for dc, _seen, backlog in got] == [("a", 30), ("b", 130), ("c", 0), ("d", 0)]
    assert [seen.astimezone(UTC) for _dc, seen, _backlog in got] == [
        s(15 * 50 + 30), s(40), s(-86400), s(15 * 50 + 90)]  # power, heartbeat, registration, job


def test_a_store_migrated_before_070_is_back_filled(clickhouse_client: Any, database: str,
                                                     tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:3]) < 70:
            shutil.copy(path, before / path.name)
    migrate(clickhouse_client, database, directory=before)
    fill(clickhouse_client, database, samples=30)
    old = rows(clickhouse_client, database, OLD)
    assert "070_agent_freshness_state" in " ".join(migrate(clickhouse_client, database))
    assert rows(clickhouse_client, database, NEW) == old
    fill(clickhouse_client, database, samples=10, offset=3600)  # and it follows what comes after
    assert rows(clickhouse_client, database, NEW) == rows(clickhouse_client, database, OLD)


def test_a_read_costs_the_dcs_not_the_history(clickhouse_client: Any, database: str) -> None:
    migrate(clickhouse_client, database)
    fill(clickhouse_client, database, samples=500)
    merged(clickhouse_client, database)
    small = rows_read(clickhouse_client, database, NEW)
    for k in range(1, 5):  # five times the history, in several inserts
        fill(clickhouse_client, database, samples=500, offset=86400 * k)
    merged(clickhouse_client, database)
    large = rows_read(clickhouse_client, database, NEW)
    assert large == small == 4 + 2, (small, large)  # a row per DC, whatever the samples stored
    assert rows_read(clickhouse_client, database, OLD) >= 5 * 2 * 500  # what the old view read
