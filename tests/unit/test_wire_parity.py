"""Wire parity (SPEC §3, issue 13 item 5): integral floats are integers, job events are metered
for any model, and the published JSON Schema files accept exactly the documents `decode` accepts.

Excluded from the comparison, because a JSON Schema cannot express them (each file's `$comment`
says so too): the cross-field rules (`inconsistent`), the clock (`future_time`), the catalogue
(`unknown_device_model`), the message size (`too_large`), and a `time` whose day is not in its
month (2026-02-30: the pattern bounds days by 31, the calendar is checked when parsed). A
document `decode` rejects for one of the first three reasons passed the schema check first, so
it counts as accepted; calendar-invalid days are filtered out of the corpus.

The validator is `jsonschema`'s Draft 2020-12, with one adaptation: ECMA-262's `$` (what JSON
Schema patterns use) is the end of the input, Python's `$` also matches before a final newline;
the test reads a trailing `$` as `\\Z`, as an ECMA-262 engine would.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.events import TIME_PATTERN
from schemas.prices import PriceBook
from schemas.reasons import Reason, Reject
from schemas.registry import EVENT_TYPES
from streams.batch import Record, ledger_stage, process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "schemas" / "examples"
JSONSCHEMA = ROOT / "schemas" / "jsonschema"
CASES = ROOT / "tests" / "fixtures" / "cases" / "agent"  # copied from the shared real-world cases
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
KEY = b"gz-guian-01"
TYPES = sorted(EVENT_TYPES)
NOT_EXPRESSIBLE = {Reason.INCONSISTENT, Reason.FUTURE_TIME, Reason.UNKNOWN_DEVICE_MODEL}


def golden(event_type: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return obj


# --- integral floats and job models ------------------------------------------------------------


def test_c7_int_as_float_is_accepted_as_512() -> None:
    raw = (CASES / "c7-int-as-float.json").read_bytes()
    assert b'"devices_total":512.0' in raw
    event = decode(raw, now=NOW, key=KEY)
    assert not isinstance(event, Reject), event
    assert event.data.devices_total == 512 and type(event.data.devices_total) is int
    assert validator("cpn.capacity.v1").is_valid(json.loads(raw))


@pytest.mark.parametrize("text", ["512.0", "5.12e2", "512.000", "51200e-2"])
def test_integral_floats_are_those_integers(text: str) -> None:
    obj = golden("cpn.capacity.v1")
    raw = json.dumps(obj).replace('"devices_total": 512', f'"devices_total": {text}').encode()
    event = decode(raw, now=NOW, key=KEY)
    assert not isinstance(event, Reject), event
    assert event.data.devices_total == 512 and type(event.data.devices_total) is int


@pytest.mark.parametrize(("field", "text"), [("devices_total", "512.5"), ("devices_total", "5.125e2"),
                                             ("interval_s", "15.5"), ("devices_total", "true")])
def test_fractional_numbers_are_schema(field: str, text: str) -> None:
    obj = golden("cpn.capacity.v1")
    raw = re.sub(f'"{field}": [0-9]+', f'"{field}": {text}', json.dumps(obj)).encode()
    out = decode(raw, now=NOW, key=KEY)
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA and field in out.detail, out


def test_job_integers_as_floats_are_metered_like_integers() -> None:
    obj = golden("cpn.job.v1")
    obj["data"].update(devices=8.0, seq=3.0)
    event = decode(json.dumps(obj).encode(), now=NOW, key=KEY)
    assert not isinstance(event, Reject), event
    assert (event.data.devices, event.data.seq) == (8, 3)


def test_a_job_on_a_model_outside_the_catalogue_and_the_price_book_is_metered_at_zero() -> None:
    obj = golden("cpn.job.v1")
    obj["data"]["device_model"] = "acme-npu-9"
    value = json.dumps(obj).encode()
    batch = process([Record("cpn.jobs", 0, 0, KEY, value)], now=NOW, catalogue=load_catalogue())
    assert not batch.dead and len(batch.jobs) == 1
    ledger_stage(batch, {}, PriceBook([]), now=NOW)
    assert not batch.dead
    [entry] = batch.rows["ledger_entries"]
    assert entry["device_model"] == "acme-npu-9" and entry["priced"] == 0 and entry["amount_cny"] == 0
    assert entry["device_seconds"] == 1440  # every device-second is metered, at 0 CNY
    assert batch.unpriced[("gz-guian-01", "acme-npu-9")] == 1  # and reported as unpriced_usage


# --- JSON Schema parity ------------------------------------------------------------------------


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
        if not re.search(python, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


@cache
def validator(event_type: str) -> Any:
    schema = json.loads((JSONSCHEMA / f"{event_type}.json").read_text())
    Validator.check_schema(schema)
    return Validator(schema)


def schema_accepts(doc: Any) -> bool:
    event_type = doc.get("type") if isinstance(doc, dict) else None
    return isinstance(event_type, str) and event_type in EVENT_TYPES and validator(event_type).is_valid(doc)


def decode_accepts(raw: bytes) -> tuple[bool, Any]:
    out = decode(raw, now=NOW, key=KEY)
    return (not isinstance(out, Reject) or out.reason in NOT_EXPRESSIBLE), out


_CALENDAR = re.compile(TIME_PATTERN)


def calendar_invalid(doc: Any) -> bool:
    t = doc.get("time") if isinstance(doc, dict) else None
    if not isinstance(t, str) or not _CALENDAR.fullmatch(t):
        return False
    try:
        datetime.fromisoformat(t[:10])
    except ValueError:
        return True
    return False


def integers_around(low: int, high: int) -> st.SearchStrategy[Any]:
    edges = [low - 1, low, low + 1, high - 1, high, high + 1]
    ints = st.sampled_from(edges) | st.integers(low - 5, high + 5)
    return ints | ints.map(float) | st.floats(float(low) - 2, float(high) + 2) | st.sampled_from([0.5, -0.0])


text_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "gz-guian-01", "GZ", "a" * 63, "a" * 64, "x\n", "pool-a", "\x07", "\ufffe", "\U0001fffe",
                     "application/json", "APPLICATION/JSON; charset=UTF-8", "text/plain", "application/json;",
                     "https://cpn.example/s.json", "urn:x", "rel/path", "a b:c", "//cpn/dc/gz-guian-01",
                     "//cpn/dc/Bad", "1.0", "cpn.capacity.v1", "start", "end", "usage", "succeeded", "none",
                     "CN-GZ", "gz"]),
)
times = st.one_of(
    st.sampled_from(["2026-11-27T00:00:00Z", "2026-11-27T00:00:00", "2026-11-27 00:00:00z", "1969-12-31T23:59:59Z",
                     "1970-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "2026-11-27T24:00:00Z",
                     "2026-11-27T00:00:00.1234567891Z", "2026-11-27T00:00:00.123456789+08:00",
                     "2026-11-27T00:00:00+24:00", "2026-13-01T00:00:00Z", "2026-11-27T00:00:60Z",
                     "2026-11-27t00:00:00Z", "2026-11-27T00:00:00Z\n"]),
    st.from_regex(r"(19[6-9][0-9]|20[0-9]{2})-(0[0-9]|1[0-3])-([0-2][0-9]|3[0-2])[Tt ]"
                  r"([01][0-9]|2[0-4]):[0-6][0-9]:[0-6][0-9](\.[0-9]{1,10})?([Zz]|[+-][0-2][0-9]:[0-6][0-9])?",
                  fullmatch=True),
)
scalars = st.one_of(st.none(), st.booleans(), integers_around(0, 3600), integers_around(-(2**31), 2**31 - 1),
                    integers_around(0, 2**32 - 1), integers_around(0, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text_values,
                    st.sampled_from([1e12, 1e12 + 1, 1.0000001, 1.7976931348623157e308]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=4)
attribute_names = st.one_of(st.sampled_from(["subject", "dataschema", "datacontenttype", "traceparent", "Trace",
                                             "trace_id", "data_base64", "x" * 21, "9lives", ""]),
                            st.from_regex(r"[a-zA-Z0-9_]{1,8}", fullmatch=True))


def paths(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in obj.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out.extend(paths(v, (*prefix, k)))
    return out


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(golden(draw(st.sampled_from(TYPES))))
    if doc["type"] == "cpn.job.v1" and draw(st.booleans()):
        doc["data"].update(phase="end", status="succeeded")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "set", "delete", "attribute", "time"]))
        if kind == "attribute":
            doc[draw(attribute_names)] = draw(scalars | json_values)
            continue
        if kind == "time":
            doc["time"] = draw(times)
            continue
        where = draw(st.sampled_from(paths(doc)))
        node = doc
        for p in where[:-1]:
            node = node[p]
            if not isinstance(node, dict):
                break
        else:
            if kind == "delete":
                node.pop(where[-1], None)
            else:
                node[where[-1]] = draw(scalars | json_values)
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_json_schema_files_and_decode_accept_the_same_documents(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    parsed = json.loads(raw)  # what a validator in another language would see
    if calendar_invalid(parsed):
        return  # excluded: the day of the month is checked against the calendar, not the pattern
    by_decode, outcome = decode_accepts(raw)
    by_schema = schema_accepts(parsed)
    note(f"decode: {outcome}")
    assert by_decode == by_schema, (doc, outcome)


def test_the_corpus_covers_both_outcomes() -> None:
    """The generated corpus is not trivially one-sided: both accepted and rejected documents occur."""
    seen: set[bool] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(documents())
    def sample(doc: dict[str, Any]) -> None:
        seen.add(decode_accepts(json.dumps(doc).encode())[0])

    sample()
    assert seen == {True, False}


@pytest.mark.parametrize("event_type", TYPES)
def test_golden_examples_and_extensions_are_valid_for_both(event_type: str) -> None:
    doc = {**golden(event_type), "traceparent": "00-ab-01", "subject": "pool-a",
           "dataschema": f"https://cpn.example/schemas/{event_type}.json"}
    assert schema_accepts(doc) and decode_accepts(json.dumps(doc).encode())[0]
    del doc["datacontenttype"]
    assert schema_accepts(doc) and decode_accepts(json.dumps(doc).encode())[0]
