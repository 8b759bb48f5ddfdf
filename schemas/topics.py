"""Kafka topic names (SPEC §3): a prefix (SURPLUS_TOPIC_PREFIX, default `cpn.`) plus a fixed name. Pure.

The telemetry topics are those of the registered event types (schemas/registry.py), each once,
in registration order; the dead-letter topic is the one topic no event type owns.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import registry

DEFAULT_PREFIX = "cpn."
DEADLETTER = "deadletter"
RESTATEMENTS = "restatements"  # cpn.restatement.v1, from `surplus ledger close` (SPEC §4.1)

# event type -> topic name (without prefix); the registry's map, updated when a type is added
TOPIC_OF_TYPE = registry.TOPIC_OF_TYPE
TELEMETRY = registry.topics()  # the built-in types' topics (Topics.telemetry follows the registry)
ALL = (*TELEMETRY, DEADLETTER)


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
        """Every registered type's topic, each once."""
        return [self.name(t) for t in registry.topics()]

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)
