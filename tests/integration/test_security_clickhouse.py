"""Analyst access on chDB: the users.d XML users (read-only, row policies) and roles.sql (parsed).

chDB runs each check in a fresh process: its engine reads users only from a users.xml named by
`config-file` at start-up, signs in as `default` and cannot be told another user or password;
so each analyst is loaded as `default` (with an empty password) from the deploy files, over a
database that a first process filled through the real worker Handler. chDB has no writable
access storage: SQL `CREATE ROLE`/`CREATE ROW POLICY` are refused there, so roles.sql is parsed
by ClickHouse's own parser (formatQuery) and checked against the XML policies instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.clickhouse, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
USERS_D = REPO / "deploy" / "clickhouse" / "users.d"
NATIONAL = USERS_D / "surplus-analysts.xml"
PROVINCIAL = USERS_D / "province-analyst.xml.example"
ROLES_SQL = REPO / "deploy" / "clickhouse" / "roles.sql"
A, B = "gz-guian-01", "bj-01"  # in CN-GZ and CN-BJ
WITHHELD = {"dead_letters", "deadletter", "pipeline_metrics", "schema_migrations", "schema_migration_steps",
            # the dispatcher's forecast and sellable view: the national platform's, not a province's
            "pool_idle_forecast", "pool_sellable_24h",
            # national and hub hourly roll-ups hold national sums (no dc_id for a row policy)
            "national_hourly_rollup", "hub_hourly_rollup", "national_surplus_hourly", "hub_surplus_hourly"}

SETUP = r"""
import asyncio, json, sys
from datetime import UTC, datetime
from pathlib import Path
from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from streams.batch import Record
from streams.sink import Sink
from streams.worker import Handler
from surplus.store import connect, migrate

client, _ = connect(f"chdb://{sys.argv[1]}?database=cpn")
migrate(client, "cpn")
records = []
for dc, province, hub in (("gz-guian-01", "CN-GZ", "gz"), ("bj-01", "CN-BJ", "jjj")):
    for kind in ("cpn.dc.v1", "cpn.capacity.v1", "cpn.power.v1", "cpn.job.v1", "cpn.heartbeat.v1"):
        obj = json.loads(Path(f"{sys.argv[2]}/schemas/examples/{kind}.json").read_text())
        obj["source"] = f"//cpn/dc/{dc}"
        obj["data"]["dc_id"] = dc
        if kind == "cpn.dc.v1":
            obj["data"].update(province=province, hub=hub)
        records.append(Record("t", 0, len(records), dc.encode(), json.dumps(obj).encode()))
records.append(Record("t", 0, len(records), b"x", b"not json"))
handler = Handler(sink=Sink(client, "cpn"), catalogue=load_catalogue(), prices=PriceBook.load(),
                  deadletter_topic="t.dead", clock=lambda: datetime(2026, 11, 27, 0, 5, tzinfo=UTC))
asyncio.run(handler(records))
asyncio.run(handler._maybe_flush_metrics(datetime(2026, 11, 27, 0, 5, tzinfo=UTC), force=True))
print(json.dumps({"accepted": sum(handler.metrics.accepted.values()),
                  "rejected": sum(handler.metrics.rejected.values())}))
"""

QUERY = r"""
import json, sys
from chdb import session
spec = json.loads(sys.argv[1])
conn = spec["path"] + (f"?config-file={spec['config']}" if spec.get("config") else "")
s = session.Session(conn)
out = []
for q in spec["queries"]:
    try:
        data = s.query(q, "JSONCompact").data()
        out.append({"rows": json.loads(data)["data"] if data.strip() else []})
    except Exception as exc:
        out.append({"error": str(exc).strip().splitlines()[0][:300]})
s.close()
print(json.dumps(out))
"""


def _python(cwd: Path, code: str, *args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLICKHOUSE_ANALYST_CN_GZ_PASSWORD": "x",
           "GRAFANA_CLICKHOUSE_PASSWORD": "x"}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB directory with database cpn migrated and fed two DCs by the real Handler."""
    work = tmp_path_factory.mktemp("chdb-access")
    path = work / "db"
    counts = _python(work, SETUP, str(path), str(REPO))
    assert counts == {"accepted": 10, "rejected": 1}
    return path


