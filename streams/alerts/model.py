"""The values alerts are made of: observations, alert states, notifications, fingerprints. Pure.

Times: `active_since`, `starts_at`, `ends_at` and `last_true_at` are EVENT time (the stream's
clock); a group's `first_at` and `last_sent_at` and a notification's `created_at` are wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["pending", "firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits of SHA-256 over the sorted labels: the same labels give the same id."""
    h = hashlib.sha256()
    for name in sorted(labels):
        h.update(name.encode())
        h.update(b"\xff")
        h.update(labels[name].encode())
        h.update(b"\xff")
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one rule says about one subject at one evaluation: is the condition true now?"""

    rule_id: str
    subject: str
    labels: dict[str, str]
    annotations: dict[str, str]
    active: bool
    for_s: float
    keep_firing_for_s: float
    receivers: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert as the evaluator and the dispatcher know it (one row of alert_state)."""

    fingerprint: str
    rule_id: str
    subject: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: Status
    active_since: datetime
    starts_at: datetime
    last_true_at: datetime
    receivers: tuple[str, ...]
    ends_at: datetime | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True, slots=True)
class Group:
    """A receiver's group of alerts (same values of its group_by labels). Wall-clock times."""

    receiver: str
    key: str
    labels: dict[str, str]
    first_at: datetime
    last_sent_at: datetime | None = None
    notified: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook POST to make: the exact body bytes (signed at send time) and where to."""

    id: str
    receiver: str
    group_key: str
    status: Literal["firing", "resolved"]
    alerts: int
    body: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt at a notification (one row of alert_notifications)."""

    ts: datetime
    notification_id: str
    receiver: str
    group_key: str
    status: str
    attempt: int
    http_status: int
    latency_ms: float
    outcome: Literal["delivered", "retry", "failed"]
    error: str = ""
