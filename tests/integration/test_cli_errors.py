"""Every command's bad input and unreachable or missing service: at most 3 lines, no traceback, the
exit status of its --help, and no directory made above the path it was given (issue #16)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from surplus.cli import COMMANDS
from surplus.kafka.ports import free_port

REPO = Path(__file__).resolve().parents[2]
STORE_MISSING = "no store at"
KAFKA_DOWN = "cannot reach Kafka at 127.0.0.1:{port}: Connection refused"
SECRETS = {"SURPLUS_ALERTS_OPS_SECRET": "x", "SURPLUS_ALERTS_ENERGY_SECRET": "y"}  # of alerts.example.toml


@dataclass(frozen=True)
class Case:
    """One command line: `{tmp}` is the test's directory, `{port}` a closed port."""

    args: tuple[str, ...]
    status: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    lines: int = 1  # exactly this many lines on stdout and stderr together (the limit is 3)
    not_made: str | None = None  # a path that must not exist afterwards
    slow: bool = False  # waits for Kafka's 15 s


CASES: dict[str, Case] = {
    # agent
    "agent/bad-option": Case(("agent", "--no-such-option"), 2, "No such option: --no-such-option"),
    "agent/no-spool": Case(("agent", "status", "--spool", "{tmp}/none"), 2, "no spool at {tmp}/none"),
    "agent/spool-parent-missing": Case(
        ("agent", "--config", "agents/example.toml"), 2, "its parent directory {tmp}/missing does not exist",
        env={"SURPLUS_AGENT_SPOOL__PATH": "{tmp}/missing/spool"}, not_made="{tmp}/missing"),
    "agent/kafka-down": Case(
        ("agent", "--config", "agents/example.toml"), 2, KAFKA_DOWN,
        env={"SURPLUS_AGENT_SPOOL__PATH": "{tmp}/spool", "SURPLUS_AGENT_KAFKA__CREATE_TOPICS": "true",
             "KAFKA_BOOTSTRAP": "127.0.0.1:{port}"}, slow=True),
    "agent/tally-bad-date": Case(("agent", "tally", "--spool", "{tmp}", "--from", "yesterday", "--to", "2026-12-01"), 2,
                                 "'yesterday' is not a date"),
    # alerts
    "alerts/no-rules": Case(("alerts", "check", "--rules", "{tmp}/none.toml"), 2, "none.toml"),
    "alerts/resend-no-rules": Case(("alerts", "resend", "--url", "chdb://{tmp}/none"), 2, "no alert rules file",
                                   env={"SURPLUS_ALERT_RULES": ""}),
    "alerts/test-no-rules": Case(("alerts", "test", "--receiver", "ops"), 2, "no alert rules file",
                                 env={"SURPLUS_ALERT_RULES": ""}),
    "alerts/run-store-missing": Case(("alerts", "run", "--once", "--no-migrate", "--rules", "schemas/alerts.example.toml",
                                      "--url", "chdb://{tmp}/none"), 2, STORE_MISSING, env=SECRETS,
                                     not_made="{tmp}/none"),
    "alerts/run-parent-missing": Case(("alerts", "run", "--once", "--rules", "schemas/alerts.example.toml",
                                       "--url", "chdb://{tmp}/missing/x"), 2, "its parent directory {tmp}/missing",
                                      env=SECRETS, not_made="{tmp}/missing"),
    # api
    "api/store-missing": Case(("api", "--url", "chdb://{tmp}/none", "--port", "0"), 2, STORE_MISSING,
                              not_made="{tmp}/none"),
    # db
    "db/parent-missing": Case(("db", "migrate", "--url", "chdb://{tmp}/missing/x"), 2,
                              "cannot create the store directory {tmp}/missing/x: its parent directory "
                              "{tmp}/missing does not exist", not_made="{tmp}/missing"),
    "db/clickhouse-down": Case(("db", "migrate", "--url", "http://127.0.0.1:{port}/cpn"), 2,
                               "cannot reach ClickHouse at http://127.0.0.1:{port}: Connection refused"),
    "db/bad-url": Case(("db", "migrate", "--url", "ftp://x"), 2, "CLICKHOUSE_URL 'ftp://x'"),
    # demo
    "demo/bad-dcs": Case(("demo", "--dcs", "0", "--workdir", "{tmp}/demo"), 2, "must be positive"),
    "demo/workdir-parent-missing": Case(("demo", "--workdir", "{tmp}/missing/demo"), 2,
                                        "its parent directory {tmp}/missing does not exist",
                                        not_made="{tmp}/missing"),
    "demo/kafka-down": Case(("demo", "--workdir", "{tmp}/demo", "--backfill-days", "0"), 2, KAFKA_DOWN,
                            env={"KAFKA_BOOTSTRAP": "127.0.0.1:{port}"}, slow=True),
    # forecast
    "forecast/refresh-store-missing": Case(("forecast", "refresh", "--url", "chdb://{tmp}/none"), 2, STORE_MISSING,
                                           not_made="{tmp}/none"),
    "forecast/backtest-store-missing": Case(("forecast", "backtest", "--url", "chdb://{tmp}/none"), 2,
                                            STORE_MISSING),
    # grafana
    "grafana/down": Case(("grafana", "publish", "--url", "http://127.0.0.1:{port}", "--token", "x"), 2,
                         "cannot reach Grafana at http://127.0.0.1:{port}"),
    # kafka
    "kafka/status-not-running": Case(("kafka", "status", "--home", "{tmp}/k"), 1, "not running"),
    "kafka/home-parent-missing": Case(("kafka", "up", "--home", "{tmp}/missing/k", "--port", "{port}"), 2,
                                      "cannot create the broker's home {tmp}/missing/k", not_made="{tmp}/missing"),
    "kafka/sign-csr-no-ca": Case(("kafka", "sign-csr", "--home", "{tmp}", "--name", "dc-1", "{tmp}/csr.pem"), 2,
                                 "no test CA in"),
    # ledger
    "ledger/reconcile-store-missing": Case(("ledger", "reconcile", "--url", "chdb://{tmp}/none"), 2,
                                           STORE_MISSING, not_made="{tmp}/none"),
    "ledger/reconcile-empty-dir": Case(("ledger", "reconcile", "--url", "chdb://{tmp}/empty"), 2,
                                       f"{STORE_MISSING} {{tmp}}/empty: it is an empty directory"),
    "ledger/reconcile-no-database": Case(("ledger", "reconcile", "--url", "chdb://{tmp}/store?database=other"), 2,
                                         "ClickHouse: Database other does not exist: apply the migrations first"),
    "ledger/reconcile-clickhouse-down": Case(("ledger", "reconcile", "--url", "http://127.0.0.1:{port}/cpn"), 2,
                                             "cannot reach ClickHouse at http://127.0.0.1:{port}"),
    "ledger/statement-bad-input": Case(("ledger", "statement", "--dc", "x"), 2, "Missing option '--from'"),
    "ledger/invoice-store-missing": Case(("ledger", "invoice", "--url", "chdb://{tmp}/none", "--tenant", "t",
                                          "--month", "2026-11"), 2, STORE_MISSING),
    "ledger/verify-bad-input": Case(("ledger", "verify", "{tmp}/none.csv"), 2, "give --pubkey"),
    "ledger/pubkey-no-key": Case(("ledger", "pubkey", "--key-file", "{tmp}/none"), 2, "no statement key at"),
    # place
    "place/bad-input": Case(("place", "--devices", "0", "--origin", "CN-SH"), 2, "devices"),
    "place/store-missing": Case(("place", "--devices", "8", "--origin", "CN-SH", "--url", "chdb://{tmp}/none"), 2,
                                STORE_MISSING),
    # report
    "report/store-missing": Case(("report", "--url", "chdb://{tmp}/none"), 2, STORE_MISSING,
                                 not_made="{tmp}/none"),
    "report/clickhouse-down": Case(("report", "--url", "http://127.0.0.1:{port}/cpn"), 2,
                                   "cannot reach ClickHouse at http://127.0.0.1:{port}: Connection refused"),
    "report/bad-at": Case(("report", "--at", "yesterday", "--url", "chdb://{tmp}/none"), 2, "--at"),
    # store
    "store/parent-missing": Case(("store", "serve", "--url", "chdb://{tmp}/missing/x", "--port", "0"), 2,
                                 "cannot create the store directory {tmp}/missing/x", not_made="{tmp}/missing"),
    "store/no-migrate-missing": Case(("store", "serve", "--no-migrate", "--url", "chdb://{tmp}/none", "--port", "0"),
                                     2, STORE_MISSING, not_made="{tmp}/none"),
    # streams
    "streams/kafka-down": Case(("streams", "worker"), 2, KAFKA_DOWN,
                               env={"KAFKA_BOOTSTRAP": "127.0.0.1:{port}", "CLICKHOUSE_URL": "chdb://{tmp}/ch",
                                    "SURPLUS_DATA_DIR": "{tmp}/faust"}, not_made="{tmp}/faust", slow=True),
    "streams/bad-setting": Case(("streams", "worker"), 2, "partitions", env={"SURPLUS_PARTITIONS": "many"}),
    # the top level
    "surplus/unknown-command": Case(("frobnicate",), 2, "No such command 'frobnicate'"),
}
if "sql" in COMMANDS:  # `surplus sql` (issue 16, point 5)
    CASES["sql/store-missing"] = Case(("sql", "SELECT 1", "--url", "chdb://{tmp}/none"), 2, STORE_MISSING,
                                      not_made="{tmp}/none")


