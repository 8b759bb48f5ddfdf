"""Kafka administration the commands share: reachability and idempotent topic creation. I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from surplus.errors import UserError


def client_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for an admin/producer/consumer, with security from KAFKA_* variables."""
    import os

    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    if protocol != "PLAINTEXT":
        config["security.protocol"] = protocol
        if protocol.startswith("SASL"):
            config["sasl.mechanism"] = os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            config["sasl.username"] = os.environ.get("KAFKA_SASL_USERNAME", "")
            config["sasl.password"] = os.environ.get("KAFKA_SASL_PASSWORD", "")
        for key, env in (
            ("ssl.ca.location", "KAFKA_SSL_CAFILE"),
            ("ssl.certificate.location", "KAFKA_SSL_CERTFILE"),
            ("ssl.key.location", "KAFKA_SSL_KEYFILE"),
        ):
            if os.environ.get(env):
                config[key] = os.environ[env]
    config.update(extra or {})
    return config


def ensure_topics(
    bootstrap: str, names: Iterable[str], *, partitions: int, replication: int = 1, timeout_s: float = 15
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created. UserError if unreachable."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(bootstrap, {"socket.timeout.ms": int(timeout_s * 1000)}))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise UserError(f"cannot reach Kafka at {bootstrap}: {exc.args[0]}") from None
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise UserError(f"cannot create topic {name}: {exc.args[0]}") from None
    return created
