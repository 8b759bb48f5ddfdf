"""`surplus db`: apply the ClickHouse migrations, render them for a cluster, settle roll-ups (wiring only)."""

from __future__ import annotations

import os

import click

from surplus.errors import UserError
from surplus.migrations import bookkeeping, raw_retention_days, rendered, renderer
from surplus.paths import default_clickhouse_url
from surplus.store import connect, migrate, parse_url, redact

_URL_HELP = ("chdb:///path or http(s)://user:pass@host:8123/cpn  [env CLICKHOUSE_URL; "
             "default: chDB under var/chdb]")


@click.group()
def db() -> None:
    """The ClickHouse store (chDB on disk by default, or a server)."""


@db.command("migrate")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=_URL_HELP)
@click.option("--cluster", default=None, metavar="NAME",
              help="a ClickHouse cluster of the server's remote_servers: ON CLUSTER, Replicated*MergeTree "
              "tables and Distributed tables over the shards (on chDB: print the statements)")
@click.option("--print", "print_only", is_flag=True,
              help="print the rendered statements (semicolon-terminated) instead of applying them")
@click.option("--retention-days", type=int, default=None,
              help="days raw samples are kept  [env SURPLUS_RAW_RETENTION_DAYS; default 35]")
def migrate_cmd(url: str | None, cluster: str | None, print_only: bool, retention_days: int | None) -> None:
    """Apply the numbered migrations not yet applied; a second run changes nothing."""
    from surplus.cluster import ClusterRenderError

    url = url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url()
    days = raw_retention_days(retention_days)
    target = parse_url(url)
    if cluster is not None and target.embedded and not print_only:
        click.echo("an embedded chDB store is not a cluster: printing the cluster's statements", err=True)
        print_only = True
    try:
        render = renderer(retention_days=days, cluster=cluster)
        if print_only:
            click.echo("-- the record of applied migrations")
            for statement in bookkeeping(target.database, cluster):
                click.echo(f"{statement};\n")
            for label, stmts in rendered(target.database, render):
                click.echo(f"-- {label}")
                for statement in stmts:
                    click.echo(f"{statement};\n")
            return
        client, target = connect(url)
        names = migrate(client, target.database, retention_days=days, cluster=cluster)
    except ClusterRenderError as exc:
        raise UserError(str(exc)) from None
    where = f"{redact(target.dsn)} database {target.database}" + (f" on cluster {cluster}" if cluster else "")
    if names:
        for name in names:
            click.echo(f"applied {name}")
        click.echo(f"{len(names)} migration(s) applied to {where}")
    else:
        click.echo(f"up to date: no migration to apply to {where}")


@db.command("rollup")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=_URL_HELP)
def rollup_cmd(url: str | None) -> None:
    """Settle the surplus roll-ups of every hour touched since the last run (the worker does
    this on a timer; idempotent). The relations are exact either way; settled hours are cheaper."""
    from surplus.rollup import rollup

    url = url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url()
    client, target = connect(url)
    done = rollup(client, target.database)
    if done.hours:
        click.echo(f"settled {done.hours} hour(s), {done.first} .. {done.last} UTC")
    else:
        click.echo("nothing to settle")