def _fill(text: str, tmp: Path, port: int) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{port}", str(port))


def test_every_command_has_a_case() -> None:
    covered = {case.args[0] for case in CASES.values()}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if c.slow else [])
                                  for n, c in CASES.items()])
def test_a_failing_command_says_one_line(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    port = free_port()  # nothing listens there
    (tmp_path / "csr.pem").write_text("not a CSR\n")
    (tmp_path / "empty").mkdir()
    if "store?database" in " ".join(case.args):
        migrated = subprocess.run([sys.executable, "-m", "surplus.cli", "db", "migrate", "--url",
                                   f"chdb://{tmp_path / 'store'}"], cwd=REPO, capture_output=True, text=True,
                                  timeout=120, check=False)
        assert migrated.returncode == 0, migrated.stderr
    env = {**os.environ, "SURPLUS_VAR_DIR": str(tmp_path / "var"),
           **{k: _fill(v, tmp_path, port) for k, v in case.env.items()}}
    if "CLICKHOUSE_URL" not in case.env:
        env.pop("CLICKHOUSE_URL", None)
    done = subprocess.run([sys.executable, "-m", "surplus.cli", *(_fill(a, tmp_path, port) for a in case.args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = (done.stdout + done.stderr).splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.status, out
    assert len(out) == case.lines <= 3, out
    assert _fill(case.says, tmp_path, port) in "\n".join(out), out
    if case.not_made is not None:
        assert not Path(_fill(case.not_made, tmp_path, port)).exists()
