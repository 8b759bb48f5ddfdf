"""`surplus ledger`: reconcile, close, statement, verify, invoice, pubkey (SPEC §4.1, §7). Wiring."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from surplus.errors import EXIT_FOUND, UserError
from surplus.paths import default_clickhouse_url, var_dir

URL_HELP = "chdb:///path or http(s)://user:pass@host:8123/cpn [env CLICKHOUSE_URL]"
KEY_HELP = "the statement key file [env SURPLUS_STATEMENT_KEY; default var/keys/statement-key.toml]"


def _connect(url: str | None) -> tuple[Any, str]:
    from surplus.store import connect

    client, target = connect(url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url(), create=False)
    return client, target.database


def _store_error(exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"cannot read the ledger ({first[:200]}); run `surplus db migrate`?")


def _moment(text: str, *, end: bool) -> datetime:
    """A UTC date (a whole day; as --to, through its end) or an RFC 3339 time with a zone."""
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time") from None
    if t.tzinfo is None:
        raise UserError(f"{text!r} has no zone: add Z or +08:00")
    return t.astimezone(UTC)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


@click.group()
def ledger() -> None:
    """The accounting ledger: reconciliation, signed hourly statements, invoices (SPEC §4, §4.1)."""


@ledger.command("reconcile")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
@click.option("--limit", default=50, show_default=True, help="differences to print at most")
def reconcile_cmd(url: str | None, limit: int) -> None:
    """For every job, compare the sum of its ledger entries with its highest-seq totals in the raw
    job events. Prints each difference (there should be none); exit code 1 if there is any."""
    from rich.console import Console
    from rich.table import Table

    from streams.reconcile import reconcile

    client, database = _connect(url)
    jobs, diffs = reconcile(client, database)
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
    sys.exit(EXIT_FOUND)


@ledger.command("close")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
@click.option("--grace-s", type=click.FloatRange(min=0), default=None,
              help="seconds after an hour's end before it closes [env SURPLUS_STATEMENT_GRACE_S; 7200]")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), help=KEY_HELP)
@click.option("--rules", "rules_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SURPLUS_ALERT_RULES", help="alert rules with ledger_restated [env SURPLUS_ALERT_RULES]")
@click.option("--bootstrap", envvar="KAFKA_BOOTSTRAP", default="127.0.0.1:9092", show_default=True,
              help="Kafka for cpn.restatement.v1 events [env KAFKA_BOOTSTRAP]")
@click.option("--topic-prefix", envvar="SURPLUS_TOPIC_PREFIX", default="cpn.", show_default=True,
              help="[env SURPLUS_TOPIC_PREFIX]")
@click.option("--full", is_flag=True, help="look at every hour, not only what changed since the last run")
def close_cmd(url: str | None, grace_s: float | None, key_file: Path | None, rules_path: Path | None,
              bootstrap: str, topic_prefix: str, full: bool) -> None:
    """Close every hour past its grace into a signed statement (version 1, reason close) and
    restate every closed hour whose entries changed (next version, reason restatement, a
    cpn.restatement.v1 event on <prefix>restatements and the ledger_restated alert).

    Idempotent: a second run with nothing new issues nothing. Run it on a schedule by one
    process, however many workers run; a lock file keeps a second closer on this host out."""
    from streams import closing
    from streams.alerts.config import load_rules
    from streams.statement_key import load_statement_key
    from streams.statement_store import StatementStore

    key = load_statement_key(key_file)
    grace = grace_s if grace_s is not None else closing.grace_from_env()
    rules = load_rules(rules_path) if rules_path is not None else None
    client, database = _connect(url)
    store = StatementStore(client, database)

    def publish(restated: Any) -> int:
        from streams.restatements import publish as send

        return send(bootstrap, topic_prefix, restated)

    def notify(restated: Any) -> int:
        from streams.alerts.restated import deliver, notifications

        if rules is None:
            return 0
        return deliver(rules, notifications(rules, restated, datetime.now(UTC)), client, database)

    with closing.lock(var_dir() / "ledger-close.lock"):
        try:
            result = closing.close(store, key, datetime.now(UTC), grace, full=full,
                                   publish=publish, notify=notify)
        except UserError:
            raise
        except Exception as exc:
            raise _store_error(exc) from None
    closed = len(result.issued) - len(result.restated)
    click.echo(f"looked at {result.looked_at} hours: {closed} closed, {len(result.restated)} "
               f"restated; {result.published} restatement events published, "
               f"{result.notified} ledger_restated notifications delivered")


@ledger.command("statement")
@click.option("--dc", "dc_id", required=True, help="the data center")
@click.option("--from", "start", required=True, help="first UTC day (YYYY-MM-DD) or RFC 3339 time")
@click.option("--to", "end", required=True, help="last UTC day (inclusive) or RFC 3339 time (exclusive)")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="write here, not stdout")
@click.option("--entries", "with_entries", is_flag=True, help="include each hour's entries")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
def statement_cmd(dc_id: str, start: str, end: str, fmt: str, out: Path | None, with_entries: bool,
                  url: str | None) -> None:
    """A DC's signed statements of the hours in a period, in chain order, for the parties to
    verify offline with `surplus ledger verify`. Statements issued in between for other hours
    (restatements of older hours) are included, so the chain has no gap."""
    from streams.statement_files import to_csv, to_json
    from streams.statement_store import StatementStore
    from streams.statements import entries_digest, segment

    lo, hi = _moment(start, end=False), _moment(end, end=True)
    if hi <= lo:
        raise UserError("--to must be after --from")
    client, database = _connect(url)
    store = StatementStore(client, database)
    try:
        chosen = segment(store.chain(dc_id), lo, hi)
        entries: dict[Any, Any] | None = None
        if with_entries:
            entries = {}
            newest = {s.hour: s.version for s in chosen}
            for s in chosen:
                latest = newest[s.hour] == s.version
                found = store.entries([(dc_id, s.hour)], None if latest else s.closed_at)
                listed = found[(dc_id, s.hour)]
                if entries_digest(listed) == s.entries_digest:
                    entries[(s.hour, s.version)] = listed
                elif latest:
                    click.echo(f"note: {s.name}: the ledger changed since it was issued; run "
                               "`surplus ledger close` (its entries are left out)", err=True)
    except UserError:
        raise
    except Exception as exc:
        raise _store_error(exc) from None
    if not chosen:
        raise UserError(f"no statements of DC {dc_id!r} for hours in [{lo:%Y-%m-%dT%H:%MZ}, "
                        f"{hi:%Y-%m-%dT%H:%MZ}): has `surplus ledger close` run?")
    key_id = chosen[-1].key_id
    text = to_json(dc_id, key_id, chosen, entries) if fmt == "json" else to_csv(chosen, entries)
    _write(text, out)


@ledger.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--pubkey", type=click.Path(path_type=Path, dir_okay=False),
              help="the platform's statement public key (PEM, from `surplus ledger pubkey`)")
@click.option("--tally", type=click.Path(path_type=Path, dir_okay=False),
              help="the operator's tally (`surplus agent tally`): list the hours that differ")
def verify_cmd(file: Path, pubkey: Path | None, tally: Path | None) -> None:
    """Verify a statement file offline (no store, no broker): recompute every entries digest
    (when it has entries), every hash, check every signature and the chain. Exit 0 when all
    hold; exit 1 naming the first failing statement (or listing the hours where the tally
    differs); exit 2 for a file that cannot be read."""
    from streams.statement_files import BadFile, parse, verify
    from streams.statements import StatementError
    from streams.tally_check import differences, parse_tally

    if pubkey is None and tally is None:
        raise UserError("give --pubkey PEM (to check signatures) and/or --tally TALLY")
    try:
        doc = parse(_read(file))
    except BadFile as exc:
        raise UserError(f"{file}: {exc}") from None
    try:
        pem = _read(pubkey).encode("ascii", "replace") if pubkey is not None else None
        verdict = verify(doc, pem)
    except (StatementError, ValueError) as exc:
        raise UserError(f"{pubkey}: not an Ed25519 public key in PEM ({exc})") from None
    try:
        rows = parse_tally(_read(tally)) if tally is not None else None
    except BadFile as exc:
        raise UserError(f"{tally}: {exc}") from None
    if not verdict.ok:
        first = verdict.failures[0]
        more = len(verdict.failures) - 1
        raise UserError(f"{file}: FAILED at {first.line()}"
                        + (f" (and {more} more failing)" if more else ""), exit_code=EXIT_FOUND)
    checked = "signatures checked" if verdict.signatures_checked else "signatures NOT checked (no --pubkey)"
    click.echo(f"{file}: {verdict.statements} statements of DC {doc.dc_id} verify "
               f"({verdict.with_entries} with entries recomputed; hashes and chain; {checked})")
    if rows is None:
        return
    diffs = differences(doc, rows)
    if not diffs:
        click.echo(f"the operator's tally matches every hour of the statements ({tally})")
        return
    for d in diffs:
        click.echo(f"differs {d.line()}")
    raise UserError(f"{len(diffs)} hour(s) differ between the statements and the tally", exit_code=EXIT_FOUND)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


@ledger.command("invoice")
@click.option("--tenant", "tenant_id", required=True, help="the tenant")
@click.option("--month", required=True, help="YYYY-MM (the Asia/Shanghai month of the usage)")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="write here, not stdout")
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
def invoice_cmd(tenant_id: str, month: str, fmt: str, out: Path | None, url: str | None) -> None:
    """A tenant's monthly invoice: per DC and device model the device-hours, the unit price(s)
    (CNY per device-hour, from the price book) and the amount; the total equals
    cpn.tenant_usage_daily for the month to the fen (exit 1 if it does not)."""
    from schemas.prices import PriceBook, PriceBookError
    from streams.invoice import invoice, month_bounds

    try:
        month_bounds(month)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        prices = PriceBook.load()
    except PriceBookError as exc:
        raise UserError(str(exc)) from None
    client, database = _connect(url)
    try:
        bill = invoice(client, database, tenant_id, month, prices)
    except Exception as exc:
        raise _store_error(exc) from None
    _write(bill.to_json() if fmt == "json" else bill.to_csv(), out)
    if bill.usage_daily_amount_cny != bill.total_amount_cny:
        raise UserError(f"the invoice total {bill.total_amount_cny} CNY is not "
                        f"cpn.tenant_usage_daily's {bill.usage_daily_amount_cny} CNY", exit_code=EXIT_FOUND)


@ledger.command("pubkey")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), help=KEY_HELP)
def pubkey_cmd(key_file: Path | None) -> None:
    """Print the statement public key (PEM): what the parties verify statement files with."""
    from streams.statement_key import load_statement_key

    click.echo(load_statement_key(key_file).public_pem(), nl=False)
