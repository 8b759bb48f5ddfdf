"""Restatement events: build `cpn.restatement.v1` CloudEvents and publish them on
`<prefix>restatements`. `event` is pure; `publish` is I/O (Kafka, confluent-kafka).

`publish` waits for every delivery report (acks=all, idempotent producer) and raises a UserError
if any event is not delivered, so that `surplus ledger close` writes no restated statement whose
event was not published; a re-run publishes again with the same event ids (consumers dedup on
`source`+`id`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from schemas.events import CONTENT_TYPE, make_event
from schemas.restatement import EVENT_TYPE, Restatement, StatementTotals
from schemas.topics import RESTATEMENTS, Topics
from streams.statements import Restated, Statement, hour_text
from surplus.errors import UserError


def _totals(s: Statement) -> StatementTotals:
    t = s.totals.as_strings()
    return StatementTotals(version=s.version, entries=s.entries, device_seconds=t["device_seconds"],
                           energy_kwh=t["energy_kwh"], amount_cny=t["amount_cny"], hash=s.hash)


def event(r: Restated) -> dict[str, Any]:
    """The CloudEvent (structured mode, a JSON-ready dict) of one restatement."""
    new = r.new
    data = Restatement(dc_id=new.dc_id, hour=hour_text(new.hour), version=new.version,
                       old=_totals(r.old), new=_totals(new))
    ident = f"restatement-{new.hour:%Y%m%d%H}-v{new.version}"
    return make_event(EVENT_TYPE, ident, new.closed_at, data)


def publish(bootstrap: str, prefix: str, restated: Sequence[Restated], *,
            timeout_s: float = 30.0) -> int:
    """Publish one event per restatement (key = dc_id); return how many were delivered."""
    if not restated:
        return 0
    from confluent_kafka import KafkaException, Producer

    from surplus.kafka.admin import client_config, ensure_topics

    topic = Topics(prefix).name(RESTATEMENTS)
    try:
        ensure_topics(bootstrap, [topic], timeout_s=min(timeout_s, 15))
        config = client_config(bootstrap, {"enable.idempotence": True, "acks": "all",
                                           "message.timeout.ms": int(timeout_s * 1000)})
    except ValueError as exc:  # KAFKA_* security settings that do not fit together
        raise UserError(f"Kafka settings: {exc}") from None
    failures: list[str] = []
    delivered = 0

    def report(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            failures.append(str(err))

    try:
        producer = Producer(config)
        for r in restated:
            value = json.dumps(event(r), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            producer.produce(topic, value, key=r.new.dc_id.encode("utf-8"),
                             headers=[("content-type", CONTENT_TYPE.encode())], on_delivery=report)
        left = producer.flush(timeout_s)
    except (KafkaException, BufferError) as exc:
        raise UserError(f"cannot publish restatements to {topic}: {exc}") from None
    if left or failures:
        why = failures[0] if failures else f"{left} not delivered in {timeout_s:g} s"
        raise UserError(f"restatement events to {topic} were not all delivered ({why}); "
                        "no statement was written: run `surplus ledger close` again")
    return delivered
