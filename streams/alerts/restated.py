"""The `ledger_restated` alert (SPEC §6): notifications for the restatements a `surplus ledger close`
run issued, and their delivery. `notifications` is pure; `deliver` is I/O (HTTP, ClickHouse).

Each restatement is one firing alert (labels: alertname, severity, dc_id, hour, version, and the
rule's labels), grouped per receiver by its `group_by` into one Alertmanager webhook body per
group, signed like every notification. It is an event, not a condition: it never resolves.
A notification no attempt delivered is kept in `alert_undelivered` (`surplus alerts resend`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from streams.alerts.config import LedgerRestated, RulesFile
from streams.alerts.model import AlertState, Attempt, Notification, fingerprint
from streams.alerts.payload import encode, group_key, group_labels, webhook_body
from streams.statements import Restated, hour_text


def _alert(rule: LedgerRestated, rules: RulesFile, r: Restated) -> AlertState:
    old, new = r.old, r.new
    labels = {**rule.labels, "alertname": rule.alertname, "severity": rule.severity,
              "dc_id": new.dc_id, "hour": hour_text(new.hour), "version": str(new.version)}
    o, n = old.totals.as_strings(), new.totals.as_strings()
    notes = {
        "summary": f"Ledger statement of DC {new.dc_id} for {hour_text(new.hour)} restated "
                   f"(version {new.version})",
        "description": f"Late data changed a closed hour: version {old.version} had "
                       f"{o['entries']} entries, {o['device_seconds']} device-seconds, "
                       f"{o['energy_kwh']} kWh, {o['amount_cny']} CNY; version {new.version} has "
                       f"{n['entries']} entries, {n['device_seconds']} device-seconds, "
                       f"{n['energy_kwh']} kWh, {n['amount_cny']} CNY. Earlier versions are kept.",
        **rule.annotations,
    }
    return AlertState(fingerprint=fingerprint(labels), rule_id=rule.id, subject=f"dc={new.dc_id}",
                      labels=labels, annotations=notes, status="firing", active_since=new.closed_at,
                      starts_at=new.closed_at, last_true_at=new.closed_at,
                      receivers=rules.receivers_of(rule))


def notifications(rules: RulesFile, restated: Sequence[Restated], now: datetime,
                  new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> list[Notification]:
    """One notification per receiver and group for the restatements of one run."""
    groups: dict[tuple[str, str], tuple[dict[str, str], list[AlertState]]] = {}
    for rule in rules.rule:
        if not isinstance(rule, LedgerRestated):
            continue
        for r in restated:
            alert = _alert(rule, rules, r)
            for name in alert.receivers:
                labels = group_labels(alert.labels, rules.receiver_named(name).group_by)
                key = group_key(labels)
                groups.setdefault((name, key), (labels, []))[1].append(alert)
    out = []
    for (name, key), (labels, alerts) in sorted(groups.items()):
        receiver = rules.receiver_named(name)
        body = webhook_body(receiver=name, key=key, labels=labels, alerts=alerts,
                            external_url=rules.engine.external_url, max_alerts=receiver.max_alerts)
        out.append(Notification(id=new_id(), receiver=name, group_key=key, status="firing",
                                alerts=len(alerts), body=encode(body), created_at=now))
    return out


def deliver(rules: RulesFile, notes: Sequence[Notification], client: Any, database: str) -> int:
    """Send each notification (with the receiver's retries); keep what is not delivered.
    Returns how many were delivered."""
    if not notes:
        return 0
    from streams.alerts.delivery import Deliverer
    from streams.alerts.persist import AlertStore

    store = AlertStore(client, database, rules.engine.instance)

    async def log(attempt: Attempt) -> None:
        await asyncio.to_thread(store.log_attempts, [attempt])

    async def run() -> int:
        deliverer = Deliverer({r.name: r for r in rules.receiver}, on_attempt=log)
        delivered = 0
        try:
            for n in notes:
                outcome = await deliverer.send(n)
                if outcome.delivered:
                    delivered += 1
                else:
                    await asyncio.to_thread(store.save_undelivered, n, outcome.attempts,
                                            outcome.error)
        finally:
            await deliverer.aclose()
        return delivered

    return asyncio.run(run())
