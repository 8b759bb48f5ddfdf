"""Secrets (Kafka password, signing keys) never show in logs, reprs or dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from schemas.signing import KeyRegistry, SigningKey, load_signing_key, sign
from streams.batch import Record
from streams.signing import load_verifier
from streams.sink import Sink
from streams.worker import Handler

pytestmark = [pytest.mark.clickhouse, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
KAFKA_PASSWORD = "kafka-Pa55word-that-must-not-leak"
HMAC_SECRET = bytes.fromhex("5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7")
ED_SEED = bytes.fromhex("ed5eed" * 10 + "ed5e")


def forms(secret: bytes | str) -> list[str]:
    """The ways a secret could be printed: as text, hex, base64, base64url, bytes repr."""
    if isinstance(secret, str):
        return [secret]
    b64 = base64.b64encode(secret).decode()
    return [secret.hex(), secret.hex().upper(), b64, b64.rstrip("="),
            base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1]]


SECRETS = [*forms(KAFKA_PASSWORD), *forms(HMAC_SECRET), *forms(ED_SEED)]


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret shows in {where}"


@pytest.fixture
def kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "surplus-worker")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)


def test_settings_and_credentials_reprs_hide_the_kafka_password(kafka_env: None) -> None:
    from streams.app import credentials
    from streams.settings import WorkerSettings
    from surplus.kafka.connection import from_env

    security = from_env()
    assert security.sasl_password is not None
    assert security.sasl_password.get_secret_value() == KAFKA_PASSWORD  # it is read
    settings = WorkerSettings()
    for text, where in [(repr(security), "repr(KafkaConnection)"), (str(security), "str"),
                        (security.model_dump_json(), "KafkaConnection JSON"),
                        (repr(settings), "repr(WorkerSettings)"),
                        (settings.model_dump_json(), "WorkerSettings JSON"),
                        (repr(credentials(settings.kafka)), "repr(faust credentials)")]:
        assert_clean(text, where)


def _write_keys(tmp_path: Path) -> tuple[SigningKey, SigningKey, Path]:
    hmac_file, ed_file = tmp_path / "gz.toml", tmp_path / "gz-ed.toml"
    hmac_file.write_text(f'key_id = "gz-a"\ndc_id = "gz-guian-01"\nsecret = "{HMAC_SECRET.hex()}"\n')
    ed_file.write_text(f'key_id = "gz-b"\ndc_id = "gz-guian-01"\nalg = "ed25519"\n'
                       f'secret = "base64:{base64.b64encode(ED_SEED).decode()}"\n')
    hmac_key, ed_key = load_signing_key(hmac_file), load_signing_key(ed_file)
    registry = tmp_path / "keys.toml"
    registry.write_text(
        f'[[key]]\nkey_id = "gz-a"\ndc_id = "gz-guian-01"\nsecret = "{HMAC_SECRET.hex()}"\n'
        f'[[key]]\nkey_id = "gz-b"\ndc_id = "gz-guian-01"\nalg = "ed25519"\n'
        f'public_key = "{ed_key.public_key().hex()}"\n')
    return hmac_key, ed_key, registry


def test_the_worker_pipeline_with_keys_logs_no_secret(
        store: Any, tmp_path: Path, kafka_env: None, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    hmac_key, ed_key, registry = _write_keys(tmp_path)
    sent: list[Any] = []

    async def produce(topic: str, key: bytes | None, value: bytes, headers: Any) -> None:
        sent.append((topic, key, value, headers))

    handler = Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                      prices=PriceBook.load(), deadletter_topic="t.deadletter", produce=produce,
                      verifier=load_verifier(registry), clock=lambda: NOW,
                      metrics_interval_s=1e-9)
    records = []
    for offset, name in enumerate(sorted(EXAMPLES.glob("*.json"))):
        raw = name.read_bytes()
        key = (hmac_key, ed_key)[offset % 2]
        headers = [sign(raw, key)] if offset != 3 else [sign(raw + b" ", key)]  # one bad
        records.append(Record("t.telemetry", 0, offset, b"gz-guian-01", raw, tuple(headers)))
    asyncio.run(handler(records))
    assert handler.metrics.rejected == {"bad_signature": 1}

    reprs = [repr(hmac_key), str(ed_key), repr(KeyRegistry.load(registry)),
             repr(list(KeyRegistry.load(registry))), repr(handler.verifier), repr(handler)]
    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, *reprs, json.dumps(
        [[t, str(k), str(v), str(h)] for t, k, v, h in sent]),
        repr(store.rows("SELECT * FROM {db}.deadletter"))])
    assert "worker worker: in=5" in caplog.text  # the metrics line was logged
    assert_clean(everything, "logs, reprs or dead letters")


def test_clickhouse_url_password_not_in_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import WorkerSettings

    monkeypatch.setenv("CLICKHOUSE_URL", f"http://writer:{KAFKA_PASSWORD}@ch:8123/cpn")
    assert_clean(repr(WorkerSettings()), "repr(WorkerSettings)")
