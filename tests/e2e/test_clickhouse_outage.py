"""ClickHouse failing mid-stream (issue #17): the served store crashes (SIGKILL) while events keep
arriving and comes back on the same port 60 s later; the worker waits it out with back-off,
commits nothing meanwhile, says so in one line (and one when writes go through again), and every
relation is exact against the oracle afterwards.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e import fleet as oracle
from tests.e2e.harness import Worker, ensure_topics, offsets, publish, query, wait_caught_up, wait_progress
from tests.e2e.test_pipeline import RELATIONS, check_all
from tests.served import Served, serve

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.timeout(900)]

OUTAGE_S = 60
UNAVAILABLE = "ClickHouse is unavailable"
BACK = "ClickHouse takes writes again"


def test_a_minute_long_store_outage_is_waited_out_uncommitted_and_exact(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    fleet = oracle.generate(seed=29)
    (tmp_path / "prices.toml").write_text(oracle.PRICE_BOOK)
    ensure_topics(kafka_bootstrap, topic_prefix)
    first = serve(tmp_path / "served", log=tmp_path / "serve.log")
    try:
        check_outage(kafka_bootstrap, topic_prefix, tmp_path, fleet, first)
    finally:
        first.stop()


def check_outage(bootstrap: str, prefix: str, tmp_path: Path, fleet: oracle.Fleet, first: Served) -> None:
    book = tmp_path / "prices.toml"
    half = len(fleet.messages) // 2
    group = f"g-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = Worker(bootstrap, prefix, group, first.url, log, SURPLUS_PRICE_BOOK=str(book),
                    SURPLUS_BATCH_MAX_EVENTS="300", SURPLUS_BATCH_MAX_WAIT_MS="50",
                    SURPLUS_INSERT_MAX_BACKOFF_S="4").start()
    served = None
    try:
        publish(bootstrap, prefix, fleet.messages[:half])
        wait_progress(bootstrap, prefix, group, 0, worker)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # the store crashes mid-stream
        went_down = time.monotonic()
        publish(bootstrap, prefix, fleet.messages[half:])  # and events keep coming

        time.sleep(5)  # a commit already on its way when the store died may still land
        held, end = offsets(bootstrap, prefix, group)
        assert held < end, "the outage should hold back work"
        while time.monotonic() - went_down < OUTAGE_S:
            assert worker.alive(), f"the worker gave up during the outage:\n{worker.tail()}"
            assert offsets(bootstrap, prefix, group)[0] == held, "committed during the outage"
            time.sleep(3)
        during = log.read_text(errors="replace")
        assert during.count(UNAVAILABLE) == 1, worker.tail()  # said once, not a line per retry
        assert BACK not in during

        served = serve(tmp_path / "served", port=first.port, log=tmp_path / "serve2.log")  # the same port
        wait_caught_up(bootstrap, prefix, group, worker, timeout_s=300)
        assert worker.stop() is not None
        text = log.read_text(errors="replace")
        assert text.count(UNAVAILABLE) == 1 and text.count(BACK) == 1, worker.tail(80)
        assert "Traceback" not in text and "could not write pipeline metrics" not in text, worker.tail(80)
        assert "ClickHouse refused" not in text, worker.tail(80)
        # nor the HTTP stack's line per attempt
        assert "Unexpected Http Driver Exception" not in text and "Retrying (Retry(" not in text, worker.tail(80)
        check_all(query(served.url, RELATIONS), fleet)
    finally:
        worker.stop()
        if served is not None:
            assert served.stop() == 0
