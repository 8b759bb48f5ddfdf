"""The migrations rendered for a ClickHouse cluster: ON CLUSTER, Replicated*MergeTree, Distributed. Pure.

Each table `<db>.<t>` becomes a replicated local table `<db>.<t>_local` on every shard (ZooKeeper
or ClickHouse Keeper path `/clickhouse/tables/{shard}/<db>/<t>_local`, replica `{replica}`, the
server's macros) and a `Distributed` table under the original name over those, sharded by DC
(`cityHash64(dc_id)`) where the table has one, else by its sorting key, so that rows which
replace or merge with each other land on one shard. Materialized views fire on the local tables;
plain views (the SPEC §5 relations) read the Distributed tables: the relations and their columns
are the same as on one server.
"""

from __future__ import annotations

import re

_CREATE_DB = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$", re.S)
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*(\(.*?\n\))\s*ENGINE = (\w*MergeTree)(\((.*?)\))?\s*(.*)$", re.S
)
_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS\s(.*)$", re.S)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+)\.(\w+) AS\s(.*)$", re.S)
_REPLACE_VIEW = re.compile(r"^CREATE OR REPLACE VIEW (\w+)\.(\w+) AS\s(.*)$", re.S)
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (\w+)\.(\w+)$", re.S)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+)\s+(.*)$", re.S)
_ORDER_BY = re.compile(r"ORDER BY\s+(\(([^()]*)\)|[\w]+)")


class ClusterRenderError(ValueError):
    """A migration statement the cluster rendering does not know how to carry over."""


def tables(statements: list[str]) -> set[str]:
    """The names of the tables the statements create (unqualified)."""
    return {m.group(2) for s in statements if (m := _CREATE_TABLE.match(_code(s)))}


def _code(statement: str) -> str:
    """The statement without its comment lines (a file's header comment precedes its first one)."""
    return "\n".join(ln for ln in statement.splitlines() if not ln.lstrip().startswith("--")).strip()


def _sharding_key(columns: str, rest: str) -> str:
    if re.search(r"^\s*dc_id\s", columns, re.M):
        return "cityHash64(dc_id)"
    order = _ORDER_BY.search(rest)
    if order is None:
        return "rand()"
    key = order.group(2) if order.group(2) is not None else order.group(1)
    return f"cityHash64({key.strip()})"


def render_statement(statement: str, cluster: str, known_tables: set[str]) -> list[str]:
    """One single-server statement -> its cluster statements (in order)."""
    on = f"ON CLUSTER {cluster}"
    s = _code(statement)
    if m := _CREATE_DB.match(s):
        return [f"CREATE DATABASE IF NOT EXISTS {m.group(1)} {on}"]
    if m := _CREATE_TABLE.match(s):
        db, name, columns, engine, _, args, rest = m.groups()
        local = f"{name}_local"
        path = f"'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'"
        engine_args = f"{path}, {args}" if args else path
        return [
            f"CREATE TABLE IF NOT EXISTS {db}.{local} {on}\n{columns}\n"
            f"ENGINE = Replicated{engine}({engine_args})\n{rest}".rstrip(),
            f"CREATE TABLE IF NOT EXISTS {db}.{name} {on} AS {db}.{local}\n"
            f"ENGINE = Distributed({cluster}, {db}, {local}, {_sharding_key(columns, rest)})",
        ]
    if m := _CREATE_MV.match(s):
        db, name, tdb, target, body = m.groups()
        for table in known_tables:  # an MV fires on inserts into the local table of its source
            body = re.sub(rf"\b{db}\.{table}\b", f"{db}.{table}_local", body)
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} {on} TO {tdb}.{target}_local AS\n{body}"]
    if m := _CREATE_VIEW.match(s):
        db, name, body = m.groups()
        return [f"CREATE VIEW IF NOT EXISTS {db}.{name} {on} AS\n{body}"]
    if m := _REPLACE_VIEW.match(s):
        db, name, body = m.groups()
        return [f"CREATE OR REPLACE VIEW {db}.{name} {on} AS\n{body}"]
    if m := _DROP_VIEW.match(s):
        return [f"DROP VIEW IF EXISTS {m.group(1)}.{m.group(2)} {on}"]
    if m := _ALTER.match(s):
        db, name, action = m.groups()
        on_local = [f"ALTER TABLE {db}.{name}_local {on}\n    {action}"]
        if action.lstrip().startswith("MODIFY TTL"):
            return on_local  # TTLs belong to the stored (local) tables only
        return [*on_local, f"ALTER TABLE {db}.{name} {on}\n    {action}"]
    if s.startswith("INSERT INTO"):
        return [s]  # a back-fill: through the Distributed tables, once for the whole cluster
    raise ClusterRenderError(f"no cluster rendering for: {s.splitlines()[0][:120]}")


def check_name(cluster: str) -> None:
    """ClusterRenderError unless `cluster` is a plain identifier."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", cluster):
        raise ClusterRenderError(f"cluster name {cluster!r} is not a plain identifier")


def render(statements: list[str], cluster: str) -> list[str]:
    """Every statement of the migrations (rendered for one server) -> the cluster's statements."""
    check_name(cluster)
    known = tables(statements)
    out: list[str] = []
    for statement in statements:
        out.extend(render_statement(statement, cluster, known))
    return out


def migrations_table(database: str, cluster: str) -> list[str]:
    """The cluster's record of applied migrations (replicated, one copy per shard, read via Distributed)."""
    return render([
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations\n"
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')\n)\n"
        "ENGINE = ReplacingMergeTree ORDER BY version",
    ], cluster)
