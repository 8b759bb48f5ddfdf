"""Kafka administration every component shares: admin clients and THE place topics are created. I/O.

`ensure_topics` is the only code in the project that creates topics (the worker, the agent's
`create_topics`, the demo, the local broker, the benchmarks and the tests call it), with one
default partition count, `PARTITIONS`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from surplus.errors import UserError
from surplus.kafka.connection import KafkaConnection, coerce
from surplus.logs import DETAIL_LOG, LibrdkafkaLog, ServiceWatch, kafka_service, librdkafka_hooks, reason

PARTITIONS = 6  # topics created by the project: the unit of parallelism of a worker group


def client_config(kafka: KafkaConnection | str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for an admin/producer/consumer of `kafka` (a bare bootstrap string takes
    its security from the KAFKA_* variables), with librdkafka's logs and errors routed into Python
    logging as one line per state change of the broker (surplus.logs); `extra` wins."""
    connection = coerce(kafka)
    return connection.librdkafka({**librdkafka_hooks(connection.bootstrap), **(extra or {})})


def admin_client(kafka: KafkaConnection | str, timeout_s: float = 15, quiet: bool = False) -> Any:
    """A confluent-kafka AdminClient whose librdkafka logs say nothing on their own: their reason
    ends up in the one error line of the caller (`unreachable`); `quiet` is kept for callers."""
    from confluent_kafka.admin import AdminClient

    connection = coerce(kafka)
    hooks = LibrdkafkaLog(ServiceWatch(kafka_service(connection.bootstrap), logger=DETAIL_LOG, quiet=True),
                          logger=DETAIL_LOG)
    extra: dict[str, Any] = {"socket.timeout.ms": int(timeout_s * 1000),
                             **librdkafka_hooks(connection.bootstrap, hooks)}
    admin = AdminClient(connection.librdkafka(extra))
    setattr(admin, "surplus_log", hooks)  # noqa: B010 - read back by unreachable()
    return admin


def unreachable(admin: Any, kafka: KafkaConnection | str, error: Any, timeout_s: float) -> UserError:
    """The one line for a broker `admin` could not reach: the reason librdkafka logged (its queued
    logs are served here), else the error's text."""
    connection = coerce(kafka)
    with contextlib.suppress(Exception):
        admin.poll(0)
    hooks = getattr(admin, "surplus_log", None)
    why = hooks.service.why if isinstance(hooks, LibrdkafkaLog) and hooks.service.why else _text(error)
    return UserError(f"cannot reach Kafka at {connection.bootstrap}: {why} "
                     f"(no answer in {timeout_s:g} s)")


def _text(error: Any) -> str:
    text = error.str() if hasattr(error, "str") else str(error)
    return reason(text)


CREATE_ATTEMPTS = 3  # creating topics: transient errors are tried this many times in all


def ensure_topics(
    kafka: KafkaConnection | str,
    names: Iterable[str],
    *,
    partitions: int = PARTITIONS,
    replication: int = -1,
    timeout_s: float = 15,
    wait: bool = True,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones this call created.

    `replication` -1 takes the cluster's `default.replication.factor` (the local broker: 1; the
    local three-broker cluster: 3; a production cluster: its own), so nothing here assumes one node.
    With `wait`, return only once every named topic has a leader on every partition. UserError
    when Kafka cannot be reached, a topic cannot be created, or leaders do not appear in time."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.cimpl import NewTopic

    connection = coerce(kafka)
    admin = admin_client(connection, timeout_s)
    wanted = list(dict.fromkeys(names))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise unreachable(admin, connection, exc.args[0], timeout_s) from None
    new = [n for n in wanted if n not in existing]
    created: list[str] = []
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        if not new:
            break
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in new],
            operation_timeout=timeout_s, request_timeout=timeout_s,
        )
        again: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                code = getattr(error, "code", lambda: None)()
                if code == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                text = error.str() if hasattr(error, "str") else str(error)
                # a fresh cluster's node handles come and go while its controllers settle: a local
                # (negative-code) or retriable error is tried again, a refusal is not
                transient = (code is not None and code < 0) or bool(getattr(error, "retriable", lambda: False)())
                if not transient or attempt == CREATE_ATTEMPTS:
                    raise UserError(f"cannot create topic {name}: {text}") from None
                again.append(name)
        new = again
        if new:
            time.sleep(attempt)
            admin = admin_client(connection, timeout_s)
    if wait and wanted:
        _wait_for_leaders(admin, wanted, timeout_s)
    return created


def _wait_for_leaders(admin: Any, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(name in topics and topics[name].partitions and not topics[name].error
               and all(p.leader >= 0 for p in topics[name].partitions.values()) for name in names):
            return
        if time.monotonic() > deadline:
            raise UserError(f"topics {names} have no leader after {timeout_s:.0f} s")
        time.sleep(0.1)
