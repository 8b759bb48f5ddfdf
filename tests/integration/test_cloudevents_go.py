"""A Go agent (segmentio/kafka-go, no CloudEvents SDK) publishing binary-mode events signed in the
documented canonical form, through the real broker: the worker's decode path accepts every one
with signing on, and a spoofed `ce_source` or `ce_time` header is `bad_signature` (issue 20)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.signing import KeyRegistry
from streams.batch import Record, process
from streams.signing import make_verifier
from tests.clients import sdk
from tests.e2e import fleet as oracle
from tests.e2e.harness import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SECRET = bytes(range(40, 72))


def registry(dcs: list[str]) -> KeyRegistry:
    return KeyRegistry.from_toml("\n".join(
        f'[[key]]\nkey_id = "{dc}-1"\ndc_id = "{dc}"\nsecret = "{SECRET.hex()}"\n' for dc in dcs))


def consume(bootstrap: str, topics: list[str], n: int) -> list[Record]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    records: list[Record] = []
    deadline = time.monotonic() + 120
    try:
        while len(records) < n and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                if m.error() is None:
                    records.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                          tuple(m.headers() or ())))
    finally:
        consumer.close()
    return records


def test_a_go_agent_signing_binary_events_is_accepted(kafka_bootstrap: str, topic_prefix: str) -> None:
    fleet = oracle.generate(seed=41, dcs=3, minutes=10, poison=False, regression=False)
    dcs = sorted({m.event["data"]["dc_id"] for m in fleet.messages if m.event is not None})
    lines = sdk.tsv(fleet.messages)
    ensure_topics(kafka_bootstrap, topic_prefix)
    done = subprocess.run([str(sdk.go_client()), "-bootstrap", kafka_bootstrap, "-prefix", topic_prefix],
                          input=lines, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "SURPLUS_SIGNING_SECRET_HEX": SECRET.hex()})
    assert done.returncode == 0, done.stderr[-2000:]
    n = int(done.stdout.strip())
    assert n == lines.count("\n") > 100
    topics = sorted({topic_prefix + m.topic for m in fleet.messages})
    records = consume(kafka_bootstrap, topics, n)
    assert len(records) == n
    assert all(dict(r.headers).get("ce_traceparent") for r in records)

    now = datetime(2026, 11, 21, tzinfo=UTC)
    verifier = make_verifier(registry(dcs), clock=lambda: now)
    batch = process(records, now=now, catalogue=load_catalogue(), verifier=verifier)
    assert not batch.dead, batch.dead[:3]
    assert sum(batch.accepted.values()) == n

    other = next(dc for dc in dcs if dc.encode() != records[0].key)
    spoofed = [_with(records[0], "ce_source", f"//cpn/dc/{other}".encode()),
               _with(records[1], "ce_time", b"2026-11-20T14:31:00Z")]
    batch = process(spoofed, now=now, catalogue=load_catalogue(), verifier=verifier)
    assert [d.reason.value for d in batch.dead] == ["bad_signature", "bad_signature"], batch.dead


def _with(record: Record, name: str, value: bytes) -> Record:
    headers: Any = tuple((k, value if k == name else v) for k, v in record.headers)
    return Record(record.topic, record.partition, record.offset, record.key, record.value, headers)
