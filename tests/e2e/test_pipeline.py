"""End to end: a generated fleet -> the real Kafka broker -> `surplus streams worker` -> ClickHouse,
checked against an independent computation of SPEC §4, with duplicates, shuffled order, poison
messages, SIGKILLs mid-stream and a consumer-group reset (issues #4 and #5).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import fleet as oracle
from tests.e2e.harness import (
    Worker,
    ensure_topics,
    offsets,
    publish,
    query,
    reset_group,
    wait_caught_up,
    wait_progress,
)

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow]

SURPLUS_COLUMNS = ["idle_pflops_fp16", "idle_pflops_fp32", "idle_pflops_fp64", "online_pflops_fp16",
                   "idle_devices", "online_devices", "allocated_devices", "pools_reporting", "pools_stale"]
GREEN_COLUMNS = ["facility_kwh", "it_kwh", "green_kwh", "carbon_kg", "green_share", "pue"]
HOURLY_COLUMNS = ["minutes", "idle_pflops_fp16_avg", "idle_pflops_fp16_min", "idle_pflops_fp16_max",
                  "idle_pflops_fp32_avg", "idle_pflops_fp32_min", "idle_pflops_fp32_max",
                  "idle_pflops_fp64_avg", "idle_pflops_fp64_min", "idle_pflops_fp64_max",
                  "online_pflops_fp16_avg", "idle_devices_avg"]

RELATIONS = {
    "national": "SELECT * FROM {db}.national_surplus_minute ORDER BY ts",
    "hub": "SELECT * FROM {db}.hub_surplus_minute ORDER BY ts, hub",
    "dc": "SELECT * FROM {db}.dc_surplus_minute ORDER BY ts, dc_id",
    "national_hourly": "SELECT * FROM {db}.national_surplus_hourly ORDER BY hour",
    "hub_hourly": "SELECT * FROM {db}.hub_surplus_hourly ORDER BY hour, hub",
    "dc_hourly": "SELECT * FROM {db}.dc_surplus_hourly ORDER BY hour, dc_id",
    "national_green": "SELECT * FROM {db}.national_green_hourly ORDER BY hour",
    "hub_green": "SELECT * FROM {db}.hub_green_hourly ORDER BY hour, hub",
    "dc_green": "SELECT * FROM {db}.dc_green_hourly ORDER BY hour, dc_id",
    "deadletter": "SELECT reason, count() AS n FROM {db}.deadletter GROUP BY reason ORDER BY reason",
    "ledger": "SELECT * FROM {db}.ledger ORDER BY entry_id",
    "tenant_daily": "SELECT * FROM {db}.tenant_usage_daily ORDER BY day, tenant_id, dc_id",
    "datacenters": "SELECT dc_id, name, hub, province FROM {db}.datacenters ORDER BY dc_id",
    "freshness": "SELECT dc_id, last_seen, spool_backlog_events FROM {db}.agent_freshness ORDER BY dc_id",
}


def ts(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same_rows(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> bool:
    """The same relations, row for row; floats equal to 1e-9 (sums may be added in another order)."""
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return close(x, y)
        return bool(x == y)

    return a.keys() == b.keys() and all(
        len(a[n]) == len(b[n]) and all(ra.keys() == rb.keys() and all(same(ra[k], rb[k]) for k in ra)
                                       for ra, rb in zip(a[n], b[n], strict=True))
        for n in a)


def check_surplus(rows: list[dict[str, Any]], expected: dict[Any, dict[str, float]], key: Any) -> None:
    got = {key(r): r for r in rows}
    assert set(got) == set(expected), (
        f"minutes differ: missing {sorted(set(expected) - set(got))[:3]}, extra {sorted(set(got) - set(expected))[:3]}")
    for k, exp in expected.items():
        for col in SURPLUS_COLUMNS:
            assert close(float(got[k][col]), float(exp.get(col, 0))), (k, col, got[k][col], exp.get(col, 0))


def check_green(rows: list[dict[str, Any]], expected: dict[Any, dict[str, float]], key: Any) -> None:
    got = {key(r): r for r in rows}
    assert set(got) == set(expected)
    for k, exp in expected.items():
        for col in GREEN_COLUMNS:
            assert close(float(got[k][col]), exp[col]), (k, col, got[k][col], exp[col])


def check_all(result: dict[str, list[dict[str, Any]]], fleet: oracle.Fleet) -> None:
    """check_relations, plus what this generated fleet was built to show."""
    check_relations(result, fleet)
    regs = oracle.datacenters(fleet.valid)
    dc_rows = {r["dc_id"]: r for r in result["dc"]}
    assert dc_rows["dc-00"]["hub"] == "nx"  # the latest registration wins
    unregistered = [dc for dc in dc_rows if dc not in regs]
    assert unregistered and all(dc_rows[dc]["hub"] == "none" for dc in unregistered)
    entries, _ = oracle.ledger(fleet)
    assert any(e["amount_cny"] == 0 for e in entries.values())  # an unpriced model is metered at 0
    days = {k[0] for k in oracle.tenant_daily(entries)}
    assert len(days) >= 2, "the fleet's jobs should cross midnight in Asia/Shanghai"


def check_hourly(rows: list[dict[str, Any]], expected: dict[Any, dict[str, float]], key: Any) -> None:
    got = {key(r): r for r in rows}
    assert len(got) == len(rows), "one row per key"
    assert set(got) == set(expected), (
        f"hours differ: missing {sorted(set(expected) - set(got))[:3]}, extra {sorted(set(got) - set(expected))[:3]}")
    for k, exp in expected.items():
        for col in HOURLY_COLUMNS:
            assert close(float(got[k][col]), float(exp[col])), (k, col, got[k][col], exp[col])


def check_surplus_relations(result: dict[str, list[dict[str, Any]]], valid: list[dict[str, Any]]) -> None:
    """The SPEC §5 surplus (minute and hourly) and green relations against the oracle."""
    surplus = oracle.surplus(valid)
    check_surplus(result["national"], surplus["national"], lambda r: ts(r["ts"]))
    check_surplus(result["hub"], surplus["hub"], lambda r: (ts(r["ts"]), r["hub"]))
    check_surplus(result["dc"], surplus["dc"], lambda r: (ts(r["ts"]), r["dc_id"]))
    hourly = oracle.hourly(surplus)
    check_hourly(result["national_hourly"], hourly["national"], lambda r: ts(r["hour"]))
    check_hourly(result["hub_hourly"], hourly["hub"], lambda r: (ts(r["hour"]), r["hub"]))
    check_hourly(result["dc_hourly"], hourly["dc"], lambda r: (ts(r["hour"]), r["dc_id"]))
    regs = oracle.datacenters(valid)
    for r in result["dc_hourly"]:
        assert r["hub"] == regs.get(r["dc_id"], {}).get("hub", "none"), r
    green = oracle.green(valid)
    check_green(result["national_green"], green["national"], lambda r: ts(r["hour"]))
    check_green(result["hub_green"], green["hub"], lambda r: (ts(r["hour"]), r["hub"]))
    check_green(result["dc_green"], green["dc"], lambda r: (ts(r["hour"]), r["dc_id"]))


def check_relations(result: dict[str, list[dict[str, Any]]], fleet: oracle.Fleet) -> None:
    """Every relation of RELATIONS against the oracle's computation from the fleet's messages
    (in arrival order): surplus (minute and hourly), green, dead letters, registrations, ledger
    and daily usage."""
    valid = fleet.valid
    check_surplus_relations(result, valid)
    assert {r["reason"]: int(r["n"]) for r in result["deadletter"]} == dict(oracle.deadletters(fleet))

    regs = oracle.datacenters(valid)
    assert {r["dc_id"]: (r["hub"], r["province"], r["name"]) for r in result["datacenters"]} == {
        dc: (d["hub"], d["province"], d["name"]) for dc, d in regs.items()}

    entries, _ = oracle.ledger(fleet)
    got = {r["entry_id"]: r for r in result["ledger"]}
    assert set(got) == set(entries)
    for entry_id, exp in entries.items():
        row = got[entry_id]
        assert Decimal(row["amount_cny"]) == exp["amount_cny"], (entry_id, row["amount_cny"], exp["amount_cny"])
        assert close(row["device_seconds"], float(exp["device_seconds"])), entry_id
        assert close(row["energy_kwh"], float(exp["energy_kwh"])), entry_id
        assert ts(row["period_start"]) == exp["period_start"] and ts(row["period_end"]) == exp["period_end"]
    daily = oracle.tenant_daily(entries)
    got_daily = {(date.fromisoformat(r["day"]), r["tenant_id"], r["dc_id"]): r for r in result["tenant_daily"]}
    assert set(got_daily) == set(daily)
    for k, exp in daily.items():
        assert Decimal(got_daily[k]["amount_cny"]) == exp["amount_cny"], k
        assert close(got_daily[k]["device_hours"], float(exp["device_hours"])), k
        assert close(got_daily[k]["energy_kwh"], float(exp["energy_kwh"])), k
    assert entries, "the fleet meters jobs"


@pytest.fixture
def setup(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, Any]:
    book = tmp_path / "prices.toml"
    book.write_text(oracle.PRICE_BOOK)
    ensure_topics(kafka_bootstrap, topic_prefix)
    return {"bootstrap": kafka_bootstrap, "prefix": topic_prefix, "group": f"g-{uuid.uuid4().hex[:8]}",
            "url": f"chdb://{tmp_path / 'store'}", "book": str(book), "tmp": tmp_path}


def make_worker(s: dict[str, Any], name: str, **env: str) -> Worker:
    return Worker(s["bootstrap"], s["prefix"], s["group"], s["url"], s["tmp"] / f"{name}.log",
                  SURPLUS_PRICE_BOOK=s["book"], **env)


def test_exact_under_duplicates_shuffling_poison_and_replay(setup: dict[str, Any]) -> None:
    s = setup
    fleet = oracle.generate(seed=11)
    publish(s["bootstrap"], s["prefix"], fleet.messages)
    worker = make_worker(s, "w1").start()
    try:
        wait_caught_up(s["bootstrap"], s["prefix"], s["group"], worker)
    finally:
        assert worker.stop() is not None
    first = query(s["url"], RELATIONS)
    check_all(first, fleet)
    # self-monitoring: counts in and rejected by reason, write latency and lag, in a table
    metrics = query(s["url"], {"m": "SELECT metric, label, max(value) AS v FROM {db}.pipeline_metrics "
                                     "GROUP BY metric, label"})["m"]
    by = {(r["metric"], r["label"]): r["v"] for r in metrics}
    assert by[("events_in", "")] >= len(fleet.messages)
    assert by[("rejected", "undecodable")] == 3 and ("write_ms_max", "") in by and ("consumer_lag", "") in by

    # reset the consumer group to the start and reprocess everything: nothing changes
    reset_group(s["bootstrap"], s["prefix"], s["group"])
    worker = make_worker(s, "w2").start()
    try:
        wait_caught_up(s["bootstrap"], s["prefix"], s["group"], worker)
    finally:
        worker.stop()
    second = query(s["url"], {**RELATIONS, "raw_ledger": "SELECT count() AS n FROM {db}.ledger_entries"})
    for name in RELATIONS:
        assert name == "freshness" or same_rows({name: second[name]}, {name: first[name]}), name
    assert int(second["raw_ledger"][0]["n"]) >= len(first["ledger"])  # rows written twice, counted once

    # the ledger reconciles with the raw job totals, and a planted difference is caught
    done = reconcile(s["url"])
    assert done.returncode == 0 and "0 differences" in done.stdout, done.stdout + done.stderr
    query(s["url"], {"plant": "INSERT INTO {db}.ledger_entries (entry_id, dc_id, job_id, tenant_id, seq, "
                              "device_seconds, amount_cny) VALUES ('dc-03/job-3-0/999', 'dc-03', 'job-3-0', "
                              "'uni-lab', 999, 60, 1)"})
    done = reconcile(s["url"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "job-3-0" in done.stdout and "Traceback" not in done.stderr


def reconcile(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surplus.cli", "ledger", "reconcile", "--url", url],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_exact_after_three_sigkills_mid_stream(setup: dict[str, Any]) -> None:
    s = setup
    fleet = oracle.generate(seed=23)
    n = len(fleet.messages)
    thirds = [fleet.messages[: n // 3], fleet.messages[n // 3: 2 * n // 3], fleet.messages[2 * n // 3:]]
    small_batches = {"SURPLUS_BATCH_MAX_EVENTS": "300", "SURPLUS_BATCH_MAX_WAIT_MS": "50"}
    committed = 0
    mid_stream = 0
    for round_no, part in enumerate(thirds):
        publish(s["bootstrap"], s["prefix"], part)
        worker = make_worker(s, f"kill{round_no}", **small_batches).start()
        committed = wait_progress(s["bootstrap"], s["prefix"], s["group"], committed, worker)
        worker.kill()  # SIGKILL mid-stream: whatever was written but not committed is replayed
        committed, end = offsets(s["bootstrap"], s["prefix"], s["group"])
        mid_stream += committed < end
    assert mid_stream >= 2, "the kills should land while the worker still had work"
    worker = make_worker(s, "final").start()
    try:
        wait_caught_up(s["bootstrap"], s["prefix"], s["group"], worker)
    finally:
        worker.stop()
    check_all(query(s["url"], RELATIONS), fleet)


def wait_members(bootstrap: str, group: str, n: int, workers: list[Worker], timeout_s: float = 90) -> None:
    """Until the group is stable with `n` members that all hold partitions."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert all(w.alive() for w in workers), "\n".join(w.tail() for w in workers)
        try:
            group_info = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except Exception:
            group_info = None
        if (group_info is not None and group_info.state == ConsumerGroupState.STABLE
                and len(group_info.members) == n
                and all(m.assignment and m.assignment.topic_partitions for m in group_info.members)):
            return
        time.sleep(0.2)
    raise AssertionError(f"the group did not reach {n} members with partitions")


