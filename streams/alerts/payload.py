"""The Prometheus Alertmanager webhook body (version "4") and the Alertmanager-style group key. Pure.

Field list (alertmanager/notify/webhook): version, groupKey, truncatedAlerts, status, receiver,
groupLabels, commonLabels, commonAnnotations, externalURL, alerts[] of status, labels,
annotations, startsAt, endsAt, generatorURL, fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from streams.alerts.model import AlertState

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: datetime) -> str:
    text = t.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def group_labels(labels: Mapping[str, str], group_by: Sequence[str]) -> dict[str, str]:
    """The labels a receiver groups by (`...` means all of them)."""
    if "..." in group_by:
        return dict(sorted(labels.items()))
    return {name: labels[name] for name in sorted(group_by) if name in labels}


def group_key(labels: Mapping[str, str]) -> str:
    """`{}:{alertname="DcSilent", hub="gz"}`: the route (the root, `{}`) and the group labels."""
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return "{}:{" + inner + "}"


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    common = dict(dicts[0])
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if d.get(k) == v}
    return dict(sorted(common.items()))


def alert_json(alert: AlertState, external_url: str) -> dict[str, Any]:
    name = quote(alert.alertname)
    return {
        "status": "resolved" if alert.status == "resolved" else "firing",
        "labels": dict(sorted(alert.labels.items())),
        "annotations": dict(sorted(alert.annotations.items())),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at) if alert.ends_at is not None else ZERO_TIME,
        "generatorURL": f"{external_url.rstrip('/')}/alerts?alertname={name}",
        "fingerprint": alert.fingerprint,
    }


def webhook_body(
    *,
    receiver: str,
    key: str,
    labels: Mapping[str, str],
    alerts: Sequence[AlertState],
    external_url: str,
    max_alerts: int = 0,
) -> dict[str, Any]:
    """The body for one group: firing alerts first, then the resolved ones."""
    ordered = sorted(alerts, key=lambda a: (a.status != "firing", a.fingerprint))
    status = "firing" if any(a.status == "firing" for a in ordered) else "resolved"
    truncated = 0
    if max_alerts and len(ordered) > max_alerts:
        truncated = len(ordered) - max_alerts
        ordered = ordered[:max_alerts]
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": truncated,
        "status": status,
        "receiver": receiver,
        "groupLabels": dict(sorted(labels.items())),
        "commonLabels": _common([a.labels for a in ordered]),
        "commonAnnotations": _common([a.annotations for a in ordered]),
        "externalURL": external_url,
        "alerts": [alert_json(a, external_url) for a in ordered],
    }


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
