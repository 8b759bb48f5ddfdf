"""Numbered ClickHouse migrations, checksummed and resumable statement by statement. I/O (DDL).

The files are `schemas/clickhouse/NNN_<what>.sql`, applied in order. Each one goes through three
steps, each in one place:

1. **split** (`split`): sqlparse cuts the file into statements, so a `;` inside a string literal
   or a comment does not end a statement; comment-only pieces are dropped.
2. **render** (`render`): a statement's placeholders are filled in (`{db}`, the database, and
   `{raw_retention_days}`, SURPLUS_RAW_RETENTION_DAYS), and for `--cluster` the statement is
   carried over to a cluster (surplus.cluster: one statement may become several); this is the
   one place a statement is rewritten before it is sent. Checksums are of the files as written.
3. **apply** (`migrate`): every statement that succeeds is recorded in
   `<db>.schema_migration_steps` (version, step, the statement's checksum) before the next one
   runs, and the file is recorded in `<db>.schema_migrations` (version, name, the file's
   SHA-256) only when all of its statements are done. A failure half-way leaves the finished
   statements recorded and the file not: running again completes the rest and never repeats
   what was done.

A file changed after it was applied (its SHA-256 differs from the recorded one), or a statement
changed after it ran, is refused with a `MigrationError` naming the file: add a new migration
instead. Databases migrated before checksums existed get theirs recorded on the next run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from surplus.errors import UserError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "clickhouse"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# (statement as written, database) -> the statement(s) to send
Render = Callable[[str, str], "str | list[str]"]
RAW_RETENTION_ENV = "SURPLUS_RAW_RETENTION_DAYS"
RAW_RETENTION_DEFAULT = 35
# SPEC §5 keeps minute relations 400 days; the environment may lengthen it (the test fixtures,
# dated in the past, would otherwise lose their minutes as ClickHouse writes them).
MINUTE_RETENTION_ENV = "SURPLUS_MINUTE_RETENTION_DAYS"
MINUTE_RETENTION_DEFAULT = 400
# DateTime ends in 2106: a time plus more days than this wraps round to the past (an immediate TTL)
RETENTION_MAX_DAYS = 20000


class MigrationError(UserError):
    """A migration file cannot be applied: changed after it ran, misnamed, or a statement failed."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split(sql: str) -> list[str]:
    """The statements of a migration file, in order, without their trailing `;`.

    SQL-aware (sqlparse): `;` inside '…' strings, "…"/`…` identifiers and `--`/`/* */` comments
    does not split. Pieces that hold only comments or whitespace are dropped."""
    import sqlparse

    out: list[str] = []
    for piece in sqlparse.split(sql):
        if not sqlparse.format(piece, strip_comments=True).strip().rstrip(";").strip():
            continue
        out.append(piece.strip().removesuffix(";").rstrip())
    return out


def raw_retention_days(value: str | int | None = None) -> int:
    """SURPLUS_RAW_RETENTION_DAYS (default 35): whole days, 1..RETENTION_MAX_DAYS (20000); UserError otherwise."""
    import os

    text = str(value if value is not None else os.environ.get(RAW_RETENTION_ENV, RAW_RETENTION_DEFAULT))
    if not text.strip().isdigit() or not 1 <= int(text) <= RETENTION_MAX_DAYS:
        raise UserError(f"{RAW_RETENTION_ENV}={text!r}: give a whole number of days, 1 to {RETENTION_MAX_DAYS}")
    return int(text)


def minute_retention_days() -> int:
    """SURPLUS_MINUTE_RETENTION_DAYS (default 400, SPEC §5), 400..RETENTION_MAX_DAYS; UserError otherwise."""
    import os

    text = os.environ.get(MINUTE_RETENTION_ENV, str(MINUTE_RETENTION_DEFAULT))
    if not text.strip().isdigit() or not MINUTE_RETENTION_DEFAULT <= int(text) <= RETENTION_MAX_DAYS:
        raise UserError(f"{MINUTE_RETENTION_ENV}={text!r}: give a whole number of days, 400 to {RETENTION_MAX_DAYS}")
    return int(text)


def render(statement: str, database: str, *, retention_days: int = RAW_RETENTION_DEFAULT,
           minute_days: int = MINUTE_RETENTION_DEFAULT) -> str:
    """Fill a statement's placeholders: `{db}` -> the database name (a plain identifier),
    `{raw_retention_days}` / `{minute_retention_days}` -> the raw / minute retention in days."""
    return (statement.replace("{db}", database).replace("{raw_retention_days}", str(int(retention_days)))
            .replace("{minute_retention_days}", str(int(minute_days))))


def renderer(*, retention_days: int | None = None, cluster: str | None = None,
             directory: Path = MIGRATIONS_DIR) -> Render:
    """The Render for a retention (default: the setting) and, optionally, a cluster."""
    days = raw_retention_days(retention_days)
    minutes = minute_retention_days()
    if cluster is None:
        return lambda statement, database: render(statement, database, retention_days=days, minute_days=minutes)
    from surplus.cluster import check_name, render_statement, tables

    check_name(cluster)
    known: dict[str, set[str]] = {}

    def to_cluster(statement: str, database: str) -> list[str]:
        if database not in known:  # every table any migration creates, to route MVs to local tables
            known[database] = tables([render(s, database, retention_days=days, minute_days=minutes)
                                      for m in load(directory) for s in m.statements])
        return render_statement(render(statement, database, retention_days=days, minute_days=minutes),
                                cluster, known[database])

    return to_cluster


