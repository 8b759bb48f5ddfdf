"""`surplus store serve` answered by clients nobody here wrote, while the worker's Handler writes.

One served store (a process of its own, deploy/clickhouse's users) is filled with the dashboards'
fleet by the worker's real batch Handler writing through clickhouse-connect's http:// client.
While it writes, clickhouse-connect, the ClickHouse JDBC driver (a Java program built by Maven),
clickhouse-go v2 over HTTP (a Go program) and `surplus report` read the current figures again
and again; then every Grafana panel's expanded query runs through clickhouse-go and its columns
are checked. The analysts' limits are checked through the server: read-only, row policies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_dashboards import (
    DASHBOARDS,
    Result,
    TimeRange,
    check_result,
    expand,
    load_fleet,
    panel_interval,
    resolve_variables,
)
from tests.served import PASSWORDS, REPO, Served, build_go, build_jdbc, env, serve, users_dir

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("served")
    server = serve(work / "store", users_dir(work / "users.d"), log=work / "serve.log")
    yield server
    assert server.stop() == 0, (work / "serve.log").read_text()[-3000:]


class Loader(threading.Thread):
    """The worker's Handler writing the fleet through the served store."""

    def __init__(self, served: Served) -> None:
        super().__init__(daemon=True)
        self.served = served
        self.end = datetime.now(UTC).replace(second=0, microsecond=0)
        self.error: BaseException | None = None
        self.messages = 0

    def run(self) -> None:
        try:
            self.messages = load_fleet(self.served.client("surplus"), "cpn", self.end, window_min=1)
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture(scope="module")
def clients() -> tuple[list[str], Path]:
    """The JDBC and clickhouse-go programs, built (or found built) before the writing starts."""
    return build_jdbc(), build_go()


@pytest.fixture(scope="module")
def loader(served: Served, clients: tuple[list[str], Path]) -> Loader:
    thread = Loader(served)
    thread.start()
    return thread


def _jdbc(command: list[str], served: Served, user: str, queries: list[str]) -> list[list[str]]:
    done = subprocess.run([*command, f"jdbc:clickhouse://127.0.0.1:{served.port}/cpn", user,
                           PASSWORDS[user]], input="\n".join(queries) + "\n", capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split("\t") for line in done.stdout.splitlines() if line.startswith(("OK\t", "ERR\t"))]
    assert len(lines) == len(queries), done.stdout + done.stderr[-2000:]
    return lines