def _users_config(where: Path, user: str) -> Path:
    """A chDB config whose users.xml is the deploy files' definitions, `user` as `default`."""
    root = ET.Element("clickhouse")
    sections = {name: ET.SubElement(root, name) for name in ("profiles", "quotas", "users")}
    ET.SubElement(sections["profiles"], "default")
    ET.SubElement(sections["quotas"], "default")
    found: dict[str, ET.Element] = {}
    for path in (NATIONAL, PROVINCIAL):
        for name, section in sections.items():
            for child in ET.parse(path).getroot().findall(f"{name}/*"):
                if name == "users":
                    found[child.tag] = child
                else:
                    section.append(child)
    chosen = copy.deepcopy(found[user])
    chosen.tag = "default"
    password = chosen.find("password")
    assert password is not None and password.get("from_env"), "passwords come from the env"
    chosen.remove(password)  # chDB cannot present a password: sign in without one
    ET.SubElement(chosen, "password")
    sections["users"].append(chosen)
    where.mkdir(parents=True, exist_ok=True)
    (where / "users.xml").write_bytes(ET.tostring(root))
    config = where / "config.xml"
    config.write_text("<clickhouse><user_directories><users_xml><path>"
                      f"{where / 'users.xml'}</path></users_xml></user_directories></clickhouse>")
    return config


def _as(chdb_path: Path, user: str | None, queries: list[str]) -> list[dict[str, Any]]:
    where = chdb_path.parent / f"as-{user or 'admin'}"
    where.mkdir(exist_ok=True)
    spec = {"path": str(chdb_path), "queries": queries,
            "config": str(_users_config(where / "config", user)) if user else None}
    result: list[dict[str, Any]] = _python(where, QUERY, json.dumps(spec))
    return result


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    assert "error" not in result, result["error"]
    rows: list[list[Any]] = result["rows"]
    return rows


def _denied(result: dict[str, Any]) -> bool:
    error = result.get("error", "")
    return "ACCESS_DENIED" in error or "READONLY" in error or "Not enough privileges" in error


DC_RELATIONS = ["registrations", "capacity_samples", "pool_minutes", "power_samples",
                "heartbeats", "job_events", "ledger_entries", "datacenters", "agent_freshness",
                "pool_minute_state", "dc_surplus_minute", "dc_green_hourly", "ledger",
                "tenant_usage_daily"]
TOTALS = ("SELECT (SELECT sum(idle_devices) FROM cpn.national_surplus_minute), "
          "(SELECT sum(facility_kwh) FROM cpn.national_green_hourly), "
          "(SELECT groupArraySorted(10)(hub) FROM cpn.hub_surplus_minute), "
          "(SELECT toString(sum(amount_cny)) FROM cpn.tenant_usage_daily)")
WRITES = ["INSERT INTO cpn.registrations (dc_id, event_id) VALUES ('evil', 'x')",
          "CREATE TABLE cpn.evil (x UInt8) ENGINE = Memory", "DROP VIEW cpn.ledger",
          "ALTER TABLE cpn.ledger_entries DELETE WHERE 1", "SET readonly = 0"]


def _dc_queries() -> list[str]:
    return [f"SELECT groupUniqArray(toString(dc_id)) FROM cpn.{r}" for r in DC_RELATIONS]


def test_the_national_analyst_reads_everything_and_writes_nothing(chdb_path: Path) -> None:
    admin = _as(chdb_path, None, [*_dc_queries(), TOTALS])
    national = _as(chdb_path, "analyst", [*_dc_queries(), TOTALS,
                                          "SELECT count() FROM cpn.deadletter",
                                          "SELECT count() > 0 FROM cpn.pipeline_metrics", *WRITES])
    n = len(DC_RELATIONS)
    for relation, mine, full in zip(DC_RELATIONS, national[:n], admin[:n], strict=True):
        assert sorted(_rows(mine)[0][0]) == sorted(_rows(full)[0][0]) == [B, A], relation
    assert _rows(national[n]) == _rows(admin[n])
    assert _rows(national[n + 1]) == [[1]] and _rows(national[n + 2]) == [[1]]
    for statement, result in zip(WRITES, national[n + 3:], strict=True):
        assert _denied(result), (statement, result)