def wait_handled(worker: Worker, timeout_s: float = 120) -> None:
    """Until the worker logged its counts after a batch (`worker <id>: in=N ...`, N > 0), then a
    moment for the counts' insert that follows the line."""
    deadline = time.monotonic() + timeout_s
    while not re.search(r"worker \S+: in=[1-9]", worker.tail(400)):
        assert worker.alive(), f"worker died:\n{worker.tail()}"
        assert time.monotonic() < deadline, f"the worker handled no batch:\n{worker.tail()}"
        time.sleep(0.02)
    time.sleep(0.3)


def test_two_workers_on_one_served_store_are_exact_under_a_sigkill(setup: dict[str, Any]) -> None:
    """Scaling out: two workers in one group split the partitions and write into one store served
    by `surplus store serve`; one is SIGKILLed mid-stream, the other takes its partitions over;
    every relation of that one store matches the oracle (duplicates and shuffling included)."""
    from tests.served import serve

    s = setup
    fleet = oracle.generate(seed=5)
    served = serve(s["tmp"] / "served", log=s["tmp"] / "serve.log")
    try:
        # small batches, and the counts written with each batch's rows (so a worker that handled
        # a batch has its pipeline_metrics row before it commits)
        small_batches = {"SURPLUS_BATCH_MAX_EVENTS": "300", "SURPLUS_BATCH_MAX_WAIT_MS": "50",
                         "SURPLUS_METRICS_INTERVAL_S": "0.01"}
        workers = [Worker(s["bootstrap"], s["prefix"], s["group"], served.url, s["tmp"] / f"w{i}.log",
                          SURPLUS_PRICE_BOOK=s["book"], **small_batches).start() for i in range(2)]
        try:
            wait_members(s["bootstrap"], s["group"], 2, workers)
            publish(s["bootstrap"], s["prefix"], fleet.messages)
            wait_handled(workers[1])  # the victim wrote into the store before it dies
            workers[1].kill()  # mid-stream: its uncommitted batches are replayed by the other
            committed, end = offsets(s["bootstrap"], s["prefix"], s["group"])
            assert committed < end, "the kill should land while there was work left"
            wait_caught_up(s["bootstrap"], s["prefix"], s["group"], workers[0])
        finally:
            for w in workers:
                w.stop()
        both = query(served.url, {"by": "SELECT count(DISTINCT worker) AS n FROM {db}.pipeline_metrics"})
        assert int(both["by"][0]["n"]) == 2, "both workers wrote into the one store"
        check_all(query(served.url, RELATIONS), fleet)
        done = reconcile(served.url)
        assert done.returncode == 0 and "0 differences" in done.stdout, done.stdout + done.stderr
    finally:
        assert served.stop() == 0
