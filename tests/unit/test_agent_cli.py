"""`surplus agent`: --help documents the config, bad configs are one line, settings precedence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main
from agents.settings import load_settings
from surplus.errors import UserError

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "agents" / "example.toml"
GOOD = """
[dc]
dc_id = "gs-qingyang-01"
name = "Qingyang 1"
operator = "Example Co"
province = "CN-GS"
hub = "gs"
lat = 35.7
lon = 107.6
racks_total = 1200

[kafka]
bootstrap = "file-host:9092"
linger_ms = 5

[collectors.simulator]
enabled = true

[[collectors.simulator.pools]]
pool_id = "mlu"
device_model = "cambricon-mlu370-x8"
devices = 64
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("SURPLUS_AGENT_", "KAFKA_")) or name == "SURPLUS_TOPIC_PREFIX":
            monkeypatch.delenv(name)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_help_documents_every_setting_and_a_sample() -> None:
    done = subprocess.run([str(BIN / "surplus"), "agent", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for needle in ("--config", "dc.dc_id", "dc.province", "intervals.capacity_s", "kafka.sasl_password",
                   "kafka.sasl_mechanism", "kafka.ssl_cafile", "spool.max_bytes", "spool.fsync",
                   "always | batch | never", "drop oldest telemetry, never job metering",
                   "signing_key_file", "[[collectors.simulator.pools]]", "collectors.slurm.enabled",
                   "KAFKA_BOOTSTRAP", "SURPLUS_TOPIC_PREFIX", "SURPLUS_AGENT_KAFKA__LINGER_MS",
                   "Sample config", 'dc_id = "gz-guian-01"'):
        assert needle in out, needle


def test_python_dash_m_agents_runs_the_same_command(tmp_path: Path) -> None:
    env = {**os.environ, "SURPLUS_AGENT_DC__RACKS_TOTAL": "77"}
    done = subprocess.run([sys.executable, "-m", "agents", "--config", str(write(tmp_path, GOOD)),
                           "--check"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config ok: dc gs-qingyang-01 (CN-GS, hub gs)")


def test_the_agent_imports_nothing_of_the_streams_side() -> None:
    code = ("import sys, agents.cli, agents.run, agents.publisher, agents.wiring, agents.fleet; "
            "import agents.collectors.slurm, agents.collectors.nvidia, agents.collectors.ascend; "
            "import agents.collectors.linux; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('faust', 'clickhouse_connect', 'streams', 'aiokafka', 'rich')]; print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout.strip() == "[]", done.stderr
    sources = {p.name: p.read_text() for p in (EXAMPLE.parent).rglob("*.py")}
    importers = [n for n, text in sources.items() if "import confluent_kafka" in text
                 or "from confluent_kafka" in text]
    assert importers == ["publisher.py"]


@pytest.mark.parametrize(("text", "message"), [
    (None, "does not exist"),
    ("[dc\nname=", "is not valid TOML"),
    (GOOD.replace('province = "CN-GS"', 'province = "Gansu"'), "dc.province: String should match"),
    (GOOD.replace("linger_ms = 5", "linger_ms = 5\nlingr_ms = 5"), "kafka.lingr_ms: Extra inputs"),
    (GOOD.replace("enabled = true", "enabled = false"), "no collector is enabled"),
    (GOOD.replace('device_model = "cambricon-mlu370-x8"', 'device_model = "gpu-9000"'),
     "'gpu-9000' is not a device_model of the catalogue"),
    (GOOD.replace("linger_ms = 5", 'security_protocol = "SASL_SSL"'), "needs sasl_username and sasl_password"),
    (GOOD.replace("[dc]", "[dcx]"), "dc: Field required"),
])
def test_a_bad_config_is_one_clear_line(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], text: str | None,
                                        message: str) -> None:
    path = write(tmp_path, text) if text is not None else tmp_path / "missing.toml"
    assert main(["--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert err.startswith("surplus agent: error: ")


def test_a_bad_config_through_the_surplus_script(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("racks_total = 1200", "racks_total = -3"))
    done = subprocess.run([str(BIN / "surplus"), "agent", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "dc.racks_total: Input should be greater than or equal to 0" in lines[0]


def test_environment_wins_over_the_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD)
    assert load_settings(path).kafka.bootstrap == "file-host:9092"
    clean_env.setenv("KAFKA_BOOTSTRAP", "env-host:9093")
    clean_env.setenv("SURPLUS_TOPIC_PREFIX", "t1.")
    clean_env.setenv("SURPLUS_AGENT_KAFKA__LINGER_MS", "20")
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_USERNAME", "dc-user")
    clean_env.setenv("KAFKA_SASL_PASSWORD", "s3cret-pass")
    clean_env.setenv("SURPLUS_AGENT_SPOOL__FSYNC", "always")
    settings = load_settings(path)
    assert settings.kafka.bootstrap == "env-host:9093" and settings.kafka.topic_prefix == "t1."
    assert settings.kafka.linger_ms == 20 and settings.spool.fsync == "always"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cret-pass"
    assert "s3cret-pass" not in repr(settings) and "s3cret-pass" not in str(settings.model_dump())
    clean_env.setenv("SURPLUS_AGENT_KAFKA__BOOTSTRAP", "agent-host:1")  # the agent's own wins
    assert load_settings(path).kafka.bootstrap == "agent-host:1"


def test_the_connection_keys_of_earlier_configs_are_still_read(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    old = GOOD.replace("linger_ms = 5", 'linger_ms = 5\nsecurity_protocol = "SASL_SSL"\nusername = "dc"\n'
                       'password = "pw"\nssl_ca_location = "/etc/ca.pem"')
    kafka = load_settings(write(tmp_path, old)).kafka
    assert kafka.sasl_username == "dc" and kafka.password == "pw" and str(kafka.ssl_cafile) == "/etc/ca.pem"
    assert kafka.librdkafka()["sasl.username"] == "dc"


def test_the_shipped_example_is_valid(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(EXAMPLE)
    assert settings.collectors.enabled() == ["simulator"]
    assert settings.spool.fsync == "batch" and settings.intervals.capacity_s == 15


def test_signing_key_of_another_dc_is_refused(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("schemas.signing")
    from agents.publisher import make_signer

    key = tmp_path / "key.toml"
    key.write_text('key_id = "k1"\ndc_id = "other-dc"\nalg = "hmac-sha256"\nsecret = "' + "ab" * 32 + '"\n')
    with pytest.raises(UserError, match="belongs to DC 'other-dc'"):
        make_signer(key, "gs-qingyang-01")
    name, value = make_signer(key, "other-dc")(b"{}", b"other-dc")
    assert name == "surplus-signature" and value.startswith(b"v1;kid=k1;alg=hmac-sha256;sig=")
