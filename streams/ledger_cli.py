"""`surplus ledger reconcile`: each job's entries against its raw totals; exit 1 on a difference. Wiring."""

from __future__ import annotations

import os
import sys

import click

from surplus.paths import default_clickhouse_url


@click.group()
def ledger() -> None:
    """The accounting ledger (cpn.ledger, cpn.tenant_usage_daily)."""


@ledger.command("reconcile")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None,
              help="chdb:///path or http(s)://user:pass@host:8123/cpn [env CLICKHOUSE_URL]")
@click.option("--limit", default=50, show_default=True, help="differences to print at most")
def reconcile_cmd(url: str | None, limit: int) -> None:
    """For every job, compare the sum of its ledger entries with its highest-seq totals in the raw
    job events. Prints each difference (there should be none); exit code 1 if there is any."""
    from rich.console import Console
    from rich.table import Table

    from streams.reconcile import reconcile
    from surplus.store import connect

    client, target = connect(url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url())
    jobs, diffs = reconcile(client, target.database)
    console = Console()
    if not diffs:
        console.print(f"ledger reconciles: 0 differences across {jobs} jobs")
        return
    table = Table(title=f"{len(diffs)} differences across {jobs} jobs")
    for column in ("dc_id", "job_id", "difference"):
        table.add_column(column)
    for d in diffs[:limit]:
        table.add_row(d.dc_id, d.job_id, d.what)
    console.print(table)
    sys.exit(1)
