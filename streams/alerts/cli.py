"""`surplus alerts`: run the evaluator, check a rules file, send a test, resend the undelivered. Wiring."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import click

from streams.alerts.config import RulesFile, load_rules
from streams.alerts.delivery import Deliverer
from streams.alerts.model import AlertState, Attempt, Notification
from streams.alerts.payload import encode, group_key, group_labels, webhook_body
from streams.alerts.persist import AlertStore, Undelivered
from surplus.errors import EXIT_FOUND, UserError

RULES_HELP = "alert rules TOML  [env SURPLUS_ALERT_RULES]"


def _rules(path: Path | None) -> RulesFile:
    if path is None:
        env = os.environ.get("SURPLUS_ALERT_RULES")
        if not env:
            raise UserError("no alert rules file: pass --rules FILE or set SURPLUS_ALERT_RULES")
        path = Path(env)
    return load_rules(path)


@click.group()
def alerts() -> None:
    """Alert rules and webhook delivery (Alertmanager webhook format, signed)."""


URL_HELP = "chdb:///path or http(s)://user:pass@host:8123/cpn  [env CLICKHOUSE_URL]"


@alerts.command("run")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help=RULES_HELP)
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
@click.option("--interval", "interval_s", type=click.FloatRange(0.05, 3600), default=None,
              help="seconds between evaluations (default: the rules file's "
                   "engine.evaluation_interval_s)")
@click.option("--once", is_flag=True, help="evaluate once, deliver what is due, and exit")
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Apply missing ClickHouse migrations before starting.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def run(rules_path: Path | None, url: str | None, interval_s: float | None, once: bool,
        migrate: bool, loglevel: str) -> None:
    """Evaluate every alert rule for the whole network, on a schedule, and deliver notifications.

    Reads the store (SPEC §5 relations, heartbeats and the workers' counters) that every worker
    writes, so national and hub rules see all partitions. One evaluator holds a rules-file
    `instance` at a time; a second one stands by (docs/alerts.md, "One evaluator"). Workers do
    not evaluate rules.
    """
    from streams.alerts.engine import engine_from
    from streams.alerts.run import evaluate
    from surplus.logs import configure
    from surplus.paths import default_clickhouse_url
    from surplus.store import connect
    from surplus.store import migrate as apply_migrations

    configure(loglevel)
    rules = _rules(rules_path)
    client, target = connect(url or default_clickhouse_url(), create=migrate)
    if migrate:
        try:
            apply_migrations(client, target.database)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"cannot migrate {target.database}: {str(exc).splitlines()[0]}") from None
    engine = engine_from(rules, client, target.database,
                         evaluator=f"{socket.gethostname()}/{os.getpid()}")
    try:
        engine.load()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"alerts: cannot load alert state ({first}); run `surplus db migrate`") from None
    every = interval_s if interval_s is not None else rules.engine.evaluation_interval_s
    if not once:
        click.echo(f"alerts: {len(rules.rule)} rule(s), {len(rules.receiver)} receiver(s), "
                   f"every {every:g} s on {target.database}", err=True)
    done = asyncio.run(evaluate(engine, interval_s=every, once=once))
    click.echo(f"evaluated {done.ticks} time(s); queued {done.notifications} notification(s)"
               + (f"; stood by {done.standby} time(s) for another evaluator" if done.standby else "")
               + (f"; {done.failed} evaluation(s) failed" if done.failed else ""))
    if once and done.failed:
        raise UserError("the evaluation failed (see the log above)")


@alerts.command("check")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help=RULES_HELP)
def check(rules_path: Path | None) -> None:
    """Validate a rules file and list its receivers and rules."""
    rules = _rules(rules_path)
    for r in rules.receiver:
        click.echo(f"receiver {r.name}: {r.url} (group_by {', '.join(r.group_by)})")
    for rule in rules.rule:
        click.echo(f"rule {rule.id} ({rule.kind}) -> {', '.join(rules.receivers_of(rule))}")
    click.echo(f"ok: {len(rules.receiver)} receiver(s), {len(rules.rule)} rule(s)")


def sample_notification(rules: RulesFile, receiver: str, now: datetime) -> Notification:
    """A firing test alert for one receiver, in the same body as every real notification."""
    target = rules.receiver_named(receiver)
    labels = {"alertname": "SurplusTestAlert", "severity": "info", "instance": rules.engine.instance}
    alert = AlertState(
        fingerprint="0" * 16, rule_id="test", subject="test", labels=labels,
        annotations={"summary": "Test notification from `surplus alerts test`",
                     "description": "If you can read this, the webhook works."},
        status="firing", active_since=now, starts_at=now, last_true_at=now, receivers=(receiver,),
    )
    glabels = group_labels(labels, target.group_by)
    key = group_key(glabels)
    body = webhook_body(receiver=receiver, key=key, labels=glabels, alerts=[alert],
                        external_url=rules.engine.external_url)
    return Notification(id=f"test-{int(now.timestamp())}", receiver=receiver, group_key=key,
                        status="firing", alerts=1, body=encode(body), created_at=now)


@alerts.command("test")
@click.option("--receiver", required=True, help="the receiver's name in the rules file")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help=RULES_HELP)
@click.option("--attempts", type=click.IntRange(1, 50), default=1, show_default=True,
              help="attempts before giving up (the receiver's back-off between them)")
def test(receiver: str, rules_path: Path | None, attempts: int) -> None:
    """Send a sample firing notification to one receiver, signed like the real ones."""
    rules = _rules(rules_path)
    n = sample_notification(rules, receiver, datetime.now(UTC))

    async def run() -> tuple[bool, int, str]:
        deliverer = Deliverer({r.name: r for r in rules.receiver})
        try:
            outcome = await deliverer.send(n, max_attempts=attempts)
        finally:
            await deliverer.aclose()
        return outcome.delivered, outcome.http_status, outcome.error

    delivered, status, error = asyncio.run(run())
    if not delivered:
        raise UserError(f"test notification to {receiver} failed: {error}")
    click.echo(f"delivered a test notification to {receiver} (HTTP {status})")


@alerts.command("resend")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help=RULES_HELP)
@click.option("--url", envvar="CLICKHOUSE_URL", default=None, help=URL_HELP)
@click.option("--receiver", default=None, help="only this receiver's notifications")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def resend(rules_path: Path | None, url: str | None, receiver: str | None, limit: int) -> None:
    """Re-send the notifications that were never delivered, oldest first, freshly signed."""
    from surplus.paths import default_clickhouse_url
    from surplus.store import connect

    rules = _rules(rules_path)
    if receiver is not None:
        rules.receiver_named(receiver)
    client, target = connect(url or default_clickhouse_url(), create=False)
    store = AlertStore(client, target.database, rules.engine.instance)
    try:
        pending = store.undelivered(receiver, limit)
    except Exception as exc:
        raise UserError(f"cannot read alert_undelivered ({str(exc).splitlines()[0]}); "
                        "run `surplus db migrate`") from None
    delivered, failed = asyncio.run(resend_all(rules, store, pending))
    click.echo(f"resent {delivered} of {len(pending)} undelivered notification(s)")
    if failed:
        raise UserError(f"{len(failed)} still undelivered: {'; '.join(failed[:3])}", exit_code=EXIT_FOUND)


async def resend_all(
    rules: RulesFile, store: AlertStore, pending: list[Undelivered]
) -> tuple[int, list[str]]:
    """Send each undelivered notification again; mark the delivered ones. (delivered, errors)"""

    async def log(attempt: Attempt) -> None:
        await asyncio.to_thread(store.log_attempts, [attempt])

    deliverer = Deliverer({r.name: r for r in rules.receiver}, on_attempt=log)
    delivered, failed = 0, list[str]()
    try:
        for item in pending:
            n = item.notification
            outcome = await deliverer.send(n)
            if outcome.delivered:
                await asyncio.to_thread(store.mark_delivered, item, outcome.attempts,
                                        datetime.now(UTC))
                delivered += 1
            else:
                failed.append(f"{n.receiver} {n.id[:8]}: {outcome.error}")
    finally:
        await deliverer.aclose()
    return delivered, failed
