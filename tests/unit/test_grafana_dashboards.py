"""The dashboard JSON files and Grafana provisioning, checked without a Grafana or a store.

Unique ids, a title and a query on every panel, datasource uids that the provisioning declares,
template variables that are defined and used, only the analyst relations of SPEC §5 (and
cpn.pipeline_metrics), and the time macros where a relation has a time column.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
PATHS = sorted((GRAFANA / "dashboards").glob("*.json"))
RELATIONS = {  # SPEC §5, plus the workers' self-monitoring table
    "national_surplus_minute", "hub_surplus_minute", "dc_surplus_minute", "dc_green_hourly",
    "hub_green_hourly", "national_green_hourly", "ledger", "tenant_usage_daily", "datacenters",
    "agent_freshness", "deadletter", "pipeline_metrics",
    "national_surplus_hourly", "hub_surplus_hourly", "dc_surplus_hourly",  # SPEC §5, long ranges
    "pool_idle_forecast", "pool_sellable_24h",  # the dispatcher's forecast and its sellable figures
}
TIMED = RELATIONS - {"datacenters", "agent_freshness"}  # each has a time column to filter on
PANEL_TYPES = {"timeseries", "stat", "table", "geomap", "bargauge", "piechart", "barchart", "gauge"}
BUILTIN = {"__from", "__to", "__interval", "__interval_ms", "__range_s", "__all"}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?:\.[^:^}]+)?(?::[^}]+)?\}")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _sql(panel: dict[str, Any]) -> str:
    return "\n".join(t.get("rawSql", "") for t in panel.get("targets", []))


def _variable_sql(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("rawSql", "") if isinstance(query, dict) else query)


def _referenced(text: str) -> set[str]:
    """Template variables a text refers to (macros `$__name` are the plugin's, not variables)."""
    names = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}
    return {n for n in names if not n.startswith("__")}


def _datasource_uids(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            found.add(ds["uid"])
        for value in node.values():
            found |= _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _datasource_uids(value)
    return found


def test_there_are_five_dashboards_with_unique_uids_and_titles() -> None:
    boards = [_load(p) for p in PATHS]
    assert len(boards) == 5
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", b["uid"]) for b in boards)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_panel_has_a_unique_id_a_title_and_a_query(path: Path) -> None:
    panels = _load(path)["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        assert panel.get("description", "").strip(), f"{panel['title']}: no description"
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("rawSql", "").strip(), f"{panel['title']}: empty query"
            assert target.get("editorType") == "sql"
            if panel["type"] in ("timeseries", "table", "geomap"):  # 0 time series, 1 table
                assert target.get("format") == (0 if panel["type"] == "timeseries" else 1)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_panels_do_not_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _load(path)["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_datasource_references_exist_in_provisioning() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    types = {d["type"] for d in provisioned["datasources"]}
    assert types == {"grafana-clickhouse-datasource"}
    for path in PATHS:
        board = _load(path)
        used = _datasource_uids(board)
        assert used, path.name
        assert used <= uids, f"{path.name} refers to datasources {used - uids} not provisioned"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids
            assert all(t["datasource"]["uid"] in uids for t in panel["targets"])


def test_the_provider_serves_the_dashboards_directory() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/surplus.yaml").read_text())
    (only,) = provider["providers"]
    assert only["type"] == "file"
    assert only["options"]["path"] == "/var/lib/grafana/dashboards/surplus"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_template_variables_are_defined_and_used(path: Path) -> None:
    board = _load(path)
    variables = board["templating"]["list"]
    defined = [v["name"] for v in variables]
    assert {"hub", "province", "dc"} <= set(defined)
    panels_sql = "\n".join(_sql(p) for p in board["panels"])
    titles = "\n".join(p["title"] for p in board["panels"])
    for i, variable in enumerate(variables):
        later = "\n".join(_variable_sql(v) for v in variables[i + 1:])
        assert variable["name"] in _referenced(panels_sql + later + titles), (
            f"${variable['name']} is defined but no panel or later variable uses it")
        assert variable["datasource"]["uid"] == "surplus-clickhouse"
        assert _variable_sql(variable).strip()
        earlier = set(defined[:i])
        assert _referenced(_variable_sql(variable)) <= earlier, (
            f"${variable['name']} depends on a variable defined after it")
    for panel in board["panels"]:
        unknown = _referenced(_sql(panel)) - set(defined) - BUILTIN
        assert not unknown, f"{panel['title']}: undefined variables {unknown}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_queries_use_only_the_analyst_relations_and_the_time_macros(path: Path) -> None:
    board = _load(path)
    texts = [(p["title"], p["type"], _sql(p)) for p in board["panels"]]
    texts += [(f"${v['name']}", "variable", _variable_sql(v)) for v in board["templating"]["list"]]
    for title, kind, sql in texts:
        relations = set(re.findall(r"\bcpn\.(\w+)", sql))
        assert relations <= RELATIONS, f"{title}: not analyst relations: {relations - RELATIONS}"
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+(?!cpn\.)([A-Za-z_][\w.]*)\b(?!\s*\()", sql))
        assert tables <= {"values"}, f"{title}: relations outside cpn: {tables}"
        if relations & TIMED and kind != "variable":
            assert "$__timeFilter(" in sql or "$__fromTime" in sql, f"{title}: no time filter"
        if kind == "timeseries":
            assert "$__timeInterval(" in sql, f"{title}: a time series without $__timeInterval"


def test_the_green_dashboard_shows_the_targets() -> None:
    board = _load(GRAFANA / "dashboards" / "green-energy.json")
    steps = [s["value"] for p in board["panels"]
             for s in p["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])]
    assert 0.8 in steps
    from schemas.hubs import PUE_TARGET_BY_HUB  # equal to the vendored reference (test_hubs.py)

    sql = "\n".join(_sql(p) for p in board["panels"])
    targets = dict(re.findall(r"\('(\w+)', (\d\.\d+)\)", sql))
    assert {k: float(v) for k, v in targets.items()} == PUE_TARGET_BY_HUB


def test_the_national_dashboard_has_a_geomap_on_lat_lon() -> None:
    board = _load(GRAFANA / "dashboards" / "national-surplus.json")
    (geomap,) = [p for p in board["panels"] if p["type"] == "geomap"]
    (layer,) = geomap["options"]["layers"]
    assert layer["location"] == {"mode": "coords", "latitude": "lat", "longitude": "lon"}
    assert layer["config"]["style"]["size"]["field"] == "idle_pflops_fp16"
    assert "cpn.datacenters" in _sql(geomap)
