"""Grouping, timing, the Alertmanager v4 body and the signature, pure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from streams.alerts.config import Receiver, parse_rules
from streams.alerts.dispatch import GroupId, plan
from streams.alerts.model import AlertState, Group, Notification, fingerprint
from streams.alerts.payload import group_key
from streams.alerts.sign import signature, verify

W0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AM_V4_FIELDS = {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                "commonLabels", "commonAnnotations", "externalURL", "alerts"}
AM_ALERT_FIELDS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                   "fingerprint"}


def receiver(**kw: object) -> Receiver:
    base: dict[str, object] = {"name": "ops", "url": "https://h.example/x", "secret": "k",
                               "group_by": ["alertname", "hub"], "group_wait_s": 30,
                               "group_interval_s": 300, "repeat_interval_s": 3600}
    return parse_rules({"receiver": [{**base, **kw}]}).receiver[0]


def alert(dc: str, hub: str = "gz", status: str = "firing", name: str = "DcSilent") -> AlertState:
    labels = {"alertname": name, "severity": "critical", "dc_id": dc, "hub": hub}
    return AlertState(
        fingerprint=fingerprint(labels), rule_id=f"{name}:critical", subject=f"dc={dc}",
        labels=labels, annotations={"summary": f"DC {dc} silent", "runbook": "r"},
        status=status,  # type: ignore[arg-type]
        active_since=W0, starts_at=W0 - timedelta(minutes=5), last_true_at=W0,
        receivers=("ops",), ends_at=W0 if status == "resolved" else None,
    )


class Outbox:
    """The dispatcher's state between calls, as the engine keeps it."""

    def __init__(self, rcv: Receiver) -> None:
        self.receivers = {rcv.name: rcv}
        self.alerts: dict[str, AlertState] = {}
        self.groups: dict[GroupId, Group] = {}
        self.ids: Iterator[int] = count()

    def put(self, *alerts: AlertState) -> None:
        for a in alerts:
            self.alerts[a.fingerprint] = a

    def at(self, seconds: float) -> list[Notification]:
        p = plan(self.alerts, self.groups, self.receivers, wall=W0 + timedelta(seconds=seconds),
                 external_url="https://grafana.example/d/x", new_id=lambda: f"n{next(self.ids)}")
        self.alerts, self.groups = p.alerts, p.groups
        return p.notifications


def body(n: Notification) -> dict:  # type: ignore[type-arg]
    return json.loads(n.body)  # type: ignore[no-any-return]


def test_body_is_the_alertmanager_v4_webhook_body() -> None:
    box = Outbox(receiver(group_wait_s=0))
    box.put(alert("dc-a"), alert("dc-b"))
    (n,) = box.at(0)
    b = body(n)
    assert set(b) == AM_V4_FIELDS
    assert b["version"] == "4" and b["status"] == "firing" and b["receiver"] == "ops"
    assert b["groupKey"] == '{}:{alertname="DcSilent", hub="gz"}' == n.group_key
    assert b["groupLabels"] == {"alertname": "DcSilent", "hub": "gz"}
    assert b["commonLabels"] == {"alertname": "DcSilent", "hub": "gz", "severity": "critical"}
    assert b["commonAnnotations"] == {"runbook": "r"}
    assert b["externalURL"] == "https://grafana.example/d/x"
    assert b["truncatedAlerts"] == 0
    for a in b["alerts"]:
        assert set(a) == AM_ALERT_FIELDS
        assert a["status"] == "firing"
        assert a["startsAt"] == "2026-03-01T11:55:00.000Z"
        assert a["endsAt"] == "0001-01-01T00:00:00Z"
        assert a["fingerprint"] == fingerprint(a["labels"])
        assert a["generatorURL"].startswith("https://grafana.example/d/x/alerts?alertname=DcSilent")
    assert sorted(a["labels"]["dc_id"] for a in b["alerts"]) == ["dc-a", "dc-b"]


def test_group_wait_then_one_notification_per_group() -> None:
    box = Outbox(receiver())
    box.put(alert("dc-a"), alert("dc-b"), alert("dc-c", hub="nm"))
    assert box.at(0) == []
    assert box.at(29) == []
    sent = box.at(30)
    assert sorted((n.group_key, n.alerts) for n in sent) == [
        ('{}:{alertname="DcSilent", hub="gz"}', 2),
        ('{}:{alertname="DcSilent", hub="nm"}', 1),
    ]


def test_changes_wait_for_group_interval_and_resolved_is_sent() -> None:
    box = Outbox(receiver(group_wait_s=0))
    box.put(alert("dc-a"))
    assert len(box.at(0)) == 1
    box.put(alert("dc-b"))
    assert box.at(100) == []  # within group_interval
    (n,) = box.at(300)
    assert n.alerts == 2 and n.status == "firing"
    box.put(alert("dc-a", status="resolved"), alert("dc-b", status="resolved"))
    assert box.at(400) == []
    (n,) = box.at(600)
    b = body(n)
    assert b["status"] == "resolved"
    assert {a["status"] for a in b["alerts"]} == {"resolved"}
    assert all(a["endsAt"] == "2026-03-01T12:00:00.000Z" for a in b["alerts"])
    assert box.groups == {} and box.alerts == {}
    assert box.at(5000) == []


def test_repeat_interval_resends_an_unchanged_group_only_when_due() -> None:
    box = Outbox(receiver(group_wait_s=0, repeat_interval_s=3600))
    box.put(alert("dc-a"))
    assert len(box.at(0)) == 1
    assert box.at(300) == [] and box.at(3599) == []
    assert len(box.at(3600)) == 1
    assert box.at(3601) == []
    assert len(box.at(7200)) == 1


def test_a_resolve_before_the_first_notification_sends_nothing() -> None:
    box = Outbox(receiver())
    box.put(alert("dc-a"))
    assert box.at(10) == []
    box.put(alert("dc-a", status="resolved"))
    assert box.at(30) == [] and box.groups == {} and box.alerts == {}


def test_group_by_everything_and_truncation() -> None:
    box = Outbox(receiver(group_by=["..."], group_wait_s=0))
    box.put(alert("dc-a"), alert("dc-b"))
    assert len(box.at(0)) == 2
    box = Outbox(receiver(group_by=[], group_wait_s=0, max_alerts=1))
    box.put(alert("dc-a"), alert("dc-b"))
    (n,) = box.at(0)
    assert n.group_key == "{}:{}" and body(n)["truncatedAlerts"] == 1 and n.alerts == 1


def test_group_key_quotes_values() -> None:
    assert group_key({"b": 'x"y', "a": "1"}) == '{}:{a="1", b="x\\"y"}'


def test_signature_verifies_and_a_wrong_secret_or_body_fails() -> None:
    payload = b'{"version":"4"}'
    header = signature(b"s3cret", 1_700_000_000, payload)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(b"s3cret", header, payload, now=1_700_000_010)
    assert not verify(b"wrong", header, payload, now=1_700_000_010)
    assert not verify(b"s3cret", header, payload + b" ", now=1_700_000_010)
    assert not verify(b"s3cret", header, payload, now=1_700_000_000 + 301)  # a replay, later
    assert not verify(b"s3cret", "v1=abc", payload, now=1_700_000_000)


@pytest.mark.parametrize("secret", [b"k", b"a much longer secret \xff"])
def test_signature_is_hmac_sha256_of_t_dot_body(secret: bytes) -> None:
    import hashlib
    import hmac

    expected = hmac.new(secret, b"42." + b"{}", hashlib.sha256).hexdigest()
    assert signature(secret, 42, b"{}") == f"t=42,v1={expected}"
