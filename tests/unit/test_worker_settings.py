"""Worker settings behave like the agent's: environment over the --config file over defaults;
an unknown key in the file is refused by name; the Kafka connection is the shared model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import WorkerSettings, load_settings
from surplus.errors import UserError

BIN = Path(sys.executable).parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("SURPLUS_", "KAFKA_")) or name == "CLICKHOUSE_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text, encoding="utf-8")
    return path


FILE = """
group_id = "file-group"
batch_max_events = 100
topic_prefix = "file."

[kafka]
bootstrap = "file-host:9092"
security_protocol = "SASL_SSL"
sasl_username = "file-user"
sasl_password = "file-pass"
"""


def test_the_environment_beats_the_file_and_the_file_beats_defaults(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, FILE)
    from_file = load_settings(path)
    assert from_file.batch_max_events == 100 and from_file.group_id == "file-group"
    assert from_file.kafka.bootstrap == "file-host:9092" and from_file.kafka.sasl_username == "file-user"
    assert from_file.batch_max_wait_ms == WorkerSettings.model_fields["batch_max_wait_ms"].default

    clean_env.setenv("SURPLUS_BATCH_MAX_EVENTS", "7")
    clean_env.setenv("SURPLUS_TOPIC_PREFIX", "env.")
    clean_env.setenv("KAFKA_BOOTSTRAP", "env-host:9093")
    clean_env.setenv("KAFKA_SASL_PASSWORD", "env-pass")
    settings = load_settings(path)
    assert settings.batch_max_events == 7 and settings.topic_prefix == "env."
    assert settings.kafka.bootstrap == "env-host:9093" and settings.kafka_bootstrap == "env-host:9093"
    assert settings.kafka.password == "env-pass"
    # what the environment does not set still comes from the file, field by field
    assert settings.group_id == "file-group" and settings.kafka.sasl_username == "file-user"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert "env-pass" not in repr(settings)


@pytest.mark.parametrize(("text", "key"), [
    ("batch_max_event = 100\n", "batch_max_event"),
    ("[kafka]\nbootstrp = 'x:1'\n", "kafka.bootstrp"),
    ("kafka_bootstrap = 'x:1'\n", "kafka_bootstrap"),
])
def test_an_unknown_key_is_refused_naming_it(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                             text: str, key: str) -> None:
    with pytest.raises(UserError) as err:
        load_settings(write(tmp_path, text))
    assert f"unknown setting '{key}'" in str(err.value)


def test_the_worker_command_refuses_an_unknown_key_in_one_line(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "batch_max_event = 100\n")
    done = subprocess.run([str(BIN / "surplus"), "streams", "worker", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "CLICKHOUSE_URL": f"chdb://{tmp_path / 'never'}"})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch_max_event" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "never").exists(), "nothing may start before the settings are valid"


def test_a_bad_value_is_one_line_with_its_key(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="batch_max_events: Input should be greater than or equal to 1"):
        load_settings(write(tmp_path, "batch_max_events = 0\n"))
    with pytest.raises(UserError, match="needs sasl_username and sasl_password"):
        load_settings(write(tmp_path, "[kafka]\nsecurity_protocol = 'SASL_SSL'\n"))
