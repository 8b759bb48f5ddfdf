"""One batch of Kafka records -> rows per table, dead letters and counts. Pure.

The worker hands in raw records (bytes, positions) and `now`; decode and normalise run here;
the result says what to write where. Nothing here awaits, reads the clock or logs payloads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.catalogue import Catalogue
from schemas.decode import MAX_BYTES, Verifier, decode
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
from streams.ledger import LEDGER_COLUMNS, JobKey, JobState, apply, job_key

PAYLOAD_KEEP_BYTES = 4096
# What the dead-letter topic keeps of a message (SPEC §3): the value whole up to the 64 KiB that
# `too_large` allows, else its first 64 KiB with an `original_size` header; keys are ids (at most
# 63 characters when valid), so a longer one is cut the same way. This bounds every forwarded
# record well under the worker producer's request limit, whatever the broker accepted.
FORWARD_VALUE_BYTES = MAX_BYTES
FORWARD_KEY_BYTES = 1024

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


DEAD_LETTER_COLUMNS = ("received_at", "topic", "partition", "offset", "reason", "detail", "payload")
# every table's column order (rows are tuples) and how many leading columns are stored
COLUMNS: dict[str, tuple[str, ...]] = {
    **normalise.COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS, "ledger_entries": LEDGER_COLUMNS,
}
STORED: dict[str, int] = {t: normalise.STORED.get(t, len(c)) for t, c in COLUMNS.items()}


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

    def row(self, received_at: datetime) -> tuple[Any, ...]:
        """The dead_letters row, in DEAD_LETTER_COLUMNS order."""
        r = self.record
        return (received_at, r.topic, r.partition, r.offset, self.reason.value, self.detail,
                r.value[:PAYLOAD_KEEP_BYTES])

    @property
    def key(self) -> bytes | None:
        """The key forwarded to the dead-letter topic (at most FORWARD_KEY_BYTES)."""
        key = self.record.key
        return key if key is None or len(key) <= FORWARD_KEY_BYTES else key[:FORWARD_KEY_BYTES]

    @property
    def value(self) -> bytes:
        """The value forwarded to the dead-letter topic: whole, or its first FORWARD_VALUE_BYTES."""
        value = self.record.value
        return value if len(value) <= FORWARD_VALUE_BYTES else value[:FORWARD_VALUE_BYTES]

    def headers(self) -> list[tuple[str, bytes]]:
        """`reason`, `detail` (at most 200 bytes), `source`, and `original_size` when cut (SPEC §3)."""
        headers = [
            ("reason", self.reason.value.encode()),
            ("detail", self.detail.encode("utf-8", "replace")[:200]),
            ("source", self.record.position.encode()),
        ]
        if len(self.record.value) > FORWARD_VALUE_BYTES:
            headers.append(("original_size", str(len(self.record.value)).encode()))
        if self.record.key is not None and len(self.record.key) > FORWARD_KEY_BYTES:
            headers.append(("original_key_size", str(len(self.record.key)).encode()))
        return headers


@dataclass(slots=True)
class Batch:
    tuples: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in TABLES})
    dead: list[DeadLetter] = field(default_factory=list)
    jobs: list[tuple[Record, JobEvent]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unpriced: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dc_id, device_model)

    def reject(self, record: Record, why: Reject, now: datetime) -> None:
        letter = DeadLetter(record, why.reason, why.detail)
        self.dead.append(letter)
        self.tuples["dead_letters"].append(letter.row(now))
        self.rejected[why.reason.value] += 1

    @property
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """The rows as dicts by column name (for observers such as the alert rules; not the hot path)."""
        return {table: [dict(zip(COLUMNS[table], row, strict=True)) for row in rows]
                for table, rows in self.tuples.items()}

    @property
    def job_keys(self) -> set[JobKey]:
        return {job_key(event) for _, event in self.jobs}


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def process(
    records: Iterable[Record],
    *,
    now: datetime,
    catalogue: Catalogue,
    verifier: Verifier | None = None,
) -> Batch:
    """Decode and normalise every record; job events are held for the ledger stage."""
    batch = Batch()
    rows = batch.tuples
    received = epoch_ms(now)  # DateTime64(3) ticks: converted once per batch, not per row
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
            rows["capacity_samples"].append(normalise.capacity_row(outcome, catalogue, received))
        elif isinstance(outcome, PowerEvent):
            rows["power_samples"].append(normalise.power_row(outcome, received))
        elif isinstance(outcome, JobEvent):
            batch.jobs.append((record, outcome))
        elif isinstance(outcome, RegistrationEvent):
            rows["registrations"].append(normalise.registration_row(outcome, received))
        elif isinstance(outcome, HeartbeatEvent):
            rows["heartbeats"].append(normalise.heartbeat_row(outcome, received))
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
    received = epoch_ms(now)
    for index, (_, event) in enumerate(batch.jobs):
        if index not in regressed:
            batch.tuples["job_events"].append(normalise.job_row(event, received))
    for entry in result.entries:
        batch.tuples["ledger_entries"].append(entry.row(received))
        if not entry.priced and entry.device_seconds > 0:
            batch.unpriced[(entry.dc_id, entry.device_model)] += 1
    return result.states
