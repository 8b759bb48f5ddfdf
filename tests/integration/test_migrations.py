"""Migrations you can trust: SQL-aware splitting, checksums of applied files, resumable failures."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from surplus.migrations import Migration, MigrationError, load, migrate, split

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def database(clickhouse_client: Any) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(Exception):
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {name}")


def _write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


def test_split_survives_semicolons_in_strings_and_comments() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE {db}.t (s String DEFAULT 'a;b') ENGINE = Memory;\n"
        "/* block; comment */\n"
        "INSERT INTO {db}.t VALUES ('x;y'), ('it''s; fine');\n"
        "-- trailing comment only;\n"
    )
    statements = split(sql)
    assert len(statements) == 2
    assert statements[0].endswith("ENGINE = Memory")
    assert "'a;b'" in statements[0]
    assert "INSERT INTO" in statements[1] and "'it''s; fine'" in statements[1]


def test_shipped_migrations_split_as_before() -> None:
    """Every shipped file splits into the statements the old line-based splitter found."""
    for migration in load():
        body = "\n".join(ln for ln in migration.sql.splitlines() if not ln.strip().startswith("--"))
        old = [" ".join(s.split()) for s in body.split(";") if s.strip()]
        new = [" ".join(ln for ln in s.splitlines() if not ln.strip().startswith("--")).split()
               for s in migration.statements]
        assert [" ".join(words) for words in new] == old, migration.label


def test_a_changed_applied_migration_is_refused_naming_it(
    clickhouse_client: Any, database: str, tmp_path: Path
) -> None:
    d = tmp_path / "sql"
    _write(d, "001_database.sql", "CREATE DATABASE IF NOT EXISTS {db};")
    path = _write(d, "002_things.sql", "CREATE TABLE IF NOT EXISTS {db}.things (n UInt8) ENGINE = Memory;")
    assert migrate(clickhouse_client, database, directory=d) == ["001_database", "002_things"]
    assert migrate(clickhouse_client, database, directory=d) == []
    path.write_text(path.read_text() + "\n-- an innocent-looking edit\n", encoding="utf-8")
    with pytest.raises(MigrationError) as err:
        migrate(clickhouse_client, database, directory=d)
    message = str(err.value)
    assert "002_things" in message and "changed after it was applied" in message
    assert "\n" not in message


class FailsOnce:
    """A client whose n-th command fails once (a dropped connection half-way through a file)."""

    def __init__(self, client: Any, fail_on: str) -> None:
        self.client = client
        self.fail_on = fail_on
        self.failed = False

    def command(self, sql: str) -> Any:
        if not self.failed and self.fail_on in sql:
            self.failed = True
            raise ConnectionError("connection reset by peer")
        return self.client.command(sql)

    def query(self, sql: str) -> Any:
        return self.client.query(sql)


def test_a_migration_failing_half_way_is_resumed_to_completion(
    clickhouse_client: Any, database: str, tmp_path: Path
) -> None:
    d = tmp_path / "sql"
    _write(d, "001_database.sql", "CREATE DATABASE IF NOT EXISTS {db};")
    # not idempotent on purpose: repeating the INSERT would show as a second row
    _write(d, "002_three.sql", (
        "CREATE TABLE {db}.log (step String) ENGINE = MergeTree ORDER BY step;\n"
        "INSERT INTO {db}.log VALUES ('first; of three');\n"
        "INSERT INTO {db}.log VALUES ('second');\n"
        "INSERT INTO {db}.log VALUES ('third');\n"
    ))
    flaky = FailsOnce(clickhouse_client, "'second'")
    with pytest.raises(MigrationError) as err:
        migrate(flaky, database, directory=d)
    assert "002_three statement 3 of 4 failed" in str(err.value)
    recorded = clickhouse_client.query(f"SELECT version FROM {database}.schema_migrations").result_rows
    assert [r[0] for r in recorded] == [1], "a half-applied file must not be recorded as applied"
    assert migrate(clickhouse_client, database, directory=d) == ["002_three"]
    rows = clickhouse_client.query(f"SELECT step FROM {database}.log ORDER BY step").result_rows
    assert [r[0] for r in rows] == ["first; of three", "second", "third"]
    assert migrate(clickhouse_client, database, directory=d) == []


def test_a_ran_statement_changed_before_the_resume_is_refused(
    clickhouse_client: Any, database: str, tmp_path: Path
) -> None:
    d = tmp_path / "sql"
    _write(d, "001_database.sql", "CREATE DATABASE IF NOT EXISTS {db};")
    path = _write(d, "002_two.sql", (
        "CREATE TABLE {db}.a (n UInt8) ENGINE = Memory;\n"
        "CREATE TABLE {db}.b (n UInt8) ENGINE = Memory;\n"
    ))
    with pytest.raises(MigrationError):
        migrate(FailsOnce(clickhouse_client, ".b ("), database, directory=d)
    # fixing a statement that has not run yet is allowed ...
    path.write_text(path.read_text().replace(".b (n UInt8)", ".b (n UInt16)"), encoding="utf-8")
    # ... changing one that did run is not
    path.write_text(path.read_text().replace(".a (n UInt8)", ".a (n UInt32)"), encoding="utf-8")
    with pytest.raises(MigrationError) as err:
        migrate(clickhouse_client, database, directory=d)
    assert "002_two" in str(err.value) and "statement 1" in str(err.value)
    path.write_text(path.read_text().replace(".a (n UInt32)", ".a (n UInt8)"), encoding="utf-8")
    assert migrate(clickhouse_client, database, directory=d) == ["002_two"]


def test_a_database_migrated_before_checksums_adopts_them(clickhouse_client: Any, database: str) -> None:
    clickhouse_client.command(f"CREATE DATABASE {database}")
    clickhouse_client.command(
        f"CREATE TABLE {database}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version")
    clickhouse_client.command(
        f"INSERT INTO {database}.schema_migrations VALUES (1, 'database', now64(3))")
    first = load()[0]
    assert isinstance(first, Migration) and first.version == 1
    applied = migrate(clickhouse_client, database)
    assert "001_database" not in applied and applied
    rows = clickhouse_client.query(
        f"SELECT argMax(checksum, applied_at) FROM {database}.schema_migrations WHERE version = 1"
    ).result_rows
    assert rows[0][0] == first.checksum
