"""`surplus db`: apply the ClickHouse migrations to CLICKHOUSE_URL (wiring only)."""

from __future__ import annotations

import os

import click

from surplus.paths import default_clickhouse_url
from surplus.store import connect, migrate, redact


@click.group()
def db() -> None:
    """The ClickHouse store (chDB on disk by default, or a server)."""


@db.command("migrate")
@click.option(
    "--url",
    envvar="CLICKHOUSE_URL",
    default=None,
    help="chdb:///path or http(s)://user:pass@host:8123/cpn  [env CLICKHOUSE_URL; "
    "default: chDB under var/chdb]",
)
def migrate_cmd(url: str | None) -> None:
    """Apply the numbered migrations not yet applied; a second run changes nothing."""
    url = url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url()
    client, target = connect(url)
    names = migrate(client, target.database)
    if names:
        for name in names:
            click.echo(f"applied {name}")
        click.echo(f"{len(names)} migration(s) applied to {redact(target.dsn)} database {target.database}")
    else:
        click.echo(f"up to date: no migration to apply to {redact(target.dsn)} database {target.database}")