def test_a_provincial_analyst_sees_only_its_provinces(chdb_path: Path) -> None:
    admin = _as(chdb_path, None, [
        "SELECT sum(idle_devices) FROM cpn.dc_surplus_minute WHERE dc_id = 'gz-guian-01'",
        "SELECT sum(facility_kwh) FROM cpn.dc_green_hourly WHERE dc_id = 'gz-guian-01'",
        "SELECT toString(sum(amount_cny)) FROM cpn.tenant_usage_daily WHERE dc_id = 'gz-guian-01'",
        TOTALS])
    gz = _as(chdb_path, "analyst_cn_gz", [
        *_dc_queries(), TOTALS, "SELECT groupUniqArray(province) FROM cpn.datacenters",
        "SELECT count() FROM cpn.deadletter", "SELECT count() FROM cpn.dead_letters",
        "SELECT count() FROM cpn.pipeline_metrics", *WRITES])
    n = len(DC_RELATIONS)
    for relation, result in zip(DC_RELATIONS, gz[:n], strict=True):
        assert _rows(result)[0][0] == [A], relation
    idle, kwh, hubs, amount = _rows(gz[n])[0]
    assert [idle, kwh, amount] == [_rows(admin[0])[0][0], _rows(admin[1])[0][0],
                                   _rows(admin[2])[0][0]]
    assert hubs == ["gz"]
    assert _rows(admin[3])[0][0] > idle  # the national figure really is larger
    assert _rows(gz[n + 1]) == [[["CN-GZ"]]]
    for result in gz[n + 2:n + 5]:
        assert _denied(result), result
    for statement, result in zip(WRITES, gz[n + 5:], strict=True):
        assert _denied(result), (statement, result)


def test_every_relation_is_classified_and_every_dc_table_has_a_policy(chdb_path: Path) -> None:
    """A new table or view must be granted with a row policy, or withheld, on purpose."""
    tables, with_dc = _as(chdb_path, None, [
        "SELECT groupArray((name, engine)) FROM system.tables WHERE database = 'cpn'",
        "SELECT groupUniqArray(table) FROM system.columns WHERE database = 'cpn' "
        "AND name IN ('dc_id', 'province')"])
    province = ET.parse(PROVINCIAL).getroot().find("users/analyst_cn_gz")
    assert province is not None
    granted = {m.group(1) for q in province.iterfind("grants/query")
               if (m := re.fullmatch(r"GRANT SELECT ON cpn\.(\w+)", (q.text or "").strip()))}
    filtered = {t.tag for t in province.iterfind("databases/cpn/*")}
    all_relations = {name for name, _ in _rows(tables)[0][0]}
    base_tables = {name for name, engine in _rows(tables)[0][0] if engine != "View"}
    withheld = WITHHELD | {name for name in all_relations if name.startswith("alert_")} | {
        name for name, engine in _rows(tables)[0][0] if engine == "MaterializedView"}  # writer's
    unclassified = all_relations - granted - withheld
    assert not unclassified, f"classify in deploy/clickhouse (grant + policy, or withhold): " \
                             f"{sorted(unclassified)}"
    assert not granted & withheld
    unfiltered = (set(_rows(with_dc)[0][0]) & base_tables & granted) - filtered
    assert not unfiltered, f"granted raw tables without a row policy: {sorted(unfiltered)}"


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [" ".join(s.split()) for s in body.split(";") if s.strip()]


