"""Agents nobody here wrote (issue 20): the same fleet published by Surplus's own agent path
(structured mode), by the official CloudEvents Python SDK (structured and binary mode, with a
`traceparent` extension) and by the official Java SDK's Kafka serializer (binary mode) gives the
same analyst figures, each checked against the independent oracle (tests/e2e/fleet.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.clients import sdk
from tests.e2e import fleet as oracle
from tests.e2e.harness import Worker, ensure_topics, publish, query, wait_caught_up
from tests.e2e.test_pipeline import RELATIONS, check_all

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow]

VARIANTS = ("agent", "python-structured", "python-binary", "java-binary")


def run_variant(variant: str, fleet: oracle.Fleet, bootstrap: str, tmp: Path, book: Path) -> dict[str, Any]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix)
    if variant == "agent":
        publish(bootstrap, prefix, fleet.messages)  # as agents/publisher.py sends: structured mode
    elif variant == "java-binary":
        sdk.java_sdk_publish(bootstrap, prefix, fleet.messages)
    else:
        sdk.publish(bootstrap, prefix, sdk.python_sdk(fleet.messages, variant.split("-")[1]))
    url = f"chdb://{tmp / variant}"
    group = f"g-{variant}-{uuid.uuid4().hex[:6]}"
    worker = Worker(bootstrap, prefix, group, url, tmp / f"{variant}.log", SURPLUS_PRICE_BOOK=str(book)).start()
    try:
        wait_caught_up(bootstrap, prefix, group, worker)
    finally:
        worker.stop()
    return query(url, RELATIONS)


def test_sdk_events_count_exactly_like_the_agents(kafka_bootstrap: str, tmp_path: Path) -> None:
    book = tmp_path / "prices.toml"
    book.write_text(oracle.PRICE_BOOK)
    fleet = oracle.generate(seed=31, dcs=6, minutes=150)  # jobs cross midnight in Asia/Shanghai
    sdk.java_client()  # build it first (Maven, cached), so a build failure is named as such
    results = {v: run_variant(v, fleet, kafka_bootstrap, tmp_path, book) for v in VARIANTS}
    check_all(results["agent"], fleet)  # against the oracle
    for variant, result in results.items():
        for name in RELATIONS:  # and so every variant: the same rows, to the last digit
            if name != "freshness":  # last_seen is the receiver's clock
                assert result[name] == results["agent"][name], (variant, name)
        assert result["ledger"] and result["national"] and result["deadletter"], variant
