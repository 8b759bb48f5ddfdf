"""deploy/compose.yaml and deploy/Dockerfile, checked without a Docker engine.

The file parses; images come from public registries with pinned tags; every bind mount, build
context and Dockerfile source exists in the repository; Grafana mounts the provisioning and the
dashboards the other tests check, where the dashboard provider looks; the migration job, the
workers and the simulated agents run the project's commands.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PUBLIC_REGISTRIES = {"docker.io", "registry-1.docker.io", "ghcr.io", "quay.io", "mcr.microsoft.com",
                     "public.ecr.aws", "registry.k8s.io", "gcr.io"}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _binds(service: dict[str, Any]) -> dict[Path, str]:
    """Bind mounts of a service: host path (resolved from deploy/) -> container path."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else \
            volume.split(":")[:2]
        if source.startswith((".", "/")):
            found[(DEPLOY / source).resolve()] = target
    return found


def _image_is_public(image: str) -> bool:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    first = name.split("/")[0]
    registry = first if "/" in name and ("." in first or ":" in first) else "docker.io"
    return registry in PUBLIC_REGISTRIES and bool(tag) and tag != "latest"


def test_compose_parses_and_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert {"kafka", "clickhouse", "grafana", "migrate", "worker"} <= set(services)
    assert [s for s in services if s.startswith("agent")], "no simulated agents"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_images_are_public_and_pinned(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name, service in services.items():
        if "build" in service:
            assert service["image"] == "surplus:local", name
            continue
        assert _image_is_public(service["image"]), f"{name}: {service['image']}"
    assert services["kafka"]["image"] == "apache/kafka:3.9.2"
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert not _image_is_public("registry.internal.example:5000/team/kafka:1.0")
    assert not _image_is_public("grafana/grafana")
    assert not _image_is_public("grafana/grafana:latest")
    assert _image_is_public("ghcr.io/org/tool:1.2")


def test_mounted_files_and_build_sources_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in _services(compose).items():
        for host in _binds(service):
            assert host.exists(), f"{name} mounts {host.relative_to(REPO)}, which is not in the repository"
            assert REPO in host.parents, f"{name} mounts {host} from outside the repository"
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named, f"{name}: volume {source} is not declared"
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], f"{name}: config {config['source']}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file()


def test_the_dockerfile_installs_the_project_with_the_streams_extra() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert 'pip install ".[streams]"' in dockerfile
    assert re.search(r'^ENTRYPOINT \["surplus"\]', dockerfile, re.M)
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, _target = line.split()
        for source in sources:
            if "*" in source:
                continue  # optional: matches nothing without failing while another source matches
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    imported = {"surplus", "schemas", "agents", "streams"}
    assert all(f"COPY {package} ./{package}" in dockerfile for package in imported)


def test_grafana_mounts_what_the_tests_check(compose: dict[str, Any]) -> None:
    grafana = _services(compose)["grafana"]
    binds = _binds(grafana)
    provisioning = (DEPLOY / "grafana" / "provisioning").resolve()
    dashboards = (DEPLOY / "grafana" / "dashboards").resolve()
    assert binds.get(provisioning) == "/etc/grafana/provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "surplus.yaml").read_text())
    assert binds.get(dashboards) == provider["providers"][0]["options"]["path"]
    assert list(dashboards.glob("*.json")) and list((provisioning / "datasources").glob("*.yaml"))
    env = grafana["environment"]
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"].split(",")
    datasource = (provisioning / "datasources" / "clickhouse.yaml").read_text()
    for variable in {m.group(1) for m in VARIABLE.finditer(datasource)}:
        assert variable in env, f"the datasource needs ${variable}; Grafana's environment lacks it"
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    if home:
        assert (dashboards / Path(home).name).is_file()
        assert home.startswith(provider["providers"][0]["options"]["path"])


def test_clickhouse_mounts_the_server_config_and_the_analyst_user(compose: dict[str, Any]) -> None:
    clickhouse = _services(compose)["clickhouse"]
    binds = _binds(clickhouse)
    assert binds.get((DEPLOY / "clickhouse/config.d/surplus.xml").resolve(), "").startswith(
        "/etc/clickhouse-server/config.d/")
    users = (DEPLOY / "clickhouse" / "users.d").resolve()
    assert binds.get(users) == "/etc/clickhouse-server/users.d"
    assert "analyst" in "".join(p.read_text() for p in users.glob("*") if p.is_file()), (
        "deploy/clickhouse/users.d defines no `analyst` user, the one Grafana's datasource uses")
    assert clickhouse["environment"]["CLICKHOUSE_SKIP_USER_SETUP"] == "1"  # users.d is read-only


def test_the_jobs_run_the_projects_commands(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["restart"] == "no"
    worker = services["worker"]
    assert worker["command"][:2] == ["streams", "worker"]
    replicas = str(worker["deploy"]["replicas"])
    default = VARIABLE.fullmatch(replicas)
    assert int(default.group(3) if default else replicas) >= 2
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, service in services.items():
        if "build" in service:
            env = service["environment"]
            assert env["KAFKA_BOOTSTRAP"] == "kafka:9092" and "CLICKHOUSE_URL" in env, name


def test_the_simulated_agents_have_valid_configs(compose: dict[str, Any]) -> None:
    agents = {n: s for n, s in _services(compose).items() if n.startswith("agent")}
    assert len(agents) >= 2
    dc_ids = set()
    for name, service in agents.items():
        command = service["command"]
        assert command[:2] == ["agent", "--config"], name
        (config,) = service["configs"]
        assert config["target"] == command[2]
        values = tomllib.loads(compose["configs"][config["source"]]["content"])
        assert values["collectors"]["simulator"]["enabled"] is True
        dc_ids.add(values["dc"]["dc_id"])
        try:
            from agents.settings import AgentSettings
        except ImportError:
            continue
        settings = AgentSettings(**values)
        assert settings.dc.dc_id == values["dc"]["dc_id"]
    assert len(dc_ids) == len(agents), "two agents share a dc_id"


def test_required_variables_are_documented(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    required = {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) in (None, "?", ":?")}
    assert required == {"GRAFANA_CLICKHOUSE_PASSWORD"}
    docs = (REPO / "docs" / "grafana.md").read_text(encoding="utf-8")
    for variable in {m.group(1) for m in VARIABLE.finditer(text)}:
        assert variable in docs, f"${variable} is not explained in docs/grafana.md"
