"""`surplus demo` end to end (issue #8): it completes, exits 0, leaves nothing running, and its
report's national figures equal what this test computes from the events the simulator published.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import fleet as oracle
from tests.e2e.harness import REPO, TELEMETRY

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow]


def published(bootstrap: str, prefix: str) -> tuple[list[dict[str, Any]], int]:
    """The valid events the demo published (telemetry minus the dead letters' positions)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-test-reader",
                         "enable.auto.commit": False})
    try:
        topics = consumer.list_topics(timeout=10).topics

        def read(*names: str) -> list[Any]:
            """Every message of the topics, all partitions assigned at once."""
            tps, expected = [], 0
            for name in names:
                for p in topics[name].partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    if high > low:
                        tps.append(TopicPartition(name, p, low))
                        expected += high - low
            out: list[Any] = []
            if not tps:
                return out
            consumer.assign(tps)
            deadline = time.monotonic() + 120
            while len(out) < expected and time.monotonic() < deadline:
                for m in consumer.consume(10000, timeout=1):
                    assert not m.error(), m.error()
                    out.append(m)
            assert len(out) == expected, f"read {len(out)} of {expected}"
            return out

        dead = {dict(m.headers())["source"].decode() for m in read(prefix + "deadletter")}
        events = [json.loads(m.value()) for m in read(*(prefix + t for t in TELEMETRY))
                  if f"{m.topic()}/{m.partition()}/{m.offset()}" not in dead]
        return events, len(dead)
    finally:
        consumer.close()