def rendered(database: str, render: Render, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, list[str]]]:
    """(label, statements to send) of every migration file, as `migrate` would send them."""
    out = []
    for migration in load(directory):
        sent: list[str] = []
        for statement in migration.statements:
            result = render(statement, database)
            sent.extend([result] if isinstance(result, str) else result)
        out.append((migration.label, sent))
    return out


@dataclass(frozen=True)
class Migration:
    """One file: its number, name (`what` of NNN_what.sql) and text."""

    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        """`003_datacenters`: how messages name the file."""
        return f"{self.version:03d}_{self.name}"

    @cached_property
    def checksum(self) -> str:
        """SHA-256 (hex) of the file's text."""
        return sha256(self.sql)

    @cached_property
    def statements(self) -> list[str]:
        return split(self.sql)


def load(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in `directory`, in order; MigrationError on a bad name or a reused number."""
    found: list[Migration] = []
    for path in sorted(Path(directory).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNN_what.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    numbers = [m.version for m in found]
    if len(set(numbers)) != len(numbers):
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        raise MigrationError(f"two migration files share the number {dup[0]:03d}")
    return found


def bookkeeping(database: str, cluster: str | None = None) -> list[str]:
    """The statements that make the record of applied migrations (for one server or a cluster)."""
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')\n) "
        "ENGINE = ReplacingMergeTree ORDER BY version",
        # tables made before checksums existed get the column; '' marks "not recorded yet"
        f"ALTER TABLE {database}.schema_migrations ADD COLUMN IF NOT EXISTS checksum String DEFAULT ''",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migration_steps "
        "(version UInt32, step UInt32, checksum String, applied_at DateTime64(3, 'UTC')\n) "
        "ENGINE = ReplacingMergeTree ORDER BY (version, step)",
    ]
    if cluster is None:
        return statements
    from surplus.cluster import render

    return render(statements, cluster)


def _bookkeeping(client: Client, database: str, cluster: str | None = None) -> None:
    for statement in bookkeeping(database, cluster):
        client.command(statement)


def applied(client: Client, database: str, cluster: str | None = None) -> dict[int, str]:
    """version -> recorded file checksum ('' if recorded before checksums) of applied migrations."""
    _bookkeeping(client, database, cluster)
    rows = client.query(
        f"SELECT version, argMax(checksum, applied_at) FROM {database}.schema_migrations GROUP BY version"
    ).result_rows
    return {int(v): str(c) for v, c in rows}


def _steps(client: Client, database: str) -> dict[int, dict[int, str]]:
    rows = client.query(
        f"SELECT version, step, argMax(checksum, applied_at) FROM {database}.schema_migration_steps "
        "GROUP BY version, step"
    ).result_rows
    out: dict[int, dict[int, str]] = {}
    for version, step, checksum in rows:
        out.setdefault(int(version), {})[int(step)] = str(checksum)
    return out


def _record(client: Client, database: str, migration: Migration) -> None:
    client.command(
        f"INSERT INTO {database}.schema_migrations (version, name, checksum, applied_at) "
        f"VALUES ({migration.version}, '{migration.name}', '{migration.checksum}', now64(3))"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def migrate(
    client: Client, database: str, *, directory: Path = MIGRATIONS_DIR, render: Render | None = None,
    retention_days: int | None = None, cluster: str | None = None,
) -> list[str]:
    """Apply what is not applied yet, in order; return the labels applied (empty: up to date).

    `retention_days`: the raw retention rendered into the TTLs (default: SURPLUS_RAW_RETENTION_DAYS);
    `cluster`: ON CLUSTER, replicated local tables and Distributed tables (surplus.cluster).
    Raises MigrationError (one line, naming the file) when an applied file or statement changed,
    or when a statement fails; the statements before it stay recorded, so a second run resumes."""
    if render is None:
        render = renderer(retention_days=retention_days, cluster=cluster, directory=directory)
    migrations = load(directory)
    done = applied(client, database, cluster)
    steps = _steps(client, database)
    labels: list[str] = []
    for migration in migrations:
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded == "":
                _record(client, database, migration)  # applied before checksums: adopt this file
            elif recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.label} was changed after it was applied (recorded sha256 "
                    f"{recorded[:12]}, file {migration.checksum[:12]}): restore it and add a new migration"
                )
            continue
        ran = steps.get(migration.version, {})
        statements = migration.statements
        for step, checksum in sorted(ran.items()):
            if step >= len(statements) or sha256(statements[step]) != checksum:
                raise MigrationError(
                    f"migration {migration.label} was changed after its statement {step + 1} ran: "
                    "restore that statement (only statements not yet run may change)"
                )
        for step, statement in enumerate(statements):
            if step in ran:
                continue
            try:
                sent = render(statement, database)
                for part in [sent] if isinstance(sent, str) else sent:
                    client.command(part)
            except Exception as exc:
                raise MigrationError(
                    f"migration {migration.label} statement {step + 1} of {len(statements)} failed: "
                    f"{_first_line(exc)} (the {step} before it are recorded; run again to resume)"
                ) from None
            client.command(
                f"INSERT INTO {database}.schema_migration_steps (version, step, checksum, applied_at) "
                f"VALUES ({migration.version}, {step}, '{sha256(statement)}', now64(3))"
            )
        _record(client, database, migration)
        labels.append(migration.label)
    return labels
