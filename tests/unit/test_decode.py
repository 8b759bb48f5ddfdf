"""Every validation rule and reject reason of SPEC §3, on the golden examples and their mutations."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import MAX_BYTES, decode
from schemas.reasons import Reason, Reject
from schemas.registry import EVENT_TYPES

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
TYPES = sorted(EVENT_TYPES)


def golden(event_type: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{event_type}.json").read_text())


def run(obj: Any, *, key: str | None = "gz-guian-01", now: datetime = NOW) -> Any:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return decode(raw, now=now, key=key.encode() if key is not None else None)


def reason_of(obj: Any, **kw: Any) -> Reason | None:
    out = run(obj, **kw)
    return out.reason if isinstance(out, Reject) else None


@pytest.mark.parametrize("event_type", TYPES)
def test_golden_examples_are_accepted_and_round_trip(event_type: str) -> None:
    obj = golden(event_type)
    event = run(obj)
    assert not isinstance(event, Reject), event
    assert event.type == event_type
    again = json.loads(event.model_dump_json(exclude_none=event_type != "cpn.dc.v1"))
    assert again["data"] == obj["data"]
    assert again["id"] == obj["id"] and again["source"] == obj["source"]
    assert datetime.fromisoformat(again["time"]) == datetime.fromisoformat(obj["time"])


def test_too_large_comes_first() -> None:
    obj = golden("cpn.capacity.v1")
    raw = json.dumps(obj).encode() + b" " * MAX_BYTES
    assert reason_of(raw) is Reason.TOO_LARGE
    assert reason_of(b"\xff" * (MAX_BYTES + 1)) is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00", b"not json", b"[1, 2, 3]", b'"a string"', b"42", b"null", b"", b'{"a": NaN}',
     b"[" * 60_000],
)
def test_undecodable(raw: bytes) -> None:
    assert reason_of(raw) is Reason.UNDECODABLE


@pytest.mark.parametrize("bad_type", ["cpn.unknown.v1", "cpn.capacity.v2", 7, None])
def test_unknown_type(bad_type: Any) -> None:
    obj = golden("cpn.capacity.v1")
    obj["type"] = bad_type
    assert reason_of(obj) is Reason.UNKNOWN_TYPE


def test_missing_type_is_unknown_type() -> None:
    obj = golden("cpn.capacity.v1")
    del obj["type"]
    assert reason_of(obj) is Reason.UNKNOWN_TYPE


def mutate(event_type: str, path: str, value: Any = ..., delete: bool = False) -> dict[str, Any]:
    obj = copy.deepcopy(golden(event_type))
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return obj


SCHEMA_CASES = [
    ("cpn.capacity.v1", "data.extra_field", 1, False),
    ("cpn.capacity.v1", "Extension", "x", False),  # CloudEvents names are lowercase a-z0-9
    ("cpn.capacity.v1", "trace_parent", "x", False),
    ("cpn.capacity.v1", "data_base64", "eyJ4IjoxfQ==", False),  # data must be JSON
    ("cpn.capacity.v1", "traceparent", {"nested": 1}, False),  # not a CloudEvents type
    ("cpn.capacity.v1", "sampled", 1.5, False),
    ("cpn.capacity.v1", "sampled", 2**31, False),  # Integer is 32-bit
    ("cpn.capacity.v1", "note", "a\u0007b", False),  # a String has no control characters
    ("cpn.capacity.v1", "note", "\ufffe", False),  # nor noncharacters
    ("cpn.capacity.v1", "subject", "", False),
    ("cpn.capacity.v1", "subject", 5, False),
    ("cpn.capacity.v1", "dataschema", "", False),
    ("cpn.capacity.v1", "dataschema", "no-scheme/path", False),
    ("cpn.capacity.v1", "id", "cap\n1", False),
    ("cpn.capacity.v1", "data.devices_total", None, True),
    ("cpn.capacity.v1", "data.devices_total", "512", False),
    ("cpn.capacity.v1", "data.devices_total", 512.5, False),
    ("cpn.capacity.v1", "data.interval_s", 15.000001, False),
    ("cpn.capacity.v1", "data.devices_total", True, False),
    ("cpn.capacity.v1", "data.devices_allocated", -1, False),
    ("cpn.capacity.v1", "data.busy_ratio", 1.01, False),
    ("cpn.capacity.v1", "data.interval_s", 0, False),
    ("cpn.capacity.v1", "data.interval_s", 3601, False),
    ("cpn.capacity.v1", "data.pool_id", "Bad_Upper", False),
    ("cpn.capacity.v1", "data.pool_id", "a" * 64, False),
    ("cpn.capacity.v1", "data.dc_id", "gz-guian-01\n", False),
    ("cpn.capacity.v1", "time", "2026-11-27T00:00:00", False),
    ("cpn.capacity.v1", "time", "yesterday", False),
    ("cpn.capacity.v1", "time", 1795737600, False),
    ("cpn.capacity.v1", "specversion", "0.3", False),
    ("cpn.capacity.v1", "id", "x" * 129, False),
    ("cpn.capacity.v1", "id", "", False),
    ("cpn.capacity.v1", "source", "//cpn/dc/", False),
    ("cpn.capacity.v1", "datacontenttype", "text/plain", False),
    ("cpn.capacity.v1", "data", None, True),
    ("cpn.power.v1", "data.it_energy_kwh", -0.1, False),
    ("cpn.power.v1", "data.grid_renewable_share", 1.5, False),
    ("cpn.power.v1", "data.sources_kwh.nuclear", 1.0, False),
    ("cpn.job.v1", "data.phase", "pause", False),
    ("cpn.job.v1", "data.status", "succeeded", False),
    ("cpn.job.v1", "data.energy_kwh_total", -1, False),
    ("cpn.dc.v1", "data.hub", "xx", False),
    ("cpn.dc.v1", "data.province", "Guizhou", False),
    ("cpn.dc.v1", "data.cluster", None, True),
    ("cpn.heartbeat.v1", "data.spool_backlog_events", -5, False),
]


@pytest.mark.parametrize(("event_type", "path", "value", "delete"), SCHEMA_CASES)
def test_schema(event_type: str, path: str, value: Any, delete: bool) -> None:
    obj = mutate(event_type, path, value, delete)
    out = run(obj)
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA, out
    assert len(out.detail) <= 200


def test_schema_rejects_infinity_and_nan_numbers_even_if_json_allowed_them() -> None:
    raw = json.dumps(golden("cpn.capacity.v1")).replace('"busy_ratio": 0.71', '"busy_ratio": Infinity')
    assert reason_of(raw.encode()) is Reason.UNDECODABLE


def test_end_needs_status() -> None:
    obj = mutate("cpn.job.v1", "data.phase", "end")
    assert reason_of(obj) is Reason.SCHEMA
    obj["data"]["status"] = "failed"
    assert reason_of(obj) is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.devices_allocated", 505),  # > online
        ("data.devices_online", 513),  # > total
    ],
)
def test_inconsistent_capacity(path: str, value: int) -> None:
    assert reason_of(mutate("cpn.capacity.v1", path, value)) is Reason.INCONSISTENT


def test_inconsistent_device_bound() -> None:
    obj = golden("cpn.capacity.v1")
    obj["data"].update(devices_total=10_000_001, devices_online=10, devices_allocated=1)
    assert reason_of(obj) is Reason.INCONSISTENT
    obj["data"]["devices_total"] = 10_000_000
    assert reason_of(obj) is None


def test_inconsistent_power() -> None:
    assert reason_of(mutate("cpn.power.v1", "data.facility_energy_kwh", 400.0)) is Reason.INCONSISTENT
    obj = mutate("cpn.power.v1", "data.sources_kwh.grid", 353.5 + 0.6)  # 0.12 % off
    assert reason_of(obj) is Reason.INCONSISTENT
    obj = mutate("cpn.power.v1", "data.sources_kwh.grid", 353.5 + 0.4)  # 0.08 % off: within
    assert reason_of(obj) is None


def test_inconsistent_dc_identity() -> None:
    obj = mutate("cpn.capacity.v1", "source", "//cpn/dc/other-dc")
    assert reason_of(obj) is Reason.INCONSISTENT
    assert reason_of(golden("cpn.capacity.v1"), key="other-dc") is Reason.INCONSISTENT
    assert reason_of(golden("cpn.capacity.v1"), key=None) is Reason.INCONSISTENT


def test_future_time() -> None:
    obj = golden("cpn.capacity.v1")
    assert reason_of(obj, now=datetime(2026, 11, 26, 23, 54, 59, tzinfo=UTC)) is Reason.FUTURE_TIME
    assert reason_of(obj, now=datetime(2026, 11, 26, 23, 55, 0, tzinfo=UTC)) is None
    obj["time"] = "2026-11-27T08:06:00+08:00"  # 00:06Z, 60 s ahead of NOW: fine
    assert reason_of(obj) is None


def test_unknown_device_model_unless_peak_given() -> None:
    obj = mutate("cpn.capacity.v1", "data.device_model", "acme-x1")
    assert reason_of(obj) is Reason.UNKNOWN_DEVICE_MODEL
    obj["data"]["peak_tflops_per_device"] = {"fp16": 100.0, "fp32": 50.0, "fp64": None}
    assert reason_of(obj) is None



def test_job_events_are_never_rejected_for_their_model() -> None:
    # metering is kept for any model (SPEC §3): priced from the price book, else at 0, unpriced
    for model in ("acme-x1", "nvidia-h100-sxm5-80gb"):
        event = run(mutate("cpn.job.v1", "data.device_model", model))
        assert not isinstance(event, Reject), event
        assert event.data.device_model == model


def test_check_order_first_failure_names_the_reason() -> None:
    # schema and inconsistent both broken: schema is checked first
    obj = mutate("cpn.capacity.v1", "data.busy_ratio", 2.0)
    obj["data"]["devices_allocated"] = 9999
    assert reason_of(obj) is Reason.SCHEMA
    # inconsistent and future both broken: inconsistent first
    obj = mutate("cpn.capacity.v1", "data.devices_allocated", 9999)
    obj["time"] = (NOW + timedelta(hours=1)).isoformat()
    assert reason_of(obj) is Reason.INCONSISTENT
    # future and unknown device: future first
    obj = mutate("cpn.capacity.v1", "data.device_model", "acme-x1")
    obj["time"] = (NOW + timedelta(hours=1)).isoformat()
    assert reason_of(obj) is Reason.FUTURE_TIME


def test_verifier_runs_after_undecodable_and_before_type() -> None:
    calls: list[bytes] = []

    def deny(raw: bytes, headers: Any, obj: Any) -> str:
        calls.append(raw)
        return "no signature"

    out = decode(b"junk", now=NOW, verifier=deny)
    assert isinstance(out, Reject) and out.reason is Reason.UNDECODABLE and not calls
    obj = golden("cpn.capacity.v1")
    obj["type"] = "nope"
    out = decode(json.dumps(obj).encode(), now=NOW, verifier=deny)
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    out = decode(raw, now=NOW, key=b"x")
    assert isinstance(out, Reject) or out.type in EVENT_TYPES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TYPES), st.sampled_from(["data", "envelope"]), st.text(max_size=12), json_values)
def test_decode_never_raises_on_mutated_events(event_type: str, where: str, key: str, value: Any) -> None:
    obj = golden(event_type)
    (obj["data"] if where == "data" else obj)[key] = value
    out = decode(json.dumps(obj).encode(), now=NOW, key=b"gz-guian-01")
    assert isinstance(out, Reject) or out.type == event_type
