"""The alert state machine: states + observations + stream time -> new states and transitions. Pure.

pending --(condition held for_s)--> firing --(false for keep_firing_for_s)--> resolved.
A state no observation speaks about stays as it is (no data is not "fine"), unless its rule is
gone from the config or its subject is now observed under other labels: then it resolves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from streams.alerts.model import AlertState, Observation


@dataclass(frozen=True, slots=True)
class Step:
    states: dict[str, AlertState]  # pending and firing, by fingerprint
    fired: list[AlertState] = field(default_factory=list)
    resolved: list[AlertState] = field(default_factory=list)
    updated: list[AlertState] = field(default_factory=list)  # still firing, new annotations

    @property
    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.status == "firing"]


def step(
    states: dict[str, AlertState],
    observations: Iterable[Observation],
    rule_ids: set[str],
    now: datetime,
) -> Step:
    """Advance every alert to stream time `now`."""
    seen: dict[str, Observation] = {}
    subject_fp: dict[tuple[str, str], str] = {}
    for obs in observations:
        seen[obs.fingerprint] = obs
        if obs.active or (obs.rule_id, obs.subject) not in subject_fp:
            subject_fp[(obs.rule_id, obs.subject)] = obs.fingerprint
    out = Step(states={})
    for fp, obs in seen.items():
        _advance(out, states.get(fp), obs, now)
    for fp, state in states.items():
        if fp in seen:
            continue
        current = subject_fp.get((state.rule_id, state.subject), fp)
        if state.rule_id in rule_ids and current == fp:
            out.states[fp] = state  # no data: unchanged
        elif state.status == "firing":
            out.resolved.append(replace(state, status="resolved", ends_at=now))
    return out


def _advance(out: Step, state: AlertState | None, obs: Observation, now: datetime) -> None:
    fp = obs.fingerprint
    if obs.active:
        if state is None:
            state = AlertState(
                fingerprint=fp,
                rule_id=obs.rule_id,
                subject=obs.subject,
                labels=obs.labels,
                annotations=obs.annotations,
                status="pending",
                active_since=now,
                starts_at=now,
                last_true_at=now,
                receivers=obs.receivers,
            )
        else:
            before = state
            state = replace(state, annotations=obs.annotations, receivers=obs.receivers,
                            last_true_at=max(now, state.last_true_at))
            if state.status == "firing" and before.annotations != obs.annotations:
                out.updated.append(state)
        if state.status == "pending" and (now - state.active_since).total_seconds() >= obs.for_s:
            state = replace(state, status="firing", starts_at=now)
            out.fired.append(state)
        out.states[fp] = state
        return
    if state is None or state.status == "pending":
        return  # a pending alert whose condition went away is simply forgotten
    if (now - state.last_true_at).total_seconds() >= obs.keep_firing_for_s:
        out.resolved.append(replace(state, status="resolved", ends_at=now,
                                    annotations=obs.annotations))
    else:
        out.states[fp] = state