def test_demo_report_equals_the_published_events(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "SURPLUS_TOPIC_PREFIX": topic_prefix}
    env.pop("CLICKHOUSE_URL", None)

    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "surplus.cli", "demo", "--workdir", str(tmp_path / "demo"),
                               *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)

    # a first, short run leaves a store behind; the second run starts from a clean one (documented)
    first = demo("--dcs", "40", "--minutes", "0.1", "--speed", "60", "--backfill-days", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Surplus report" in first.stdout and "national_surplus_minute" in first.stdout
    # piped: plain text, the device split, every follow-up command whole on a line of its own
    assert "\x1b[" not in first.stdout and "\r" not in first.stdout
    assert "\nAccelerators  idle " in first.stdout and "\nCPU cores     idle " in first.stdout
    lines = first.stdout.splitlines()
    assert any(line.startswith("  SURPLUS_ANALYST_PASSWORD=<choose one> .venv/bin/surplus store serve --url '")
               and line.endswith("'") for line in lines)
    assert "  CLICKHOUSE_URL=http://analyst:<password>@127.0.0.1:8123/cpn .venv/bin/surplus report" in lines
    env["SURPLUS_TOPIC_PREFIX"] = topic_prefix = topic_prefix + "two."
    done = demo("--dcs", "40", "--minutes", "0.4", "--speed", "300", "--backfill-days", "0", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # piped, progress is plain lines on stderr (every 10 s), not a live display
    assert "surplus demo: simulating; simulated " in done.stderr and "\x1b[" not in done.stderr
    report = json.loads(done.stdout)
    devices = report["national"]["devices"]
    assert devices["accelerators"]["idle"] + devices["cpu_cores"]["idle"] == report["national"]["idle_devices"]
    assert devices["cpu_cores"]["online"] > devices["accelerators"]["online"] > 0

    # nothing left running: no process carries this test's topic prefix in its environment
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            assert f"SURPLUS_TOPIC_PREFIX={topic_prefix}".encode() not in environ or int(proc.name) == os.getpid()

    events, dead = published(kafka_bootstrap, topic_prefix)
    assert dead == report["demo"]["dead_letters"] >= 5
    # the counters agree: every event acknowledged is in Kafka and processed (issue #16)
    counted = report["demo"]
    assert counted["published"] == (counted["published_history"] + counted["published_live"]
                                    + counted["published_bad"])
    assert counted["published_bad"] == 6
    assert counted["published"] <= counted["in_kafka"] == counted["processed"] == len(events) + dead
    assert len({e["data"]["dc_id"] for e in events}) == 40
    assert report["demo"]["dark_dc"]
    assert "error" not in report["dispatch"], report["dispatch"]  # the SPEC §8 sample request was answered
    assert report["dispatch"]["request"]["devices"] == 64 and "offers" in report["dispatch"]
    reasons = {r["reason"] for r in report["deadletters"]["by_reason"]}
    assert "bad_signature" in reasons, "signing is on in the demo: the spoofed event is refused"
    national = oracle.surplus(events)["national"]
    ts = datetime.fromisoformat(report["national"]["ts"].replace("Z", "+00:00")).astimezone(UTC)
    assert ts == max(national), "the report's 'now' is the last minute with a reporting pool"
    expected = national[ts]
    for p in ("fp16", "fp32", "fp64"):
        assert math.isclose(report["national"]["idle_pflops"][p], expected[f"idle_pflops_{p}"], rel_tol=1e-9), p
    assert report["national"]["pools_reporting"] == expected["pools_reporting"]
    assert report["national"]["pools_stale"] == expected.get("pools_stale", 0)
    fp16 = [row["idle_pflops_fp16"] for row in national.values()]
    assert math.isclose(report["national"]["range"]["fp16"]["min"], min(fp16), rel_tol=1e-9)
    assert math.isclose(report["national"]["range"]["fp16"]["max"], max(fp16), rel_tol=1e-9)

    # the default price book prices every model the demo runs: nothing unpriced (issue #16)
    assert report["tenants_total"]["device_hours"] > 0
    assert report["tenants_total"]["unpriced_device_hours"] == 0 and report["tenants_total"]["unpriced_share"] == 0

    # allocated against metered accelerator device-hours, as the demo explains them (issue #16)
    check_metering(report["demo"]["metering"], events)

    # the demo's ledger closed into signed statements: each party's check holds (issue #19)
    check_statements_against_the_tally(tmp_path, env, events)


def check_metering(metering: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """The demo's two figures are what the published events say: allocated device-hours from the
    accelerator pools' capacity samples, metered from their jobs' highest-seq totals."""
    from schemas.catalogue import load_catalogue

    accelerators = {m for m, d in load_catalogue().devices.items() if d.kind == "accelerator"}
    since = datetime.fromisoformat(metering["since"])
    allocated = sum(e["data"]["devices_allocated"] * e["data"]["interval_s"] / 3600 for e in events
                    if e["type"] == "cpn.capacity.v1" and e["data"]["device_model"] in accelerators
                    and datetime.fromisoformat(e["time"]) > since)
    highest: dict[tuple[str, str], tuple[int, float]] = {}
    for e in events:
        d = e["data"]
        if e["type"] == "cpn.job.v1" and d["device_model"] in accelerators:
            key = (d["dc_id"], d["job_id"])
            if key not in highest or d["seq"] > highest[key][0]:
                highest[key] = (d["seq"], d["device_seconds_total"])
    metered = sum(total for _, total in highest.values()) / 3600
    assert math.isclose(metering["allocated_device_hours"], allocated, rel_tol=1e-9)
    assert math.isclose(metering["metered_device_hours"], metered, rel_tol=1e-9)
    assert 0 < metered < allocated * metering["simulated_metered_share"]  # below the share, as explained
    assert metering["simulated_metered_share"] == pytest.approx(0.3)


def check_statements_against_the_tally(tmp_path: Path, env: dict[str, str], events: list[dict[str, Any]]) -> None:
    """Close the demo's ledger, export two DCs' statements with entries and verify them offline with
    the statement key and against the operator's tally kept beside the demo's spool; every DC's
    statements match the tally hour by hour, and a planted difference in the tally is found.

    (This comparison once found real losses: the served store kept only the first block of each
    insert, so batches past 16,384 job events lost ledger entries the tally had.)"""
    workdir = tmp_path / "demo"
    env = {**env, "SURPLUS_VAR_DIR": str(tmp_path / "var"), "CLICKHOUSE_URL": f"chdb://{workdir / 'chdb'}"}

    def surplus(*args: str, module: str = "surplus.cli") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    key = tmp_path / "statement-key.toml"
    assert surplus("statement-key", "--key-file", str(key), module="streams.signing").returncode == 0
    closed = surplus("ledger", "close", "--key-file", str(key), "--grace-s", "0")
    assert closed.returncode == 0 and " closed, 0 restated" in closed.stdout, closed.stderr[-2000:]
    pem = tmp_path / "statements.pem"
    pem.write_text(surplus("ledger", "pubkey", "--key-file", str(key)).stdout)
    jobs = sorted({e["data"]["dc_id"] for e in events if e["type"] == "cpn.job.v1"})
    assert jobs
    times = [e["time"] for e in events if e["type"] == "cpn.job.v1"]
    first, last = min(times)[:10], max(times)[:10]
    tally = tmp_path / "tally.csv"
    made = surplus("agent", "tally", "--spool", str(workdir / "spool"), "--from", first, "--to", last,
                   "--out", str(tally))
    assert made.returncode == 0, made.stderr[-2000:]
    assert tally.read_text().startswith("dc_id,hour,job_id,")
    for dc in (jobs[0], jobs[-1]):
        statement = tmp_path / f"{dc}.json"
        done = surplus("ledger", "statement", "--dc", dc, "--from", first, "--to", last, "--entries",
                       "--out", str(statement))
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(json.loads(statement.read_text())["statements"]) >= 1
        verified = surplus("ledger", "verify", str(statement), "--pubkey", str(pem), "--tally", str(tally))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "tally matches every hour" in verified.stdout

    # every DC, hour by hour: the latest statement's figures are the tally's sums
    compare_every_dc(workdir / "chdb", tally)

    # a planted difference: the operator's tally says one job used 10 more device-seconds
    rows = tally.read_text().splitlines()
    index = next(i for i, row in enumerate(rows) if row.startswith(f"{dc},"))
    cells = rows[index].split(",")
    cells[4] = f"{Decimal(cells[4]) + 10:.3f}"
    rows[index] = ",".join(cells)
    planted = tmp_path / "planted.csv"
    planted.write_text("\n".join(rows) + "\n")
    found = surplus("ledger", "verify", str(statement), "--pubkey", str(pem), "--tally", str(planted))
    assert found.returncode == 1, found.stdout + found.stderr
    (line,) = [x for x in found.stdout.splitlines() if x.startswith("differs ")]
    assert line.startswith(f"differs {cells[1]}: platform ") and f"jobs {cells[2]}" in line
    assert "1 hour(s) differ" in found.stderr


def compare_every_dc(store: Path, tally: Path) -> None:
    """Per DC and closed hour: the latest statement's entries, device-seconds and kWh equal the
    operator's tally summed over jobs; every tally hour up to the last closed one has a statement."""
    import csv

    from streams.statement_files import latest_versions
    from streams.statement_store import StatementStore
    from surplus.store import connect

    client, target = connect(f"chdb://{store}")
    try:
        statements = StatementStore(client, target.database)
        dcs = [row[0] for row in client.query(
            f"SELECT DISTINCT dc_id FROM {target.database}.ledger_statements").result_rows]
        platform: dict[tuple[str, str], tuple[int, Decimal, Decimal]] = {}
        for dc in dcs:
            for (dc_id, hour), st in latest_versions(statements.chain(dc)).items():
                platform[(dc_id, hour.strftime("%Y-%m-%dT%H:00:00Z"))] = (
                    st.entries, st.device_seconds, st.energy_kwh)
    finally:
        client.close()
    assert len(dcs) >= 30 and platform
    last_closed = max(hour for _, hour in platform)
    operator: dict[tuple[str, str], tuple[int, Decimal, Decimal]] = {}
    for r in csv.DictReader(tally.open()):
        if r["hour"] <= last_closed:
            n, sec, kwh = operator.get((r["dc_id"], r["hour"]), (0, Decimal(0), Decimal(0)))
            operator[(r["dc_id"], r["hour"])] = (n + int(r["entries"]), sec + Decimal(r["device_seconds"]),
                                                 kwh + Decimal(r["energy_kwh"]))
    differ = sorted(k for k in set(platform) | set(operator) if platform.get(k) != operator.get(k))
    assert not differ, [(k, platform.get(k), operator.get(k)) for k in differ[:5]]
