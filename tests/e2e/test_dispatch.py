"""The dispatcher end to end (issue #18): 21 days of a simulated fleet's history through the real
pipeline (outbox -> Kafka -> worker -> chDB), then `surplus forecast refresh`, `backtest` and
`surplus place --json` on that store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, Worker, ensure_topics, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.timeout(1500)]  # 21 days through the real pipeline: minutes on a loaded machine

OFFER_FIELDS = {"dc_id", "pool_id", "hub", "province", "device_model", "devices_idle_now", "devices_sellable",
                "price_cny_per_device_hour", "cost_cny", "green_share", "pue", "carbon_kg_per_hour", "latency_ms"}


def surplus(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLICKHOUSE_URL": url}
    return subprocess.run([sys.executable, "-m", "surplus.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def sql(url: str, query: str) -> list[list[object]]:
    """Rows of a query, read in a child process (one chDB store per process)."""
    code = ("import json, sys; from surplus.store import connect; c, t = connect(sys.argv[1]); "
            "print(json.dumps(c.query(sys.argv[2].replace('{db}', t.database)).result_rows, default=str))")
    done = subprocess.run([sys.executable, "-c", code, url, query], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    return [list(r) for r in json.loads(done.stdout)]


@pytest.fixture(scope="module")
def history_store(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A chDB store holding 21 days of a 16-DC fleet, published through the agents' outbox."""
    import uuid

    from agents.backfill import backfill
    from agents.fleet import national_fleet
    from agents.settings import KafkaSettings, SpoolSettings
    from agents.wiring import build_outbox

    tmp = tmp_path_factory.mktemp("dispatch")
    prefix = f"t{uuid.uuid4().hex[:8]}."
    url = f"chdb://{tmp / 'chdb'}"
    ensure_topics(kafka_bootstrap, prefix)
    worker = Worker(kafka_bootstrap, prefix, "dispatch-e2e", url, tmp / "worker.log").start()
    try:
        outbox = build_outbox(KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=prefix),
                              SpoolSettings(path=tmp / "spool"), client_id="history")
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        sent = backfill(national_fleet(16, seed=11), outbox, end - timedelta(days=21), end)
        assert outbox.close(60)
        assert sent > 30_000
        wait_caught_up(kafka_bootstrap, prefix, "dispatch-e2e", worker, timeout_s=300)
    finally:
        worker.stop()
    return url


def test_forecast_refresh_backtest_place_and_the_panel_table(history_store: str) -> None:
    refresh = surplus(history_store, "forecast", "refresh")
    assert refresh.returncode == 0, refresh.stderr
    written = int(refresh.stdout.split(": ")[1].split()[0].replace(",", ""))
    assert written > 0 and written % 169 == 0, refresh.stdout  # 169 hours per pool
    rows = sql(history_store, "SELECT hub, device_class, sum(devices_sellable) FROM {db}.pool_sellable_24h "
                              "GROUP BY hub, device_class")
    assert {r[0] for r in rows} >= {"jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx"}
    assert {r[1] for r in rows} <= {"accelerator", "cpu"} and sum(int(r[2]) for r in rows) > 0

    backtest = surplus(history_store, "forecast", "backtest", "--days", "7", "--json")
    assert backtest.returncode == 0, backtest.stderr
    figures = json.loads(backtest.stdout)
    assert figures["pools"] >= 40 and figures["hours"] >= 40 * 7 * 24 * 0.9
    assert 0.85 <= figures["p10_coverage"] <= 0.95, figures
    assert figures["p50_wape"] < 0.2

    placed = surplus(history_store, "place", "--devices", "64", "--hours", "8", "--origin", "CN-SH",
                     "--min-green-share", "0.6", "--json")
    assert placed.returncode == 0, placed.stderr
    answer = json.loads(placed.stdout)
    assert answer["offers"], answer["message"]
    for offer in answer["offers"]:
        assert set(offer) == OFFER_FIELDS
        assert offer["devices_sellable"] >= 64 and offer["devices_idle_now"] >= offer["devices_sellable"]
        assert offer["green_share"] >= 0.6
        assert Decimal(offer["cost_cny"]) == 64 * 8 * Decimal(offer["price_cny_per_device_hour"])
        assert offer["pue"] >= 1 and offer["carbon_kg_per_hour"] >= 0 and offer["latency_ms"] > 0
    costs = [(Decimal(o["cost_cny"]), o["dc_id"], o["pool_id"]) for o in answer["offers"]]
    assert costs == sorted(costs)

    table = surplus(history_store, "place", "--devices", "64", "--hours", "8", "--origin", "CN-SH")
    assert table.returncode == 0 and "can take the request" in table.stdout


def test_bad_input_is_one_line(history_store: str, tmp_path: Path) -> None:
    bad = surplus(history_store, "place", "--devices", "0", "--origin", "CN-SH")
    assert bad.returncode != 0 and "devices" in bad.stderr and "Traceback" not in bad.stderr
    bad = surplus(history_store, "place", "--devices", "8", "--origin", "CN-ZZ")
    assert bad.returncode != 0 and "origin" in bad.stderr and "Traceback" not in bad.stderr