def test_roles_sql_parses_and_matches_the_xml_policies(chdb_path: Path) -> None:
    statements = _statements(ROLES_SQL.read_text())
    quoted = [s.replace("\\", "\\\\").replace("'", "\\'") for s in statements]
    probe, *formatted = _as(chdb_path, None, [
        "CREATE ROLE IF NOT EXISTS cpn_probe",
        *[f"SELECT formatQuery('{q}')" for q in quoted]])
    # chDB has no writable access storage (documented limitation): SQL RBAC cannot run here
    assert "error" in probe and ("ACCESS" in probe["error"] or "privileges" in probe["error"])
    for statement, result in zip(statements, formatted, strict=True):
        assert "error" not in result, (statement, result)
    kinds = {s.split(" ")[0] + " " + s.split(" ")[1] for s in statements}
    assert {"CREATE ROLE", "CREATE ROW", "CREATE SETTINGS", "CREATE QUOTA"} <= kinds

    # the same policies as the XML example: per table, the same condition
    sql_policies: dict[str, str] = {}
    pattern = re.compile(r"CREATE ROW POLICY OR REPLACE cpn_province_cn_gz ON (.+?) FOR SELECT "
                         r"USING (.+) AS RESTRICTIVE TO cpn_province_cn_gz$")
    for statement in statements:
        if (m := pattern.match(statement)):
            for table in m.group(1).split(", "):
                sql_policies[table.removeprefix("cpn.")] = m.group(2)
    province = ET.parse(PROVINCIAL).getroot().find("users/analyst_cn_gz/databases/cpn")
    assert province is not None
    xml_policies = {t.tag: " ".join((t.findtext("filter") or "").split()) for t in province}
    assert sql_policies == xml_policies
    # everyone else keeps every row of those tables
    everyone = next(s for s in statements if s.startswith("CREATE ROW POLICY OR REPLACE "
                                                            "cpn_all_rows"))
    assert everyone.endswith("FOR SELECT USING 1 AS PERMISSIVE TO ALL")
    assert set(re.findall(r"cpn\.(\w+)", everyone)) == set(xml_policies)


def test_users_d_files_are_well_formed_xml_without_secrets() -> None:
    for path in sorted(USERS_D.iterdir()):
        root = ET.parse(path).getroot()
        assert root.tag == "clickhouse", path
        for user in root.iterfind("users/*"):
            assert user.find("password") is not None, (path, user.tag)
            assert all(p.get("from_env") and not (p.text or "").strip()
                       for p in user.iter() if "password" in p.tag), (path, user.tag)
            assert (user.findtext("access_management") or "0") == "0"
            assert user.find("profile") is not None and user.find("quota") is not None
    profile = ET.parse(NATIONAL).getroot().find("profiles/surplus_analyst")
    assert profile is not None and profile.findtext("readonly") in ("1", "2")


# Every limit of the analysts' profile, and values that would lift it. 0 means "unlimited" to
# ClickHouse and passes a bare MAX constraint, so each limit needs a MIN as well (issue #21).
LIMITS = ("max_execution_time", "max_memory_usage", "max_result_rows", "max_threads")
LIFTED = {"max_execution_time": ["0", "100000"], "max_memory_usage": ["0", "100000000000"],
          "max_result_rows": ["0", "1000000000000"], "max_threads": ["1000"]}
# (max_threads = 0 is not "unlimited" but "auto": the server's core count, checked against MAX 8)


@pytest.mark.parametrize("user", ["analyst", "analyst_cn_gz"])
def test_analysts_cannot_lift_their_limits(chdb_path: Path, user: str) -> None:
    attempts = [(name, value) for name in LIMITS for value in LIFTED[name]]
    queries = [f"SELECT getSetting('{name}')" for name in LIMITS]
    queries += [f"SELECT count() FROM cpn.capacity_samples SETTINGS {name} = {value}" for name, value in attempts]
    queries += [f"SET {name} = {value}" for name, value in attempts]
    queries += ["SELECT count() FROM cpn.capacity_samples SETTINGS result_overflow_mode = 'break'",
                "SELECT count() FROM cpn.capacity_samples SETTINGS readonly = 0"]
    results = _as(chdb_path, user, queries)
    in_force = [_rows(r)[0][0] for r in results[:len(LIMITS)]]
    assert [int(v) for v in in_force] == [60, 4_000_000_000, 1_000_000, 4], "the profile is in force"
    for query, result in zip(queries[len(LIMITS):], results[len(LIMITS):], strict=True):
        error = result.get("error", "")
        assert "error" in result, f"{user} lifted a limit: {query}"
        assert "SETTING_CONSTRAINT_VIOLATION" in error or "READONLY" in error or "Cannot modify" in error \
            or "shouldn't be" in error, (query, error)
    # within the bounds, an analyst may still tighten or loosen a limit (Grafana sets some)
    allowed = _as(chdb_path, user, ["SELECT count() FROM cpn.capacity_samples SETTINGS max_execution_time = 10",
                                    "SELECT count() FROM cpn.capacity_samples SETTINGS max_threads = 2"])
    assert all("error" not in r for r in allowed), allowed
