"""Kafka topic names (SPEC §3): a prefix (SURPLUS_TOPIC_PREFIX, default `cpn.`) plus a fixed name. Pure."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "cpn."

REGISTRY = "registry"
CAPACITY = "capacity"
POWER = "power"
JOBS = "jobs"
HEARTBEAT = "heartbeat"
DEADLETTER = "deadletter"

TELEMETRY = (REGISTRY, CAPACITY, POWER, JOBS, HEARTBEAT)
ALL = (*TELEMETRY, DEADLETTER)

# event type -> topic name (without prefix)
TOPIC_OF_TYPE = {
    "cpn.dc.v1": REGISTRY,
    "cpn.capacity.v1": CAPACITY,
    "cpn.power.v1": POWER,
    "cpn.job.v1": JOBS,
    "cpn.heartbeat.v1": HEARTBEAT,
}


@dataclass(frozen=True, slots=True)
class Topics:
    """The full topic names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def for_type(self, event_type: str) -> str:
        return self.name(TOPIC_OF_TYPE[event_type])

    @property
    def telemetry(self) -> list[str]:
        return [self.name(t) for t in TELEMETRY]

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)
