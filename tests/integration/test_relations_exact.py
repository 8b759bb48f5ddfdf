"""The SPEC §5 surplus and green relations (minute and hourly) on the incremental state of
migrations 020-021, against the independent oracle of tests/e2e/fleet.py: written the way the
worker writes (decode, normalise, the sink), in shuffled batches with duplicates and late samples,
with roll-ups before, between and after; plus retention (raw samples leave, hourly rows stay).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from streams.batch import Record, process
from streams.sink import Sink
from surplus.rollup import rollup
from tests.conftest import Store
from tests.e2e import fleet as oracle
from tests.e2e.test_pipeline import RELATIONS, check_surplus_relations, same_rows

pytestmark = [pytest.mark.clickhouse]

SURPLUS_RELATIONS = {k: v for k, v in RELATIONS.items()
                     if k in ("national", "hub", "dc", "national_hourly", "hub_hourly", "dc_hourly",
                              "national_green", "hub_green", "dc_green")}
NOW = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)


def write(store: Store, messages: list[oracle.Message], now: datetime = NOW) -> None:
    catalogue = load_catalogue()
    sink = Sink(store.client, store.database, retries=0)
    records = [Record(m.topic, 0, i, m.key, m.value) for i, m in enumerate(messages)]
    batch = process(records, now=now, catalogue=catalogue)
    tuples = {t: rows for t, rows in batch.tuples.items() if t in ("registrations", "capacity_samples", "power_samples")}
    sink.write(tuples)


def relations(store: Store) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sql in SURPLUS_RELATIONS.items():
        out[name] = [{k: (v.replace(tzinfo=UTC).isoformat() if isinstance(v, datetime) else v)
                      for k, v in row.items()} for row in store.dicts(sql)]
    return out


def test_exact_under_shuffled_batches_duplicates_late_samples_and_rollups(store: Store) -> None:
    fleet = oracle.generate(seed=3, dcs=6, minutes=100, poison=False, regression=False)
    messages = [m for m in fleet.messages if m.topic in ("registry", "capacity", "power")]
    rnd = random.Random(5)
    rnd.shuffle(messages)
    duplicates = rnd.sample(messages, len(messages) // 5)
    # hold back a tail of samples as late data, written after the hours were rolled up
    late, early = messages[: len(messages) // 6], messages[len(messages) // 6:]
    chunk = max(1, len(early) // 5)
    for i in range(0, len(early), chunk):
        write(store, early[i: i + chunk])
        if i == chunk:
            rollup(store.client, store.database, margin_s=0)
    assert rollup(store.client, store.database, margin_s=0).hours > 0
    assert rollup(store.client, store.database, margin_s=0).hours == 0  # idempotent: nothing left to settle
    write(store, late + duplicates)
    before = relations(store)  # late hours computed on the fly
    check_surplus_relations(before, [m.event for m in messages if m.event is not None])
    done = rollup(store.client, store.database, margin_s=0)
    assert done.hours > 0
    after = relations(store)
    check_surplus_relations(after, [m.event for m in messages if m.event is not None])
    for name in before:
        assert len(after[name]) == len(before[name]), name
    unsettled = store.rows("SELECT count() FROM {db}.surplus_unsettled_hours")[0][0]
    assert unsettled == 0
    # replay everything: nothing changes
    write(store, messages)
    rollup(store.client, store.database, margin_s=0)
    assert same_rows(relations(store), before)


def test_a_dc_moving_hub_moves_its_settled_hours(store: Store) -> None:
    fleet = oracle.generate(seed=9, dcs=4, minutes=40, poison=False, regression=False)
    messages = [m for m in fleet.messages if m.topic in ("registry", "capacity", "power")]
    write(store, messages)
    rollup(store.client, store.database, margin_s=0)
    moved = oracle.envelope("cpn.dc.v1", "reg-dc-01-9", "dc-01", oracle.BASE + timedelta(hours=2), {
        "dc_id": "dc-01", "name": "DC 1", "operator": "op", "province": "CN-GZ", "hub": "gz",
        "cluster": None, "lat": 30.0, "lon": 100.0, "racks_total": 100})
    import json
    message = oracle.Message("registry", b"dc-01", json.dumps(moved).encode(), moved)
    write(store, [message])
    valid = [m.event for m in [*messages, message] if m.event is not None]
    check_surplus_relations(relations(store), valid)
    rollup(store.client, store.database, margin_s=0)
    check_surplus_relations(relations(store), valid)


def test_old_samples_leave_the_raw_tables_and_the_hourly_relations_keep_them(store: Store) -> None:
    """Samples older than the raw retention (35 days here): ClickHouse drops them from the raw
    tables as it writes them, the minute and hourly relations keep their figures; and when the
    minute state expires too (400 days: deleted here as its TTL would), the hourly rows stay."""
    from surplus.store import migrate

    database = store.database + "_ttl"
    migrate(store.client, database, retention_days=35)
    old = Store(store.url, database, store.client)
    try:
        fleet = oracle.generate(seed=4, dcs=3, minutes=30, poison=False, regression=False)
        base = [m for m in fleet.messages if m.topic in ("registry", "capacity", "power")]
        now = datetime.now(UTC)
        shifted = [shift(m, now - timedelta(days=40) - oracle.BASE) for m in base]
        write(old, shifted, now=now)
        assert old.rows("SELECT count() FROM {db}.capacity_samples")[0][0] == 0
        assert old.rows("SELECT count() FROM {db}.power_samples")[0][0] == 0
        valid = [m.event for m in shifted if m.event is not None]
        check_surplus_relations(relations(old), valid)
        rollup(old.client, database, margin_s=0)
        check_surplus_relations(relations(old), valid)
        hourly = {k: v for k, v in relations(old).items() if "hourly" in k or "green" in k}
        assert all(hourly.values())
        for table in ("pool_minutes", "pool_days", "dc_minute_rollup"):
            old.client.command(f"ALTER TABLE {database}.{table} DELETE WHERE 1 SETTINGS mutations_sync = 2")
        assert old.rows("SELECT count() FROM {db}.national_surplus_minute")[0][0] == 0
        after = {k: v for k, v in relations(old).items() if k in hourly}
        assert same_rows(after, hourly)
    finally:
        store.client.command(f"DROP DATABASE IF EXISTS {database}")


def shift(message: oracle.Message, by: timedelta) -> oracle.Message:
    import json

    assert message.event is not None
    event = dict(message.event)
    event["time"] = oracle.iso(oracle.t_of(event) + by)
    event["id"] = event["id"] + f"-{by.days}"
    return oracle.Message(message.topic, message.key, json.dumps(event).encode(), event)
