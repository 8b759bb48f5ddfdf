"""The national load test's harness (bench/loadtest.py): a short form on a small fleet inside
`make test`, and the full form (10,000 DCs, 10 minutes steady, a 5-minute burst, 1 and 2
workers) under `make loadtest` only. Both run the real pieces: the local broker, the agents'
spool and producer, `surplus streams worker` processes and `surplus store serve`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def loadtest() -> Any:
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "bench" / "loadtest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadtest"] = module
    spec.loader.exec_module(module)
    return module


def check(summaries: list[dict[str, Any]], printed: str, workers: list[int]) -> None:
    assert [s["workers"] for s in summaries] == workers
    for s in summaries:
        assert s["caught_up"], printed  # every published event committed after the drain
        assert s["probes"] >= 1 and s["probes_not_seen"] == 0, printed
        assert 0 < s["latency_p50_s"] <= s["latency_p99_s"], printed
        assert len(s["peak_rss_mb"]) == s["workers"] and all(m > 50 for m in s["peak_rss_mb"]), printed
        assert s["nominal_events_per_s"] > 0 and s["published_events_per_s_steady"] > 0, printed
        assert s["events_per_worker_cpu_s"] > 0 and s["events_per_simulator_cpu_s"] > 0, printed
    for needle in ("sustained, committed (steady)", "lag trend", "event->queryable latency", "peak RSS per worker",
                   "cores the national 25,000/s rate needs"):
        assert needle in printed, printed


@pytest.mark.slow
@pytest.mark.e2e
def test_the_short_load_test_runs_two_workers_and_reports_every_figure() -> None:
    out = io.StringIO()
    summaries = loadtest().main(["--dcs", "16", "--workers", "2", "--steady-s", "20", "--burst-s", "10",
                                 "--burst-dcs", "4", "--burst-span-s", "60", "--sample-s", "3", "--probe-s", "4",
                                 "--probe-timeout-s", "90", "--drain-s", "120", "--cost-dcs", "16",
                                 "--cost-s", "60", "--partitions", "3", "--broker-heap-mb", "512",
                                 "--clock-speed", "2"], out=out)
    check(summaries, out.getvalue(), [2])
    [summary] = summaries  # the fleet's clock at twice the speed: twice its events per second
    assert summary["clock_speed"] == 2 and "(clock x2)" in out.getvalue()


@pytest.mark.loadtest
@pytest.mark.timeout(3 * 3600)
def test_the_national_load_test() -> None:
    """10,000 DCs, 1 then 2 workers; prints the figures (README, performance) and keeps them in var/."""
    out = Path(ROOT / "var" / "loadtest")
    out.mkdir(parents=True, exist_ok=True)

    class Tee(io.StringIO):
        def write(self, text: str) -> int:
            sys.__stdout__.write(text)
            sys.__stdout__.flush()
            return super().write(text)

    printed = Tee()
    summaries = loadtest().main(["--json", str(out / "summary.json")], out=printed)
    (out / "report.txt").write_text(printed.getvalue())
    check(summaries, printed.getvalue(), [1, 2])
    json.loads((out / "summary.json").read_text())
