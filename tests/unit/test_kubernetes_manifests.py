"""deploy/kubernetes: every manifest is valid against the Kubernetes API schemas (bundled with the
kubernetes-validate package, so this works offline), and every container's command, options and
environment match the CLI: its `--help` runs, each option it passes is one the command has,
and each setting it names is one the settings models read."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def by_kind(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _, doc in documents():
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {})
        for c in pod.get("containers", []) if isinstance(pod, dict) else []:
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", c))
    return out


def surplus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surplus.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def config_map(name: str, key: str) -> str:
    data: str = by_kind("ConfigMap", name)["data"][key]
    return data


@pytest.mark.parametrize(("where", "doc"), documents(),
                         ids=[f"{w}:{d['kind']}/{d['metadata']['name']}" for w, d in documents()])
def test_each_manifest_is_valid_against_the_api_schema(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_catches_a_broken_manifest() -> None:
    doc = by_kind("StatefulSet", "surplus-worker")
    broken = {**doc, "spec": {**doc["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    unknown = {**doc, "spec": {**doc["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_pieces_are_there_and_scale_as_the_readme_says() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    assert {("StatefulSet", "surplus-worker"), ("Deployment", "surplus-alerts"),
            ("Deployment", "surplus-api"), ("DaemonSet", "surplus-agent"),
            ("StatefulSet", "surplus-store"), ("Job", "surplus-migrate")} <= kinds
    partitions = int(config_map("surplus-env", "SURPLUS_PARTITIONS"))
    hpa = by_kind("HorizontalPodAutoscaler", "surplus-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "surplus-worker"
    assert hpa["spec"]["maxReplicas"] == partitions  # a worker past the partitions holds none
    assert by_kind("StatefulSet", "surplus-worker")["spec"]["replicas"] <= partitions
    alerts = by_kind("Deployment", "surplus-alerts")["spec"]
    assert alerts["replicas"] == 1 and alerts["strategy"]["type"] == "Recreate"  # one evaluator
    assert by_kind("StatefulSet", "surplus-store")["spec"]["replicas"] == 1  # one chDB process
    readme = (REPO / "README.md").read_text()
    assert "deploy/kubernetes" in readme and "one evaluator" in readme.lower()


def subcommand(c: dict[str, Any]) -> list[str]:
    assert c["command"] == ["surplus"], c["command"]
    words = []
    for arg in c["args"]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return words


@pytest.mark.parametrize(("where", "c"), containers(), ids=[w for w, _ in containers()])
def test_each_container_command_exists_and_takes_its_options(where: str, c: dict[str, Any]) -> None:
    words = subcommand(c)
    done = surplus(*words, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: surplus {' '.join(words)} "), done.stdout[:200]
    for arg in c["args"][len(words):]:
        if arg.startswith("--"):
            assert arg in done.stdout, f"{where}: {arg} is not an option of surplus {' '.join(words)}"


def known_env() -> set[str]:
    """Every variable the settings models and the commands read."""
    from agents.settings import SHARED_ENV
    from streams.settings import WorkerSettings
    from surplus.configdoc import _env_name

    names = {_env_name(n, f, "SURPLUS_") for n, f in WorkerSettings.model_fields.items()}
    names |= set(SHARED_ENV) | {"KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "SURPLUS_METRICS_PORT",
                                "SURPLUS_ALERT_RULES", "SURPLUS_WRITER_PASSWORD",
                                "SURPLUS_ANALYST_PASSWORD"}
    readme = (REPO / "README.md").read_text()
    names |= {n for n in ("SURPLUS_FORECAST_REFRESH_S",) if f"`{n}`" in readme}
    return names


def env_of(c: dict[str, Any]) -> dict[str, str]:
    """The container's variables, with a stand-in value for those from secrets and fields."""
    out: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        out.update(by_kind("ConfigMap", ref["configMapRef"]["name"])["data"])
    for e in c.get("env", []):
        out[e["name"]] = e.get("value", "stand-in")
    return out


def test_every_variable_a_container_sets_is_read_by_surplus() -> None:
    known = known_env()
    rules = tomllib.loads(config_map("surplus-alert-rules", "rules.toml"))
    known |= {r["secret_env"] for r in rules["receiver"] if "secret_env" in r}
    for where, c in containers():
        for name in env_of(c):
            agent_nested = name.startswith("SURPLUS_AGENT_") and subcommand(c) == ["agent"]
            assert name in known or agent_nested, f"{where}: {name} is read by nothing"


def test_the_workers_settings_load_from_the_manifest(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import WorkerSettings

    (_, worker), = [(w, c) for w, c in containers() if w == "StatefulSet/surplus-worker"]
    env = {**env_of(worker), "CLICKHOUSE_URL": "http://surplus:pw@surplus-store:8123/cpn",
           "SURPLUS_WORKER_ID": "surplus-worker-0", "SURPLUS_DATA_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    assert settings.partitions == int(env["SURPLUS_PARTITIONS"])
    assert settings.worker_id == "surplus-worker-0" and settings.group_id == env["SURPLUS_GROUP_ID"]
    [port] = worker["ports"]
    assert settings.metrics_port == port["containerPort"]


def test_the_evaluators_rules_and_the_agents_config_pass_their_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.settings import load_settings

    rules = tmp_path / "rules.toml"
    rules.write_text(config_map("surplus-alert-rules", "rules.toml"))
    done = surplus("alerts", "check", "--rules", str(rules),
                   env={"SURPLUS_ALERTS_OPS_SECRET": "stand-in"})
    assert done.returncode == 0 and "ok: 1 receiver(s), 3 rule(s)" in done.stdout, done.stderr

    (_, agent), = [(w, c) for w, c in containers() if w == "DaemonSet/surplus-agent"]
    config = tmp_path / "agent.toml"
    config.write_text(config_map("surplus-agent", "agent.toml"))
    env = {**env_of(agent), "SURPLUS_AGENT_COLLECTORS__NVIDIA__POOL_ID": "node-7",
           "SURPLUS_AGENT_SPOOL__PATH": str(tmp_path / "spool")}
    done = surplus("agent", "--config", str(config), "--check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "collectors nvidia" in done.stdout and str(tmp_path / "spool") in done.stdout
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config)
    assert settings.collectors.nvidia.pool_id == "node-7"  # one pool per node
    assert settings.metrics_port == 9464
