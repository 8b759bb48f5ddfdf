"""The operator's install path (README): `pip install 'surplus[agent]'` in a fresh venv runs the
agent against the broker, without any of the workers' dependencies; the systemd unit is valid."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "surplus-agent.service"
SKIP = {".git", ".venv", "var", "tests", "build", "dist", "bench", "__pycache__", ".hypothesis",
        ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def source_copy(dest: Path) -> Path:
    """The project's sources without the developer's state (what a release holds)."""
    shutil.copytree(ROOT, dest, ignore=lambda _d, names: [n for n in names
                                                           if n in SKIP or n.endswith(".egg-info")])
    return dest


@pytest.mark.kafka
def test_pip_install_agent_extra_in_a_fresh_venv_runs_the_agent(kafka_bootstrap: str, topic_prefix: str,
                                                                 tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{src}[agent]"],
                         capture_output=True, text=True, timeout=800, check=False)
    assert pip.returncode == 0, pip.stderr[-2000:]
    surplus = str(venv / "bin" / "surplus")
    python = str(venv / "bin" / "python")
    for module in ("faust", "clickhouse_connect", "kubernetes"):  # the workers' stack is not there
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60, check=False)
        assert probe.returncode != 0, f"{module} came with surplus[agent]"
    helped = subprocess.run([surplus, "agent", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "status_interval_s" in helped.stdout, helped.stderr
    config = tmp_path / "agent.toml"
    example = (ROOT / "agents" / "example.toml").read_text()
    config.write_text(example.replace('path = "/var/lib/surplus-agent/spool"', f'path = "{tmp_path / "spool"}"')
                      .replace('bootstrap = "127.0.0.1:9092"', f'bootstrap = "{kafka_bootstrap}"')
                      .replace('topic_prefix = "cpn."', f'topic_prefix = "{topic_prefix}"')
                      .replace("create_topics = false", "create_topics = true"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURPLUS_", "KAFKA_"))}
    run = subprocess.run([surplus, "agent", "--config", str(config), "--run-for", "4"],
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert run.returncode == 0, run.stderr
    stopped = [ln for ln in run.stderr.splitlines() if "stopped:" in ln]
    assert stopped and " 0 left in the spool" in stopped[0], run.stderr
    status = subprocess.run([surplus, "agent", "status", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, check=False, env=env)
    assert status.returncode == 0 and "backlog 0 events" in status.stdout, status


def test_the_systemd_unit_runs_the_agent_and_keeps_the_spool_writable() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["agent", "--flush-timeout"]
    flush = float(service["ExecStart"].split()[3])
    assert float(service["TimeoutStopSec"]) > flush  # SIGTERM flushes, then systemd waits
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    assert "/var/lib/surplus-agent" in service["ReadWritePaths"]
    assert 'path = "/var/lib/surplus-agent/spool"' in (ROOT / "agents" / "example.toml").read_text()
    if shutil.which("systemd-analyze"):
        fake = UNIT.read_text().replace("/opt/surplus/bin/surplus", shutil.which("true") or "/bin/true")
        copy = Path(os.environ.get("TMPDIR", "/tmp")) / f"surplus-agent-{os.getpid()}.service"
        copy.write_text(fake)
        try:
            done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                                  text=True, timeout=60, check=False)
        finally:
            copy.unlink()
        problems = [ln for ln in (done.stdout + done.stderr).splitlines()
                    if ln.strip() and "surplus" in ln and "User" not in ln]
        assert not problems, problems
