"""`surplus sql` on both store kinds, for real: a chDB store with the migrations applied and the
dashboards' fleet written by the worker's Handler, opened embedded (`chdb:///path`) and served by
`surplus store serve` started here. Inputs (argument, --file, stdin, the prompt on a
pseudo-terminal), formats, the README's analyst queries, and refusals as one line with exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.test_dashboards import load_fleet
from tests.served import PASSWORDS, REPO, Served, serve, users_dir

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(600)]

COUNT = "SELECT count() FROM cpn.datacenters"


@dataclass
class Store:
    path: Path
    users: Path
    datacenters: int  # what the writer counts


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store migrated by `surplus store serve` and filled through it; closed again after."""
    work = tmp_path_factory.mktemp("sql")
    users = users_dir(work / "users.d")
    server = serve(work / "store", users, log=work / "fill.log")
    try:
        client = server.client("surplus")
        load_fleet(client, "cpn", datetime.now(UTC).replace(second=0, microsecond=0))
        datacenters = int(client.query(COUNT).result_rows[0][0])
    finally:
        assert server.stop() == 0
    assert datacenters > 0
    return Store(work / "store", users, datacenters)


@pytest.fixture(scope="module")
def served(store: Store) -> Iterator[Served]:
    """The same store, served (after the embedded tests of this module have closed it)."""
    server = serve(store.path, store.users, log=store.path.parent / "serve.log")
    yield server
    assert server.stop() == 0