def _go(binary: Path, served: Served, user: str, queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    done = subprocess.run([str(binary), "-addr", f"127.0.0.1:{served.port}", "-user", user,
                           "-password", PASSWORDS[user], "-database", "cpn"],
                          input=json.dumps([{"name": n, "sql": q} for n, q in queries]),
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


COUNT = "SELECT count() FROM cpn.capacity_samples"
FIGURES = ("SELECT (SELECT count() FROM cpn.capacity_samples), "
           "(SELECT toString(round(sum(idle_pflops_fp16), 6)) FROM cpn.national_surplus_minute)")


def test_every_client_reads_the_current_figures_while_the_worker_writes(
        served: Served, clients: tuple[list[str], Path], loader: Loader) -> None:
    jdbc, go = clients
    analyst = served.client("analyst")
    seen: dict[str, list[int]] = {"clickhouse-connect": [], "jdbc": [], "clickhouse-go": [], "report": []}
    report_env = {**env(), "CLICKHOUSE_URL": f"http://analyst:{PASSWORDS['analyst']}@127.0.0.1:{served.port}/cpn"}
    deadline = time.monotonic() + 120
    while int(analyst.query(COUNT).result_rows[0][0]) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the first rows (the report says "no data yet" before them)
    rounds = 0
    while loader.is_alive() or rounds < 2:
        rounds += 1
        seen["clickhouse-connect"].append(int(analyst.query(COUNT).result_rows[0][0]))
        seen["jdbc"].append(int(_jdbc(jdbc, served, "analyst", [COUNT])[0][3]))
        go_result = _go(go, served, "analyst", [("count", COUNT)])[0]
        assert not go_result.get("error"), go_result
        seen["clickhouse-go"].append(int(go_result["rows"][0][0]))
        report = subprocess.run([sys.executable, "-m", "surplus.cli", "report"], cwd=REPO, env=report_env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert report.returncode == 0, report.stderr[-2000:]
        seen["report"].append(int(analyst.query(COUNT).result_rows[0][0]))
    loader.join(300)
    assert loader.error is None, loader.error
    final = int(analyst.query(COUNT).result_rows[0][0])
    print(f"\nreads while writing ({rounds} rounds): " + "; ".join(f"{k}: {v}" for k, v in seen.items()))
    for name, counts in seen.items():
        assert counts == sorted(counts), (name, counts)  # the figures only grow while the worker writes
        assert counts[-1] <= final
    assert any(0 < c < final for counts in seen.values() for c in counts), seen  # read mid-write
    # at the end every client returns the same figures
    figures = [str(v) for v in analyst.query(FIGURES).result_rows[0]]
    assert int(figures[0]) == final > 0
    assert _jdbc(jdbc, served, "analyst", [FIGURES])[0][3].split("|") == figures
    go_rows = _go(go, served, "analyst", [("figures", FIGURES)])[0]["rows"]
    assert go_rows == [figures]


def test_every_dashboard_panel_runs_through_clickhouse_go(served: Served, loader: Loader) -> None:
    loader.join(300)
    assert loader.error is None
    from surplus.dispatch.service import refresh

    # the forecast and the sellable panel's table, written through the served store as the API does
    assert refresh(served.client("surplus"), "cpn")[1] > 0
    binary = build_go()
    now = datetime.now(UTC)
    when = TimeRange(loader.end - timedelta(hours=3), now)

    def run_go(sql: str) -> Result:
        result = _go(binary, served, "analyst", [("variable", sql)])[0]
        assert not result.get("error"), (sql, result["error"])
        return Result(result["columns"], result["types"], [tuple(r) for r in result["rows"]])

    problems: list[str] = []
    panels = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = resolve_variables(dashboard, run_go, when, pick="all")
        queries: list[tuple[str, str]] = []
        owners: list[dict[str, Any]] = []
        for panel in dashboard["panels"]:
            ranged = TimeRange(when.start, when.end, panel_interval(panel, when))
            for target in panel.get("targets", []):
                queries.append((panel.get("title", "?"), expand(target["rawSql"], variables, ranged)))
                owners.append(panel)
        for panel, result in zip(owners, _go(binary, served, "analyst", queries), strict=True):
            panels += 1
            if result.get("error"):
                problems.append(f"{path.stem}/{panel.get('title')}: {result['error'][:300]}")
                continue
            problems += [f"{path.stem}/{p}" for p in check_result(panel, Result(
                result["columns"], result["types"], [tuple(r) for r in result["rows"]]), require_rows=True)]
    print(f"\n{panels} panel queries through clickhouse-go over HTTP")
    assert panels > 20 and not problems, problems


def test_clickhouse_connect_inserts_and_streams(served: Served) -> None:
    writer = served.client("surplus")
    writer.command("CREATE TABLE IF NOT EXISTS cpn.scratch (n UInt64, s String, t DateTime64(3, 'UTC')) "
                   "ENGINE = MergeTree ORDER BY n")
    rows = [[i, f"row-{i}", datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)] for i in range(5000)]
    summary = writer.insert("cpn.scratch", rows, column_names=["n", "s", "t"])
    assert summary.written_rows == 5000
    assert writer.query("SELECT count(), sum(n) FROM cpn.scratch").result_rows == [(5000, sum(range(5000)))]
    with served.client("analyst").query_row_block_stream(
            "SELECT number, toString(number) FROM numbers(500000)") as stream:
        blocks = [len(block) for block in stream]
    assert sum(blocks) == 500000 and len(blocks) > 1  # it came in blocks, not as one answer
    result = served.client("analyst").query("SELECT {n:UInt32} * 2 AS x", parameters={"n": 21})
    assert result.result_rows == [(42,)]
    # a raw INSERT … FORMAT with the data in the body, as curl sends it
    import httpx

    for fmt, body in (("JSONEachRow", b'{"n": 90001, "s": "j", "t": "2026-01-01 00:00:00"}\n'),
                      ("TabSeparated", b"90002\tt\t2026-01-01 00:00:00\n")):
        answer = httpx.post(f"http://127.0.0.1:{served.port}/", auth=("surplus", PASSWORDS["surplus"]),
                            params={"query": f"INSERT INTO cpn.scratch FORMAT {fmt}"}, content=body)
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.headers["X-ClickHouse-Summary"])["written_rows"] == "1"
    answer = httpx.post(f"http://127.0.0.1:{served.port}/", auth=("surplus", PASSWORDS["surplus"]),
                        content=b"SELECT count() FROM cpn.scratch WHERE n > 90000 FORMAT JSONCompact")
    assert json.loads(answer.text)["data"] == [[2]] or json.loads(answer.text)["data"] == [["2"]]
    writer.command("DROP TABLE cpn.scratch")


@pytest.mark.parametrize("compress", ["lz4", "gzip", False])
def test_an_insert_of_many_blocks_keeps_every_row(served: Served, compress: Any) -> None:
    """clickhouse-connect sends a large insert as several Native blocks, each compressed as a
    frame of its own: every row is stored and counted (the served store once kept the first
    block only, and the demo's ledger lost entries beyond 16,384 per batch)."""
    writer = served.client("surplus", compress=compress)
    names = ["n"] + [f"c{k}" for k in range(12)]
    columns = ", ".join(f"{c} String" for c in names[1:])
    writer.command(f"CREATE TABLE IF NOT EXISTS cpn.wide (n UInt64, {columns}) ENGINE = MergeTree ORDER BY n")
    writer.command("TRUNCATE TABLE cpn.wide")
    n = 40_000
    context = writer.create_insert_context(table="cpn.wide", column_names=names, column_oriented=True)
    context.data = [list(range(n))] + [[f"value-{k}-{i:030d}" for i in range(n)] for k in range(12)]
    assert context.block_row_count < n  # several blocks, or this proves nothing
    summary = writer.insert(context=context)
    assert summary.written_rows == n
    assert writer.query("SELECT count(), sum(n) FROM cpn.wide").result_rows == [(n, sum(range(n)))]
    writer.command("DROP TABLE cpn.wide")


def test_errors_carry_clickhouse_codes(served: Served) -> None:
    import httpx

    base = f"http://127.0.0.1:{served.port}/"
    assert httpx.get(base + "ping").text == "Ok.\n"
    wrong = httpx.post(base, auth=("analyst", "nope"), content=b"SELECT 1")
    assert wrong.status_code == 401 and wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    missing = httpx.post(base, auth=("analyst", PASSWORDS["analyst"]), content=b"SELECT * FROM cpn.nope")
    assert missing.status_code == 404 and missing.headers["X-ClickHouse-Exception-Code"] == "60"
    assert missing.text.startswith("Code: 60. DB::Exception: ") and "(UNKNOWN_TABLE)" in missing.text
    syntax = httpx.post(base, auth=("analyst", PASSWORDS["analyst"]), content=b"SELEC 1")
    assert syntax.status_code == 400 and syntax.headers["X-ClickHouse-Exception-Code"] == "62"
    typed = httpx.get(base, auth=("analyst", PASSWORDS["analyst"]),
                      params={"query": "SELECT 1 AS one", "default_format": "JSONEachRow"})
    assert typed.json() == {"one": 1} and typed.headers["X-ClickHouse-Format"] == "JSONEachRow"


WRITES = ["INSERT INTO cpn.registrations (dc_id, event_id) VALUES ('evil', 'x')",
          "ALTER TABLE cpn.ledger_entries DELETE WHERE 1", "DROP VIEW cpn.ledger",
          "CREATE TABLE cpn.evil (x UInt8) ENGINE = Memory", "SET readonly = 0",
          "SELECT * FROM file('/etc/passwd', 'LineAsString')"]


@pytest.mark.parametrize("user", ["analyst", "analyst_cn_gz"])
def test_analysts_are_refused_writes(served: Served, loader: Loader, user: str) -> None:
    loader.join(300)
    client = served.client(user)
    for statement in WRITES:
        with pytest.raises(Exception, match=r"READONLY|ACCESS_DENIED|Not enough privileges|readonly") as info:
            client.command(statement)
        assert "code: 164" in str(info.value) or "code: 497" in str(info.value), (statement, info.value)
    with pytest.raises(Exception, match="READONLY"):
        client.insert("registrations", [["evil", "x"]], column_names=["dc_id", "event_id"])
    jdbc = _jdbc(build_jdbc(), served, user, WRITES[:3])
    assert all(line[0] == "ERR" and ("164" in line[1] or "READONLY" in line[1]) for line in jdbc), jdbc
    assert served.client("surplus").query("SELECT count() FROM cpn.registrations WHERE dc_id = 'evil'"
                                          ).result_rows == [(0,)]


def test_a_provincial_analyst_sees_only_its_rows(served: Served, loader: Loader) -> None:
    loader.join(300)
    writer, gz = served.client("surplus"), served.client("analyst_cn_gz")
    everyone = {r[0] for r in writer.query("SELECT DISTINCT dc_id FROM cpn.registrations").result_rows}
    # the dashboards' fleet has no DC in Guizhou: move one there in a later registration (a DC counts for a province
    # when any of its registrations names it)
    moved = sorted(everyone)[0]
    writer.command(f"INSERT INTO cpn.registrations SELECT * REPLACE ('CN-GZ' AS province, "
                   f"concat(event_id, '-gz') AS event_id) FROM cpn.registrations WHERE dc_id = '{moved}' LIMIT 1")
    mine = set()
    for relation in ("registrations", "capacity_samples", "power_samples", "job_events", "ledger_entries",
                     "datacenters", "dc_surplus_minute", "dc_green_hourly", "ledger", "tenant_usage_daily"):
        dcs = {r[0] for r in gz.query(f"SELECT DISTINCT dc_id FROM cpn.{relation}").result_rows}
        assert dcs <= {moved}, (relation, dcs)
        mine |= dcs
    assert mine == {moved}
    national = served.client("analyst").query("SELECT sum(idle_devices) FROM cpn.national_surplus_minute").result_rows
    own = gz.query("SELECT sum(idle_devices) FROM cpn.national_surplus_minute").result_rows
    dc_only = writer.query(f"SELECT sum(idle_devices) FROM cpn.dc_surplus_minute WHERE dc_id = '{moved}'").result_rows
    assert own == dc_only and national[0][0] > own[0][0] > 0
    # every way of reading a table keeps to the policy; the withheld relations return nothing
    assert {r[0] for r in gz.query("SELECT DISTINCT dc_id FROM merge('cpn', '^capacity_samples$')").result_rows} == {moved}
    for withheld in ("deadletter", "pipeline_metrics", "schema_migrations"):
        assert gz.query(f"SELECT count() FROM cpn.{withheld}").result_rows == [(0,)], withheld
    assert writer.query("SELECT count() > 0 FROM cpn.schema_migrations").result_rows == [(1,)]
    import httpx  # past clickhouse-connect's own check: the server refuses to unmark a connection

    for how in ({"params": {"log_comment": ""}, "content": b"SELECT count() FROM cpn.registrations"},
                {"content": b"SELECT count() FROM cpn.registrations SETTINGS log_comment = ''"}):
        answer = httpx.post(f"http://127.0.0.1:{served.port}/", auth=("analyst_cn_gz", PASSWORDS["analyst_cn_gz"]),
                            **how)  # type: ignore[arg-type]
        assert answer.headers["X-ClickHouse-Exception-Code"] == "452", answer.text
    go = _go(build_go(), served, "analyst_cn_gz", [("dcs", "SELECT groupUniqArray(dc_id) FROM cpn.capacity_samples")])
    assert go[0]["rows"] == [[f"[{moved}]"]], go


def test_a_slow_analyst_query_does_not_stall_the_writes(served: Served, loader: Loader) -> None:
    """Write latency while an analyst's query runs for seconds (figures printed, order asserted)."""
    loader.join(300)
    writer = served.client("surplus")
    writer.command("CREATE TABLE IF NOT EXISTS cpn.latency (n UInt64) ENGINE = MergeTree ORDER BY n")

    def insert_ms() -> float:
        t0 = time.perf_counter()
        writer.insert("cpn.latency", [[i] for i in range(1000)], column_names=["n"])
        return (time.perf_counter() - t0) * 1000

    quiet = sorted(insert_ms() for _ in range(10))
    finished: dict[str, float] = {}

    def slow() -> None:
        analyst = served.client("analyst", send_receive_timeout=120)
        # CPU-bound for 8 s, then it stops and answers what it has (no timeout error)
        analyst.query("SELECT count() FROM numbers(10000000000) WHERE sipHash64(number) % 7 = 3 "
                      "SETTINGS max_threads = 1, max_execution_time = 8, timeout_overflow_mode = 'break'")
        finished["slow"] = time.perf_counter()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    busy = []
    while thread.is_alive() and len(busy) < 20:
        busy.append(insert_ms())
    writes_done = time.perf_counter()
    thread.join(180)
    busy.sort()
    print(f"\ninsert of 1000 rows, ms: quiet median {quiet[len(quiet) // 2]:.1f} max {quiet[-1]:.1f}; "
          f"during a slow analyst query median {busy[len(busy) // 2]:.1f} max {busy[-1]:.1f} ({len(busy)} inserts)")
    assert len(busy) >= 5 and "slow" in finished
    assert writes_done < finished["slow"]  # the writes went through while the query still ran
    assert writer.query("SELECT count() FROM cpn.latency").result_rows == [(1000 * (10 + len(busy)),)]
    writer.command("DROP TABLE cpn.latency")


def test_serving_twice_says_where_and_sigterm_loses_nothing(tmp_path: Path) -> None:
    first = serve(tmp_path / "store", log=tmp_path / "serve.log")
    try:
        second = subprocess.run([sys.executable, "-m", "surplus.cli", "store", "serve", "--url",
                                 f"chdb://{tmp_path / 'store'}", "--port", "0"], cwd=REPO, env=env(),
                                capture_output=True, text=True, timeout=60, check=False)
        lines = second.stdout.strip().splitlines()
        assert second.returncode == 0 and len(lines) == 1, second.stdout + second.stderr
        assert "served already" in lines[0] and first.url in lines[0]
        # inserts under way when SIGTERM comes are finished; every acknowledged row is there
        writer = first.client("surplus")
        writer.command("CREATE TABLE cpn.acked (n UInt64) ENGINE = MergeTree ORDER BY n")
        acked = [0]
        stop = threading.Event()

        def write() -> None:
            client = first.client("surplus")
            while not stop.is_set():
                try:
                    client.insert("cpn.acked", [[i] for i in range(500)], column_names=["n"])
                except Exception:  # the server went away: that insert was not acked
                    return
                acked[0] += 500

        thread = threading.Thread(target=write)
        thread.start()
        while acked[0] < 5000:
            time.sleep(0.05)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(90) == 0
        stop.set()
        thread.join(60)
    finally:
        first.stop()
    again = serve(tmp_path / "store", log=tmp_path / "serve2.log")
    try:
        assert again.client("surplus").query("SELECT count() FROM cpn.acked").result_rows[0][0] >= acked[0] > 0
        assert again.client("surplus").query("SELECT count() FROM cpn.acked").result_rows[0][0] % 500 == 0
    finally:
        assert again.stop() == 0
    assert not os.path.exists(tmp_path / "store.serve" / "state.json")
