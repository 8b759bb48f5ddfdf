"""Each rule kind read against a snapshot of the store: one Observation per subject with data. Pure.

`snap.now` is the stream's clock (event time); the dead-letter rule alone counts on the wall
clock, because a rejected record may have no readable event time. A subject with no data yields
no observation, so an alert loaded after a restart keeps its state until data says otherwise.
National and hub figures come from the whole store (every worker's partitions), never a part.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from streams.alerts.config import (
    DcSilent,
    DeadletterRateAbove,
    GreenShareBelow,
    PueAbove,
    RuleBase,
    RulesFile,
    SpoolAtRisk,
    SurplusAbove,
    SurplusBelow,
    UnpricedUsage,
)
from streams.alerts.model import Observation
from streams.alerts.snapshot import Snapshot, energy_hour, surplus_minute
from streams.alerts.targets import GREEN_SHARE_TARGET, pue_target

# (subject, scope labels, annotations, active)
Finding = tuple[str, dict[str, str], dict[str, str], bool]
PRECISION_INDEX = {"fp16": 0, "fp32": 1, "fp64": 2}


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def observe_all(rules: RulesFile, snap: Snapshot) -> list[Observation]:
    """Every rule's observations at the snapshot's stream time."""
    out: list[Observation] = []
    for rule in rules.rule:
        receivers = rules.receivers_of(rule)
        pending_s = 0.0 if isinstance(rule, DcSilent) else rule.for_s
        for subject, scope, notes, active in findings(rule, snap):
            labels = {**rule.labels, "alertname": rule.alertname, "severity": rule.severity, **scope}
            out.append(
                Observation(
                    rule_id=rule.id,
                    subject=subject,
                    labels=labels,
                    annotations={**notes, **rule.annotations},
                    active=active,
                    for_s=pending_s,
                    keep_firing_for_s=rule.keep_firing_for_s,
                    receivers=receivers,
                )
            )
    return out


def findings(rule: RuleBase, snap: Snapshot) -> Iterator[Finding]:
    if isinstance(rule, DcSilent):
        yield from dc_silent(rule, snap)
    elif isinstance(rule, GreenShareBelow | PueAbove):
        yield from hourly_energy(rule, snap)
    elif isinstance(rule, SurplusAbove | SurplusBelow):
        yield from surplus(rule, snap)
    elif isinstance(rule, DeadletterRateAbove):
        yield from deadletter_rate(rule, snap)
    elif isinstance(rule, UnpricedUsage):
        yield from unpriced(rule, snap)
    elif isinstance(rule, SpoolAtRisk):
        yield from spool_at_risk(rule, snap)


def dc_silent(rule: DcSilent, snap: Snapshot) -> Iterator[Finding]:
    for dc_id, seen in sorted(snap.last_seen.items()):
        hub = snap.hub(dc_id)
        silent_s = (snap.now - seen).total_seconds()
        yield (
            f"dc={dc_id}",
            {"dc_id": dc_id, "hub": hub},
            {
                "summary": f"DC {dc_id} silent since {iso(seen)}",
                "description": f"No event from data center {dc_id} (hub {hub}) since {iso(seen)} "
                f"(event time); the rule fires after {rule.for_s:.0f} s of silence.",
            },
            silent_s >= rule.for_s,
        )


def hourly_energy(rule: GreenShareBelow | PueAbove, snap: Snapshot) -> Iterator[Finding]:
    """The latest hour closed `settle_s` ago, summed per DC or hub: energy-weighted ratios."""
    hour = energy_hour(rule, snap.now)
    sums: dict[tuple[str, str], list[float]] = {}
    for dc_id, (facility, it, green) in snap.energy.get(hour, {}).items():
        hub = snap.hub(dc_id)
        key = (dc_id, hub) if rule.scope == "dc" else ("", hub)
        acc = sums.setdefault(key, [0.0, 0.0, 0.0])
        acc[0] += facility
        acc[1] += it
        acc[2] += green
    for (dc_id, hub), (facility, it, green) in sorted(sums.items()):
        scope = {"dc_id": dc_id, "hub": hub} if dc_id else {"hub": hub}
        subject = f"dc={dc_id}" if dc_id else f"hub={hub}"
        who = f"DC {dc_id}" if dc_id else f"hub {hub}"
        if isinstance(rule, GreenShareBelow):
            if facility <= 0:
                continue
            share, target = green / facility, rule.threshold
            target = GREEN_SHARE_TARGET if target is None else target
            text = f"Green share of {who} was {share:.1%} in the hour from {iso(hour)} " \
                f"(target {target:.0%})"
            notes = {"summary": text, "description": _energy(facility, it, green)}
            yield subject, scope, notes, share < target
        else:
            if it <= 0:
                continue
            pue, limit = facility / it, rule.threshold
            limit = pue_target(hub) if limit is None else limit
            text = f"PUE of {who} was {pue:.3f} in the hour from {iso(hour)} (target {limit:.2f})"
            notes = {"summary": text, "description": _energy(facility, it, green)}
            yield subject, scope, notes, pue > limit


def _energy(facility: float, it: float, green: float) -> str:
    return f"facility {facility:.1f} kWh, IT {it:.1f} kWh, green {green:.1f} kWh (sums over the hour)"


def surplus(rule: SurplusAbove | SurplusBelow, snap: Snapshot) -> Iterator[Finding]:
    """Idle PFLOPS of the snapshot minute `settle_s` before now (`national_surplus_minute` or
    `hub_surplus_minute`: the pools whose latest sample is in (T - 3*interval_s, T])."""
    index = PRECISION_INDEX[rule.precision]
    minute = surplus_minute(rule, snap.now)
    totals: dict[str, float] = {}
    if rule.scope == "hub":
        for hub, idle in snap.hub_idle.get(minute, {}).items():
            if rule.hub is None or hub == rule.hub:
                totals[hub] = idle[index]
    elif minute in snap.national:
        totals[""] = snap.national[minute][index]
    above = isinstance(rule, SurplusAbove)
    for key, value in sorted(totals.items()):
        where = f"hub {key}" if key else "national"
        word = "above" if above else "below"
        active = value > rule.threshold_pflops if above else value < rule.threshold_pflops
        yield (
            f"hub={key}" if key else "national",
            {"hub": key} if key else {"scope": "national"},
            {
                "summary": f"Idle capacity ({where}) {word} {rule.threshold_pflops:g} PFLOPS "
                f"{rule.precision}",
                "description": f"Idle {rule.precision} capacity ({where}) is {value:.3f} PFLOPS at "
                f"{iso(minute)}; threshold {rule.threshold_pflops:g} PFLOPS.",
            },
            active,
        )


def deadletter_rate(rule: DeadletterRateAbove, snap: Snapshot) -> Iterator[Finding]:
    """Rejects in the last `window_s` of wall time, per minute and as a share of all events."""
    counts = snap.deadletter.get(rule.window_s)
    if counts is None:
        return
    rejected, total = counts.rejected, max(counts.events, counts.rejected)
    per_minute = rejected / (rule.window_s / 60)
    share = rejected / total if total >= rule.min_events else None
    active = (rule.per_minute is not None and per_minute > rule.per_minute) or (
        rule.share is not None and share is not None and share > rule.share
    )
    full_window = (snap.wall - snap.started_at).total_seconds() >= rule.window_s
    if not (active or full_window):
        return  # too little history to say the rate is fine
    share_text = f"{share:.1%}" if share is not None else "n/a"
    yield (
        "pipeline",
        {},
        {
            "summary": f"Dead-letter rate {per_minute:.1f}/min, share {share_text}",
            "description": f"{rejected} of {total} events were rejected in the last "
            f"{rule.window_s / 60:.0f} min; see cpn.deadletter for reasons.",
        },
        active,
    )


def unpriced(rule: UnpricedUsage, snap: Snapshot) -> Iterator[Finding]:
    for (dc_id, model), last in sorted(snap.unpriced.items()):
        yield (
            f"dc={dc_id}/model={model}",
            {"dc_id": dc_id, "hub": snap.hub(dc_id), "device_model": model},
            {
                "summary": f"Unpriced usage of {model} at DC {dc_id}",
                "description": f"Jobs on {model} at {dc_id} are metered with amount_cny 0: the "
                f"price book has no price for it (last seen {iso(last)}).",
            },
            (snap.now - last).total_seconds() < rule.clear_after_s,
        )


def spool_at_risk(rule: SpoolAtRisk, snap: Snapshot) -> Iterator[Finding]:
    """Per DC: at the growth of `spool_backlog_events` over its heartbeats of the last `window_s`
    (least-squares slope), (capacity_events - backlog) / growth < within_s; or the backlog is at
    or past `capacity_events` and not falling (the spool is overflowing). Not at risk once the
    backlog stops growing below capacity, or falls; one heartbeat says nothing, unless its
    backlog is 0."""
    for dc_id, trend in sorted(snap.spool.get(rule.window_s, {}).items()):
        growth, backlog, capacity = trend.growth_per_s, trend.backlog, rule.capacity_events
        if growth is None and backlog > 0:
            continue  # one heartbeat in the window: no growth to judge
        growth = growth or 0.0
        room = capacity - backlog
        eta_s = max(room, 0) / growth if growth > 0 else None
        active = (eta_s is not None and eta_s < rule.within_s) or (room <= 0 and growth >= 0)
        hub = snap.hub(dc_id)
        if room <= 0:
            summary = f"Spool of DC {dc_id} is full ({backlog} of about {capacity} events)"
        elif eta_s is not None:
            summary = f"Spool of DC {dc_id} overflows in {_duration(eta_s)} at its current growth"
        else:
            summary = f"Spool of DC {dc_id} is not growing ({backlog} of about {capacity} events)"
        yield (
            f"dc={dc_id}",
            {"dc_id": dc_id, "hub": hub},
            {
                "summary": summary,
                "description": f"The agent of {dc_id} (hub {hub}) reports {backlog} undelivered "
                f"events; its spool holds about {capacity}. Over its {trend.n} heartbeats of "
                f"the last {trend.span_s:.0f} s to {iso(trend.last)} the backlog changed by "
                f"{growth * 60:+.1f} events/min; the rule fires when it would be full within "
                f"{_duration(rule.within_s)}.",
            },
            active,
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
