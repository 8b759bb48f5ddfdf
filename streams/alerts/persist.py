"""Alert persistence in ClickHouse: state, groups, clock, attempt log, undelivered. I/O (ClickHouse).

Blocking calls (run them in a thread from async code). State and group rows are versioned in
ReplacingMergeTree tables and read with FINAL, so the newest write of a key wins; a deletion is
a row with `deleted = 1`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streams.alerts.dispatch import GroupId
from streams.alerts.model import AlertState, Attempt, Group, Notification
from streams.alerts.snapshot import StreamClock, utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

STATE_COLUMNS = (
    "instance", "fingerprint", "rule_id", "subject", "alertname", "status", "labels",
    "annotations", "receivers", "active_since", "starts_at", "ends_at", "last_true_at",
    "deleted", "updated_at", "version",
)
GROUP_COLUMNS = (
    "instance", "receiver", "group_key", "group_labels", "first_at", "last_sent_at", "notified",
    "deleted", "updated_at", "version",
)
ATTEMPT_COLUMNS = (
    "ts", "instance", "notification_id", "receiver", "group_key", "status", "attempt",
    "http_status", "latency_ms", "outcome", "error",
)
CLOCK_COLUMNS = ("instance", "newest", "newest_changed_at", "clock", "evaluator", "updated_at", "version")
UNDELIVERED_COLUMNS = (
    "notification_id", "instance", "receiver", "group_key", "status", "alerts", "body",
    "created_at", "attempts", "last_error", "delivered", "delivered_at", "version",
)


@dataclass(frozen=True, slots=True)
class Undelivered:
    notification: Notification
    attempts: int
    last_error: str


class AlertStore:
    """Reads and writes the alert tables of one database for one engine `instance`."""

    def __init__(self, client: Client, database: str, instance: str = "default") -> None:
        self.client = client
        self.database = database
        self.instance = instance
        self._lock = threading.Lock()
        self._versions = itertools.count(time.time_ns())

    def _version(self) -> int:
        with self._lock:
            return max(next(self._versions), time.time_ns())

    def _insert(self, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
        if rows:
            self.client.insert(f"{self.database}.{table}", rows, column_names=list(columns))

    def _query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        result = self.client.query(sql.replace("{db}", self.database), parameters=params)
        return [tuple(row) for row in result.result_rows]

    # --- alert state ---------------------------------------------------------------------

    def save_states(self, states: Iterable[AlertState], deleted: Iterable[AlertState] = ()) -> None:
        now = datetime.now(UTC)
        rows = [self._state_row(s, 0, now) for s in states]
        rows += [self._state_row(s, 1, now) for s in deleted]
        self._insert("alert_state", STATE_COLUMNS, rows)

    def _state_row(self, s: AlertState, deleted: int, now: datetime) -> list[Any]:
        return [
            self.instance, s.fingerprint, s.rule_id, s.subject, s.alertname, s.status,
            s.labels, s.annotations, list(s.receivers), s.active_since, s.starts_at, s.ends_at,
            s.last_true_at, deleted, now, self._version(),
        ]

    def load_states(self) -> dict[str, AlertState]:
        rows = self._query(
            "SELECT fingerprint, rule_id, subject, labels, annotations, status, active_since, "
            "starts_at, last_true_at, receivers, ends_at FROM {db}.alert_state FINAL "
            "WHERE instance = {instance:String} AND deleted = 0",
            instance=self.instance,
        )
        out: dict[str, AlertState] = {}
        for fp, rule_id, subject, labels, ann, status, since, starts, last, recv, ends in rows:
            out[fp] = AlertState(
                fingerprint=fp, rule_id=rule_id, subject=subject, labels=dict(labels),
                annotations=dict(ann), status=status, active_since=utc(since),
                starts_at=utc(starts), last_true_at=utc(last), receivers=tuple(recv),
                ends_at=utc(ends) if ends is not None else None,
            )
        return out

    # --- groups --------------------------------------------------------------------------

    def save_groups(self, groups: Iterable[Group], deleted: Iterable[Group] = ()) -> None:
        now = datetime.now(UTC)
        rows = [self._group_row(g, 0, now) for g in groups]
        rows += [self._group_row(g, 1, now) for g in deleted]
        self._insert("alert_groups", GROUP_COLUMNS, rows)

    def _group_row(self, g: Group, deleted: int, now: datetime) -> list[Any]:
        return [
            self.instance, g.receiver, g.key, g.labels, g.first_at, g.last_sent_at,
            sorted(g.notified), deleted, now, self._version(),
        ]

    def load_groups(self) -> dict[GroupId, Group]:
        rows = self._query(
            "SELECT receiver, group_key, group_labels, first_at, last_sent_at, notified "
            "FROM {db}.alert_groups FINAL WHERE instance = {instance:String} AND deleted = 0",
            instance=self.instance,
        )
        return {
            (receiver, key): Group(
                receiver=receiver, key=key, labels=dict(labels), first_at=utc(first),
                last_sent_at=utc(last) if last is not None else None,
                notified=frozenset(notified),
            )
            for receiver, key, labels, first, last, notified in rows
        }

    # --- attempts and the undelivered ----------------------------------------------------

    def log_attempts(self, attempts: Iterable[Attempt]) -> None:
        rows = [
            [a.ts, self.instance, a.notification_id, a.receiver, a.group_key, a.status,
             a.attempt, a.http_status, a.latency_ms, a.outcome, a.error]
            for a in attempts
        ]
        self._insert("alert_notifications", ATTEMPT_COLUMNS, rows)

    def save_undelivered(self, n: Notification, attempts: int, error: str) -> None:
        self._insert("alert_undelivered", UNDELIVERED_COLUMNS, [[
            n.id, self.instance, n.receiver, n.group_key, n.status, n.alerts,
            n.body.decode("utf-8"), n.created_at, attempts, error, 0, None, self._version(),
        ]])

    def mark_delivered(self, item: Undelivered, attempts: int, at: datetime) -> None:
        n = item.notification
        self._insert("alert_undelivered", UNDELIVERED_COLUMNS, [[
            n.id, self.instance, n.receiver, n.group_key, n.status, n.alerts,
            n.body.decode("utf-8"), n.created_at, item.attempts + attempts, "", 1, at,
            self._version(),
        ]])

    def undelivered(self, receiver: str | None = None, limit: int = 1000) -> list[Undelivered]:
        """Notifications no attempt delivered yet, oldest first (any instance)."""
        rows = self._query(
            "SELECT notification_id, receiver, group_key, status, alerts, body, created_at, "
            "attempts, last_error FROM {db}.alert_undelivered FINAL WHERE delivered = 0 "
            "AND ({receiver:String} = '' OR receiver = {receiver:String}) "
            "ORDER BY created_at LIMIT {limit:UInt32}",
            receiver=receiver or "", limit=limit,
        )
        return [
            Undelivered(
                Notification(
                    id=nid, receiver=recv, group_key=key, status=status, alerts=int(alerts),
                    body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                    created_at=utc(created),
                ),
                int(attempts),
                error,
            )
            for nid, recv, key, status, alerts, body, created, attempts, error in rows
        ]

    # --- the stream clock ----------------------------------------------------------------

    def save_clock(self, clock: StreamClock, evaluator: str, at: datetime) -> None:
        """The clock, written by `evaluator` at wall time `at` (also its hold on the instance;
        an empty `evaluator` releases it)."""
        self._insert("alert_clock", CLOCK_COLUMNS, [[
            self.instance, clock.newest, clock.newest_changed_at, clock.clock, evaluator,
            at, self._version(),
        ]])

    def clock_holder(self) -> tuple[str, datetime] | None:
        """(evaluator, wall time) of the newest clock row of this instance, or None."""
        rows = self._query(
            "SELECT evaluator, updated_at FROM {db}.alert_clock FINAL "
            "WHERE instance = {instance:String}", instance=self.instance)
        return (str(rows[0][0]), utc(rows[0][1])) if rows else None

    def load_clock(self, into: StreamClock) -> bool:
        """Put the stored clock of this instance into `into`; False when there is none."""
        rows = self._query(
            "SELECT newest, newest_changed_at, clock FROM {db}.alert_clock FINAL "
            "WHERE instance = {instance:String}", instance=self.instance)
        if not rows:
            return False
        newest, changed, clock = rows[0]
        into.newest = utc(newest) if newest is not None else None
        into.newest_changed_at = utc(changed) if changed is not None else None
        into.clock = utc(clock) if clock is not None else None
        return True
