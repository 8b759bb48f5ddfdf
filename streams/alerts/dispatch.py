"""Grouping and timing of notifications, as Alertmanager does it: which groups to notify now. Pure.

Per receiver, alerts with the same values of its `group_by` labels form a group. A new group
waits `group_wait_s` before its first notification; a change (an alert fires or resolves) is
sent no sooner than `group_interval_s` after the last one; an unchanged group with firing
alerts is re-sent every `repeat_interval_s`. Times here are wall time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from streams.alerts.config import Receiver
from streams.alerts.evaluate import Step
from streams.alerts.model import AlertState, Group, Notification
from streams.alerts.payload import encode, group_key, group_labels, webhook_body

GroupId = tuple[str, str]  # (receiver, group key)


@dataclass(frozen=True, slots=True)
class Plan:
    notifications: list[Notification]
    groups: dict[GroupId, Group]
    alerts: dict[str, AlertState]


def absorb(alerts: Mapping[str, AlertState], result: Step) -> dict[str, AlertState]:
    """The dispatcher's alerts after an evaluation: every firing alert, plus resolved ones."""
    out = {fp: a for fp, a in alerts.items() if a.status == "resolved"}
    for state in result.resolved:
        out[state.fingerprint] = state
    for state in result.firing:
        out[state.fingerprint] = state
    return out


def _due(group: Group, firing: set[str], receiver: Receiver, wall: datetime) -> bool:
    if group.last_sent_at is None:
        waited = (wall - group.first_at).total_seconds()
        return bool(firing) and waited >= receiver.group_wait_s
    since = (wall - group.last_sent_at).total_seconds()
    if firing != group.notified and since >= receiver.group_interval_s:
        return True
    return bool(firing) and since >= receiver.repeat_interval_s


def plan(
    alerts: Mapping[str, AlertState],
    groups: Mapping[GroupId, Group],
    receivers: Mapping[str, Receiver],
    *,
    wall: datetime,
    external_url: str,
    new_id: Callable[[], str],
) -> Plan:
    """The notifications due at `wall`, and the groups and alerts that remain after them."""
    members: dict[GroupId, list[str]] = {}
    labels_of: dict[GroupId, dict[str, str]] = {}
    for fp, alert in sorted(alerts.items()):
        for name in alert.receivers:
            receiver = receivers.get(name)
            if receiver is None:
                continue
            labels = group_labels(alert.labels, receiver.group_by)
            gid = (name, group_key(labels))
            members.setdefault(gid, []).append(fp)
            labels_of[gid] = labels
    notes: list[Notification] = []
    kept: dict[GroupId, Group] = {}
    for gid in sorted(set(members) | set(groups)):
        receiver = receivers.get(gid[0])
        if receiver is None:
            continue
        fps = members.get(gid, [])
        firing = {fp for fp in fps if alerts[fp].status == "firing"}
        group = groups.get(gid)
        if group is None:
            if not firing:
                continue
            group = Group(receiver=gid[0], key=gid[1], labels=labels_of[gid], first_at=wall)
        if _due(group, firing, receiver, wall):
            resolved = {fp for fp in fps if alerts[fp].status == "resolved" and fp in group.notified}
            send = firing | (resolved if receiver.send_resolved else set())
            if send:
                body = webhook_body(
                    receiver=gid[0],
                    key=gid[1],
                    labels=group.labels,
                    alerts=[alerts[fp] for fp in sorted(send)],
                    external_url=external_url,
                    max_alerts=receiver.max_alerts,
                )
                notes.append(
                    Notification(
                        id=new_id(),
                        receiver=gid[0],
                        group_key=gid[1],
                        status=body["status"],
                        alerts=len(body["alerts"]),
                        body=encode(body),
                        created_at=wall,
                    )
                )
            group = replace(group, last_sent_at=wall, notified=frozenset(firing))
        if firing or group.notified:
            kept[gid] = group
    still = set().union(*(g.notified for g in kept.values())) if kept else set()
    remaining = {fp: a for fp, a in alerts.items() if a.status == "firing" or fp in still}
    return Plan(notes, kept, remaining)
