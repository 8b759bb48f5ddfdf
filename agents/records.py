"""What the agent sends: CloudEvent dicts, their stable ids, and spool records (kind, key, bytes). Pure.

A collector returns CloudEvent dicts (`schemas.events.make_event`); the agent serialises each once
to compact JSON, and those bytes are what the spool stores and Kafka receives, resends included.
Event ids are `<short type>-<pool or job or ->-<event time in ms>` (job events: `job-<job>-<seq>`),
so the same measurement always carries the same id and the dedup key (`source`+`id`) holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from schemas import registry
from schemas.events import Registration, Strict, make_event

if TYPE_CHECKING:
    from agents.settings import DataCenter

CloudEvent = dict[str, Any]
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# kind codes stored in the spool (one byte each), id prefixes and topics: the registry's maps
# (schemas/registry.py), live: a type registered later is in them too
KIND_OF_TYPE: Final = registry.KIND_OF_TYPE
TYPE_OF_KIND: Final = registry.TYPE_OF_KIND
TOPIC_OF_KIND: Final = registry.TOPIC_OF_KIND  # kind -> short topic name
KIND_NAMES: Final = registry.TOPIC_OF_KIND  # what the spool's counts call a kind
SHORT: Final = registry.SHORT
JOB: Final = KIND_OF_TYPE["cpn.job.v1"]  # job metering: the kind the spool never drops


class Record(NamedTuple):
    """One spooled event: its spool position, event time, kind, message key and value bytes."""

    seq: int
    time_ms: int
    kind: int
    key: bytes
    value: bytes


def to_ms(t: datetime) -> int:
    """Milliseconds since the epoch of an aware time."""
    return (t - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def trunc_ms(t: datetime) -> datetime:
    """`t` in UTC with its microseconds cut to milliseconds (what the wire carries)."""
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def event_id(event_type: str, subject: str | None, t: datetime) -> str:
    """`cap-<pool>-<ms>`, `pwr-<ms>`...: unique per DC and stable for one measurement."""
    middle = f"{subject}-" if subject else ""
    return f"{SHORT[event_type]}-{middle}{to_ms(t)}"


def job_event_id(job_id: str, seq: int) -> str:
    """`job-<job>-<seq>`: a job's events are numbered by their rising `seq`."""
    return f"job-{job_id}-{seq}"


def build(event_type: str, t: datetime, data: Strict, subject: str | None = None,
          ident: str | None = None) -> CloudEvent:
    """A CloudEvent dict at time `t` (cut to ms) with a stable id (given, or from type/subject/t)."""
    t = trunc_ms(t)
    return make_event(event_type, ident or event_id(event_type, subject, t), t, data)


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def serialise(event: CloudEvent) -> bytes:
    """Compact UTF-8 JSON: the exact bytes the spool keeps and Kafka receives."""
    return _ENCODER.encode(event).encode("utf-8")


def event_time(event: CloudEvent) -> datetime:
    return datetime.fromisoformat(str(event["time"]))


def to_record(event: CloudEvent) -> tuple[int, int, bytes, bytes]:
    """(kind, time_ms, key, value) of an event, ready to append to the spool."""
    kind = KIND_OF_TYPE[event["type"]]
    key = str(event["data"]["dc_id"]).encode("utf-8")
    return kind, to_ms(event_time(event)), key, serialise(event)


def registration_event(dc: DataCenter, t: datetime) -> CloudEvent:
    """The `cpn.dc.v1` event of a DC at time `t` (sent at start and daily)."""
    data = Registration(dc_id=dc.dc_id, name=dc.name, operator=dc.operator, province=dc.province,
                        hub=dc.hub, cluster=dc.cluster, lat=dc.lat, lon=dc.lon,
                        racks_total=dc.racks_total)
    return build("cpn.dc.v1", t, data)
