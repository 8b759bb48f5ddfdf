"""The msgspec fast path (schemas/fastdecode.py, `decode_fast`) decides exactly as the pydantic
models: whatever it accepts, `decode` accepts with the same row; whatever `decode` rejects, it
refuses (and `decode` then names the reason). Over the golden examples, the shared real-world
wire case, the schema cases of test_decode, generated documents (the wire-parity strategy),
byte-level mutations, and whole batches through `process` with and without the fast path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import registry
from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.fastdecode import AGENT_HEADERS, decode_fast
from schemas.reasons import Reject
from streams import batch as batch_module
from streams.batch import Record, epoch_ms, process
from tests.unit.test_decode import SCHEMA_CASES, mutate
from tests.unit.test_wire_parity import documents

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "schemas" / "examples"
CASES = ROOT / "tests" / "fixtures" / "cases" / "agent"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
KEY = b"gz-guian-01"
CATALOGUE = load_catalogue()
FAST_TYPES = ("cpn.capacity.v1", "cpn.power.v1", "cpn.heartbeat.v1")
RECEIVED = epoch_ms(NOW)


def golden(event_type: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return obj


def typed_row(event: Any) -> list[tuple[type, Any]]:
    row = registry.TYPES[event.type].build_row(event, CATALOGUE, RECEIVED)
    return [(type(v), v) for v in row]


def agree(raw: bytes, key: bytes | None = KEY, headers: tuple[tuple[str, bytes], ...] = (),
          now: datetime = NOW) -> tuple[Any, Any]:
    """Assert the fast path agrees with decode on one message; return (fast, full)."""
    fast = decode_fast(raw, key, headers, now, CATALOGUE)
    full = decode(raw, now=now, key=key, headers=headers, catalogue=CATALOGUE)
    if fast is not None:
        assert not isinstance(full, Reject), (raw, full)
        assert full.type == fast.type
        assert typed_row(fast) == typed_row(full)  # same values, same Python types
    return fast, full


@pytest.mark.parametrize("event_type", FAST_TYPES)
@pytest.mark.parametrize("headers", [(), AGENT_HEADERS])
def test_the_golden_examples_take_the_fast_path(event_type: str, headers: Any) -> None:
    doc = golden(event_type)
    fast, _ = agree(json.dumps(doc).encode(), headers=headers)
    assert fast is not None
    del doc["datacontenttype"]
    assert agree(json.dumps(doc).encode(), headers=headers)[0] is not None


@pytest.mark.parametrize("event_type", ["cpn.dc.v1", "cpn.job.v1"])
def test_other_types_take_the_full_path(event_type: str) -> None:
    fast, full = agree(json.dumps(golden(event_type)).encode())
    assert fast is None and not isinstance(full, Reject)


def test_the_real_world_int_as_float_case_takes_the_full_path_and_is_accepted() -> None:
    fast, full = agree((CASES / "c7-int-as-float.json").read_bytes())
    assert fast is None and not isinstance(full, Reject)


@pytest.mark.parametrize(("event_type", "path", "value", "delete"), SCHEMA_CASES)
def test_every_schema_case_is_refused_by_the_fast_path(event_type: str, path: str, value: Any,
                                                       delete: bool) -> None:
    fast, full = agree(json.dumps(mutate(event_type, path, value, delete)).encode())
    assert isinstance(full, Reject) and fast is None


@pytest.mark.parametrize("change", [
    {"key": b"other-dc"}, {"key": None}, {"key": b"gz-guian-01\xff"},
    {"now": NOW - timedelta(minutes=20)},  # the event is then 900 s ahead
    {"headers": (("content-type", b"application/cloudevents+avro"),)},
    {"headers": (("ce_id", b"x"),)},
])
def test_the_message_and_the_clock_count_as_in_decode(change: dict[str, Any]) -> None:
    raw = json.dumps(golden("cpn.capacity.v1")).encode()
    fast, full = agree(raw, **change)
    assert fast is None and (isinstance(full, Reject) or change.get("headers"))


@pytest.mark.parametrize("text", [
    '"devices_online": 600',  # more online than total: inconsistent
    '"dc_id": "gz-guian-02"',  # not the source's DC
    '"device_model": "acme-npu-1"',  # not in the catalogue, no peak given
    '"time": "2026-02-30T00:00:00Z"',  # not in the calendar
    '"time": "2026-11-27T00:00:00"',  # no zone
    '"time": "2026-11-27T00:00:00Z\\n"',
    '"dc_id": "gz-guian-01\\n"',  # `$` before a final newline is not the end
    '"devices_total": 9223372036854775808',
    '"busy_ratio": 1e400',
])
def test_rules_beyond_the_types_are_decode_s(text: str) -> None:
    field = text.split(":")[0]
    doc = json.dumps(golden("cpn.capacity.v1"))
    start = doc.index(field)
    end = doc.index(",", start) if doc.find(",", start) != -1 else doc.index("}", start)
    raw = (doc[:start] + text + doc[end:]).encode()
    fast, full = agree(raw)
    assert fast is None and isinstance(full, Reject)


def test_peaks_given_in_the_event_are_used_alike() -> None:
    doc = golden("cpn.capacity.v1")
    doc["data"].update(device_model="acme-npu-1", peak_tflops_per_device={"fp16": 200, "fp32": 50.5})
    fast, _ = agree(json.dumps(doc).encode())
    assert fast is not None and typed_row(fast)[10:13] == [(float, 200.0), (float, 50.5), (float, 0.0)]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.sampled_from([KEY, b"other", None]), st.sampled_from([(), AGENT_HEADERS]))
def test_generated_documents_agree(doc: dict[str, Any], key: bytes | None, headers: Any) -> None:
    agree(json.dumps(doc).encode(), key=key, headers=headers)


_BYTES = [b'"', b",", b"}", b"{", b"0", b"1", b".", b"e", b"-", b" ", b"\\", b"\\u0000", b"null", b"1.0",
          b"\xff", b"\n", b"Z", b"a", b"[]", b"1e400"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FAST_TYPES), st.data())
@example("cpn.capacity.v1", None)
def test_byte_level_mutations_agree(event_type: str, data: Any) -> None:
    raw = bytearray(json.dumps(golden(event_type), separators=(",", ":")).encode())
    for _ in range(data.draw(st.integers(1, 3)) if data is not None else 0):
        at = data.draw(st.integers(0, len(raw)))
        cut = data.draw(st.integers(0, 3))
        raw[at:at + cut] = data.draw(st.sampled_from(_BYTES))
    agree(bytes(raw))


def test_a_batch_is_the_same_with_and_without_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    records = []
    for i, event_type in enumerate([*FAST_TYPES, *FAST_TYPES, "cpn.dc.v1", "cpn.job.v1"]):
        doc = golden(event_type)
        doc["id"] = f"e-{i}"
        records.append(Record("t", 0, i, KEY, json.dumps(doc).encode(), AGENT_HEADERS if i % 2 else ()))
    bad = golden("cpn.capacity.v1")
    bad["data"]["devices_online"] = 9999
    records.append(Record("t", 0, 99, KEY, json.dumps(bad).encode()))
    with_fast = process(records, now=NOW, catalogue=CATALOGUE)
    monkeypatch.setattr(batch_module, "decode_fast", lambda *_a: None)
    without = process(records, now=NOW, catalogue=CATALOGUE)
    assert with_fast.tuples == without.tuples and with_fast.accepted == without.accepted
    assert with_fast.rejected == without.rejected and sum(with_fast.rejected.values()) == 1
    assert [(r.position, e.type) for r, e in with_fast.jobs] == [(r.position, e.type) for r, e in without.jobs]