def sql(*args: str, url: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "CLICKHOUSE_URL": url, **env}
    environment.pop("SURPLUS_ANALYST_PASSWORD", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "surplus.cli", "sql", *args], cwd=REPO, env=environment,
                          input=stdin if stdin is not None else "", capture_output=True, text=True,
                          timeout=120, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], code: str) -> str:
    """The refusal: exit 2, exactly one line on stderr naming ClickHouse's code, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("surplus: error: ") and f"Code {code}:" in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def readme_queries() -> str:
    """The SQL block of the README's section for analysts."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## For analysts"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    assert blocks, "the README's analyst section has no ```sql block"
    return "\n".join(blocks)


# --- embedded (chdb:///path) ------------------------------------------------------------------

def test_count_as_csv_on_the_embedded_store(store: Store) -> None:
    done = sql(COUNT, "--format", "csv", url=f"chdb://{store.path}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f'"count()"\n{store.datacenters}\n'


def test_embedded_runs_as_the_read_only_analyst(store: Store) -> None:
    url = f"chdb://{store.path}"
    done = sql("SELECT getSetting('readonly') AS ro, getSetting('max_execution_time') AS t", "--format",
               "jsonl", url=url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ro": 2, "t": 60}  # deploy/clickhouse's analyst profile
    one_line_error(sql("INSERT INTO cpn.registrations (dc_id) VALUES ('x')", url=url), "164")
    one_line_error(sql("DROP TABLE cpn.ledger_entries", url=url), "164")
    one_line_error(sql("SELECT 1 SETTINGS readonly = 0", url=url), "164")
    one_line_error(sql("SELECT * FROM file('/etc/hostname', 'LineAsString')", url=url), "497")
    one_line_error(sql("SELECT 1 SETTINGS max_execution_time = 0", url=url), "452")  # the constraint


def test_a_provincial_analyst_on_the_embedded_store_sees_its_provinces_only(store: Store) -> None:
    done = sql(COUNT, "--format", "csv", "--user", "analyst_cn_gz", "--users-dir", str(store.users),
               url=f"chdb://{store.path}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == '"count()"\n0\n'  # the fleet has no data center in Guizhou


def test_inputs_argument_file_and_stdin_agree(store: Store, tmp_path: Path) -> None:
    url = f"chdb://{store.path}"
    query = "SELECT hub, count() AS dcs FROM cpn.datacenters GROUP BY hub ORDER BY hub"
    given = sql(query, "--format", "tsv", url=url)
    path = tmp_path / "q.sql"
    path.write_text(f"-- datacenters per hub\n{query};\n", encoding="utf-8")
    from_file = sql("--file", str(path), "--format", "tsv", url=url)
    piped = sql(url=url, stdin=query)  # piped output: TSV by default
    dash = sql("--file", "-", "--format", "tsv", url=url, stdin=query)
    assert given.returncode == from_file.returncode == piped.returncode == dash.returncode == 0, given.stderr
    assert given.stdout == from_file.stdout == piped.stdout == dash.stdout
    rows = [line.split("\t") for line in given.stdout.splitlines()]
    assert rows[0] == ["hub", "dcs"]
    assert sum(int(n) for _, n in rows[1:]) == store.datacenters


def test_every_format(store: Store) -> None:
    url = f"chdb://{store.path}"
    query = ("SELECT dc_id, hub, toDecimal64(1.2345, 4) AS price FROM cpn.datacenters "
             "ORDER BY dc_id LIMIT 3")
    out = {fmt: sql(query, "--format", fmt, url=url) for fmt in ("table", "csv", "tsv", "jsonl")}
    for fmt, done in out.items():
        assert done.returncode == 0, (fmt, done.stderr)
    rows = list(csv.reader(io.StringIO(out["csv"].stdout)))
    assert rows[0] == ["dc_id", "hub", "price"] and len(rows) == 4
    assert [line.split("\t") for line in out["tsv"].stdout.splitlines()] == rows
    lines = [json.loads(line) for line in out["jsonl"].stdout.splitlines()]
    assert [[d["dc_id"], d["hub"], d["price"]] for d in lines] == rows[1:]  # money stays an exact string
    table = out["table"].stdout
    assert all(cell in table for row in rows for cell in row)
    assert "┌" in table and "│" in table


def test_several_statements_run_in_order_and_stop_at_the_first_refusal(store: Store) -> None:
    done = sql("--format", "csv", url=f"chdb://{store.path}",
               stdin="SELECT 'a;b' AS s; -- not a boundary; \nSELECT 2 AS n; SELECT nope FROMM x; SELECT 4 AS m;")
    assert done.stdout == '"s"\n"a;b"\n"n"\n2\n'
    line = one_line_error(done, "62")
    assert "statement 3 of 4" in line and "Syntax error" in line


@pytest.mark.parametrize(("query", "code"), [("SELECT nope FROMM cpn.datacenters", "62"),
                                             ("SELECT * FROM cpn.no_such_relation", "60"),
                                             ("ALTER TABLE cpn.registrations DELETE WHERE 1", "164")])
def test_refusals_on_the_embedded_store_are_one_line(store: Store, query: str, code: str) -> None:
    one_line_error(sql(query, url=f"chdb://{store.path}"), code)


def test_a_missing_embedded_store_is_one_line_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "store"
    done = sql(COUNT, url=f"chdb://{missing}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no store at" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "nowhere").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    done = sql(COUNT, url=f"chdb://{empty}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no store at" in done.stderr, done.stderr
    assert list(empty.iterdir()) == []  # a read-only command makes no store


def test_the_readme_queries_run_on_the_embedded_store(store: Store) -> None:
    done = sql("--format", "csv", url=f"chdb://{store.path}", stdin=readme_queries())
    assert done.returncode == 0, done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith('"')
               and any(h in line for h in ('"ts"', '"hub"', '"tenant_id"', '"reason"'))]
    assert len(headers) >= 4, done.stdout


def test_the_prompt_on_a_terminal(store: Store, tmp_path: Path) -> None:
    """No query on a terminal: the prompt; statements over lines, several per input, an error
    that leaves the prompt up, history kept, \\q and Ctrl-D to leave."""
    import pexpect

    history = tmp_path / "history"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SURPLUS_SQL_HISTORY": str(history), "TERM": "dumb",
           "CLICKHOUSE_URL": f"chdb://{store.path}"}
    child = pexpect.spawn(sys.executable, ["-m", "surplus.cli", "sql"], cwd=str(REPO), env=env,
                          timeout=60, encoding="utf-8", dimensions=(40, 160))
    try:
        child.expect("sql> ")
        child.send("SELECT count() AS n\r")  # no `;` yet: the statement goes on
        child.send("FROM cpn.datacenters;\r")
        child.expect(rf"│ +{store.datacenters} +│")
        child.expect("sql> ")
        child.send("SELECT 41 + 1 AS answer; SELECT nope FROMM x; SELECT 7 AS never;\r")
        child.expect("42")
        child.expect("error: Code 62: Syntax error")
        child.expect("sql> ")
        assert "never" not in child.before.replace("SELECT 7 AS never", "")
        child.send("\\q\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    kept = history.read_text(encoding="utf-8")
    assert "FROM cpn.datacenters;" in kept and "SELECT 41 + 1 AS answer" in kept
    again = pexpect.spawn(sys.executable, ["-m", "surplus.cli", "sql"], cwd=str(REPO), env=env,
                          timeout=60, encoding="utf-8")
    try:
        again.expect("sql> ")
        for _ in range(10):  # a Ctrl-D typed before the prompt takes the terminal is the tty's own
            again.sendcontrol("d")
            if again.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=3) == 0:
                break
        else:
            raise AssertionError(f"Ctrl-D did not leave the prompt: {again.before!r}")
    finally:
        again.close()
    assert again.exitstatus == 0


# --- served (surplus store serve) ---------------------------------------------------------------

def test_count_as_csv_on_the_served_store(store: Store, served: Served) -> None:
    # the URL store serve prints is the writer's: sql signs in as `analyst` instead
    done = sql(COUNT, "--format", "csv", url=served.url, SURPLUS_ANALYST_PASSWORD=PASSWORDS["analyst"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f'"count()"\n{store.datacenters}\n'
    analyst_url = f"http://analyst:{PASSWORDS['analyst']}@127.0.0.1:{served.port}/cpn"
    assert sql(COUNT, "--format", "csv", url=analyst_url).stdout == done.stdout


def test_served_runs_as_the_read_only_analyst(served: Served) -> None:
    env = {"SURPLUS_ANALYST_PASSWORD": PASSWORDS["analyst"]}
    done = sql("SELECT getSetting('readonly') AS ro", "--format", "jsonl", url=served.url, **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ro": 2}
    one_line_error(sql("DROP TABLE cpn.ledger_entries", url=served.url, **env), "164")
    one_line_error(sql("SELECT * FROM cpn.no_such_relation", url=served.url, **env), "60")
    one_line_error(sql("SELECT nope FROMM cpn.datacenters", url=served.url, **env), "62")
    wrong = sql("SELECT 1", url=served.url, SURPLUS_ANALYST_PASSWORD="wrong")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "516" in wrong.stderr, wrong.stderr
    unset = sql("SELECT 1", url=served.url)
    assert unset.returncode == 2 and "SURPLUS_ANALYST_PASSWORD" in unset.stderr, unset.stderr
    writer = sql("SELECT 1", "--user", "surplus", url=served.url)
    assert writer.returncode == 2 and "writer" in writer.stderr, writer.stderr


def test_a_provincial_analyst_on_the_served_store(served: Served) -> None:
    url = f"http://analyst_cn_gz:{PASSWORDS['analyst_cn_gz']}@127.0.0.1:{served.port}/cpn"
    done = sql(COUNT, "--format", "csv", url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '"count()"\n0\n'


def test_the_readme_queries_run_on_the_served_store(served: Served) -> None:
    done = sql("--format", "jsonl", url=served.url, stdin=readme_queries(),
               SURPLUS_ANALYST_PASSWORD=PASSWORDS["analyst"])
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"hub", "green_share", "pue"} <= set().union(*(r.keys() for r in rows)), rows[:5]


def test_the_embedded_url_of_a_served_store_says_where_it_is_served(store: Store, served: Served) -> None:
    done = sql(COUNT, url=f"chdb://{store.path}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"127.0.0.1:{served.port}/cpn" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_server_is_one_line() -> None:
    from tests.served import free_port

    done = sql(COUNT, url=f"http://analyst:x@127.0.0.1:{free_port()}/cpn")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot reach ClickHouse" in done.stderr and "connection refused" in done.stderr
