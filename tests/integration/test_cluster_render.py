"""`surplus db migrate --cluster NAME`: every rendered statement parses in ClickHouse's own parser
(chDB's formatQuery), tables become Replicated*MergeTree + Distributed, the relations keep their
names; deploy/cluster/compose.yaml parses and mounts files that exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from surplus.migrations import rendered, renderer

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "cluster"

pytestmark = [pytest.mark.clickhouse]


def printed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surplus.cli", "db", "migrate", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "CLICKHOUSE_URL": "chdb:///nonexistent/never-opened"})


def split(output: str) -> list[str]:
    text = "\n".join(ln for ln in output.splitlines() if not ln.startswith("--"))
    return [s.strip() for s in text.split(";\n") if s.strip()]


def test_every_cluster_statement_parses_in_clickhouse(clickhouse_client: Any) -> None:
    done = printed("--cluster", "test")
    assert done.returncode == 0, done.stderr
    statements = split(done.stdout)
    single = [s for _, stmts in rendered("cpn", renderer()) for s in stmts]
    assert len(statements) > len(single)
    for statement in statements:
        formatted = clickhouse_client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows
        assert formatted and formatted[0][0], statement
        if not statement.startswith("INSERT"):
            assert "ON CLUSTER test" in formatted[0][0], statement[:200]
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    local = [s for s in creates if re.match(r"CREATE TABLE IF NOT EXISTS cpn\.\w+_local ", s)]
    distributed = [s for s in creates if "ENGINE = Distributed(test, cpn, " in s]
    assert local and len(local) == len(distributed)
    assert all("ENGINE = Replicated" in s and "'/clickhouse/tables/{shard}/cpn/" in s for s in local)
    # the same relations under the same names, reading the Distributed tables
    for name in ("national_surplus_minute", "hub_surplus_minute", "dc_surplus_minute", "national_surplus_hourly",
                 "hub_surplus_hourly", "dc_surplus_hourly", "dc_green_hourly", "hub_green_hourly",
                 "national_green_hourly", "ledger", "tenant_usage_daily", "datacenters", "agent_freshness",
                 "deadletter"):
        assert any(s.startswith(f"CREATE VIEW IF NOT EXISTS cpn.{name} ON CLUSTER test AS") for s in statements), name
    # materialized views fire on the shard-local tables
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views and all(re.search(r" TO cpn\.\w+_local AS", s)
                         and re.search(r"FROM cpn\.(capacity_samples|power_samples|registrations|heartbeats|"
                                       r"job_events)_local\b", s)
                         for s in views)


def test_the_cluster_statements_match_the_single_server_columns(clickhouse_client: Any) -> None:
    """The local tables have exactly the single server's columns (the rendering only moves names)."""
    single = {re.match(r"CREATE TABLE IF NOT EXISTS cpn\.(\w+)", s).group(1): s  # type: ignore[union-attr]
              for _, stmts in rendered("cpn", renderer()) for s in stmts if s.startswith("CREATE TABLE")}
    cluster = [s for _, stmts in rendered("cpn", renderer(cluster="test")) for s in stmts if s.startswith("CREATE TABLE")]
    for name, statement in single.items():
        local = next(s for s in cluster if s.startswith(f"CREATE TABLE IF NOT EXISTS cpn.{name}_local "))
        assert statement[statement.index("("): statement.index("ENGINE")].strip() in local


def test_bad_cluster_names_are_one_line() -> None:
    done = printed("--cluster", "x y", "--print")
    assert done.returncode != 0 and "plain identifier" in done.stderr and "Traceback" not in done.stderr


def test_cluster_compose_parses_and_its_configs_exist() -> None:
    compose = yaml.safe_load((CLUSTER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"keeper", "shard1", "shard2", "migrate"} <= set(services)
    assert services["migrate"]["command"][:4] == ["surplus", "db", "migrate", "--cluster"]
    cluster_name = services["migrate"]["command"][4]
    for name in ("keeper", "shard1", "shard2"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (CLUSTER / source).resolve().is_file(), (name, source)
    import xml.etree.ElementTree as ET

    servers = ET.parse(CLUSTER / "cluster.xml").getroot().find("remote_servers")
    assert servers is not None and servers.find(cluster_name) is not None
    shards = servers.find(cluster_name).findall("shard")  # type: ignore[union-attr]
    assert len(shards) == 2
    macros = {ET.parse(CLUSTER / f"macros-shard{i}.xml").getroot().findtext("macros/shard") for i in (1, 2)}
    assert len(macros) == 2
    assert ET.parse(CLUSTER / "keeper.xml").getroot().find("keeper_server") is not None
