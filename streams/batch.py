"""One batch of Kafka records -> rows per table, dead letters and counts. Pure.

The worker hands in raw records (bytes, positions) and `now`; decode and normalise run here;
the result says what to write where. Nothing here awaits, reads the clock or logs payloads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.catalogue import Catalogue
from schemas.decode import Verifier, decode
from schemas.events import (
    CapacityEvent,
    HeartbeatEvent,
    JobEvent,
    PowerEvent,
    RegistrationEvent,
)
from schemas.prices import PriceBook
from schemas.reasons import Reason, Reject
from streams import normalise
from streams.ledger import JobKey, JobState, apply, job_key

PAYLOAD_KEEP_BYTES = 4096

# tables in the order they are written: dead letters first, the ledger (which is also the
# per-job state a restarted worker resumes from) last.
TABLES = (
    "dead_letters",
    "registrations",
    "capacity_samples",  # ClickHouse derives pool_minutes from these (migration 009)
    "power_samples",
    "heartbeats",
    "job_events",
    "ledger_entries",
)


@dataclass(frozen=True, slots=True)
class Record:
    """A Kafka message as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    detail: str

    def row(self, received_at: datetime) -> dict[str, Any]:
        return {
            "received_at": received_at,
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "reason": self.reason.value,
            "detail": self.detail,
            "payload": self.record.value[:PAYLOAD_KEEP_BYTES],
        }

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason.value.encode()),
            ("detail", self.detail.encode("utf-8", "replace")[:200]),
            ("source", self.record.position.encode()),
        ]


@dataclass(slots=True)
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in TABLES})
    dead: list[DeadLetter] = field(default_factory=list)
    jobs: list[tuple[Record, JobEvent]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unpriced: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dc_id, device_model)

    def reject(self, record: Record, why: Reject, now: datetime) -> None:
        letter = DeadLetter(record, why.reason, why.detail)
        self.dead.append(letter)
        self.rows["dead_letters"].append(letter.row(now))
        self.rejected[why.reason.value] += 1

    @property
    def job_keys(self) -> set[JobKey]:
        return {job_key(event) for _, event in self.jobs}


def process(
    records: Iterable[Record],
    *,
    now: datetime,
    catalogue: Catalogue,
    verifier: Verifier | None = None,
) -> Batch:
    """Decode and normalise every record; job events are held for the ledger stage."""
    batch = Batch()
    rows = batch.rows
    for record in records:
        outcome = decode(
            record.value,
            now=now,
            key=record.key,
            headers=dict(record.headers) if verifier is not None else None,
            verifier=verifier,
            catalogue=catalogue,
        )
        if isinstance(outcome, Reject):
            batch.reject(record, outcome, now)
            continue
        batch.accepted[outcome.type] += 1
        if isinstance(outcome, CapacityEvent):
            rows["capacity_samples"].append(normalise.capacity_row(outcome, catalogue, now))
        elif isinstance(outcome, PowerEvent):
            rows["power_samples"].append(normalise.power_row(outcome, now))
        elif isinstance(outcome, JobEvent):
            batch.jobs.append((record, outcome))
        elif isinstance(outcome, RegistrationEvent):
            rows["registrations"].append(normalise.registration_row(outcome, now))
        elif isinstance(outcome, HeartbeatEvent):
            rows["heartbeats"].append(normalise.heartbeat_row(outcome, now))
    return batch


def ledger_stage(
    batch: Batch, states: Mapping[JobKey, JobState], prices: PriceBook, *, now: datetime
) -> dict[JobKey, JobState]:
    """Run the batch's job events through the ledger; return the job states they changed."""
    result = apply((event for _, event in batch.jobs), states, prices)
    regressed = {index for index, _ in result.rejects}
    for index, why in result.rejects:
        record, _ = batch.jobs[index]
        batch.accepted["cpn.job.v1"] -= 1
        batch.reject(record, why, now)
    for index, (_, event) in enumerate(batch.jobs):
        if index not in regressed:
            batch.rows["job_events"].append(normalise.job_row(event, now))
    for entry in result.entries:
        batch.rows["ledger_entries"].append(entry.row(now))
        if not entry.priced and entry.device_seconds > 0:
            batch.unpriced[(entry.dc_id, entry.device_model)] += 1
    return result.states
