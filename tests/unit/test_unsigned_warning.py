"""The worker warns once, at start, when it accepts unsigned events from a secured broker (issue #21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime import unsigned_warning
from streams.settings import WorkerSettings
from surplus.kafka.connection import KafkaConnection


def _settings(protocol: str, signing_keys: Path | None) -> WorkerSettings:
    kafka = KafkaConnection(bootstrap="127.0.0.1:9093", security_protocol=protocol,
                            sasl_username="surplus-worker" if protocol.startswith("SASL") else None,
                            sasl_password="x" if protocol.startswith("SASL") else None)  # type: ignore[arg-type]
    return WorkerSettings(kafka=kafka, clickhouse_url="chdb:///tmp/unused", signing_keys=signing_keys)


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL", "SASL_PLAINTEXT"])
def test_secured_broker_without_signing_keys_is_one_loud_line(protocol: str) -> None:
    warning = unsigned_warning(_settings(protocol, None))
    assert warning is not None and warning.startswith("SIGNING IS OFF") and "SURPLUS_SIGNING_KEYS" in warning
    assert "\n" not in warning


def test_no_warning_with_signing_keys_or_on_a_plaintext_broker(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    assert unsigned_warning(_settings("SASL_SSL", keys)) is None
    assert unsigned_warning(_settings("PLAINTEXT", None)) is None
