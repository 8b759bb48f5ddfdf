"""CloudEvents conformance of decode (SPEC §3, issue 20): optional and extension attributes,
both content modes of the Kafka binding, attribute naming and type rules, the size limit."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
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
KEY = b"gz-guian-01"
TYPES = sorted(EVENT_TYPES)
CORE = ("specversion", "id", "source", "type", "time", "data")
STRUCTURED = [("content-type", b"application/cloudevents+json")]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def golden(event_type: str = "cpn.capacity.v1") -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    return obj


def structured(obj: dict[str, Any], headers: list[tuple[str, bytes]] | None = None) -> Any:
    return decode(json.dumps(obj).encode(), now=NOW, key=KEY, headers=STRUCTURED if headers is None else headers)


def as_binary(obj: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The binary-mode message of a structured event (Kafka binding §3.2)."""
    headers = []
    for name, value in obj.items():
        if name == "data" or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if name == "datacontenttype":
            headers.append(("content-type", text.encode()))
        else:
            headers.append((f"ce_{name}", text.encode()))
    return json.dumps(obj["data"]).encode(), headers


def binary(obj: dict[str, Any]) -> Any:
    value, headers = as_binary(obj)
    return decode(value, now=NOW, key=KEY, headers=headers)


def core(event: Any) -> dict[str, Any]:
    """What an event means to Surplus: everything but the ignored attributes."""
    assert not isinstance(event, Reject), event
    dumped: dict[str, Any] = event.model_dump(include=set(CORE))
    return dumped


@pytest.fixture(params=TYPES)
def event_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- the four inputs of issue 20, in both modes ------------------------------------------------


def with_attribute(event_type: str, name: str, value: Any) -> dict[str, Any]:
    obj = golden(event_type)
    obj[name] = value
    return obj


@pytest.mark.parametrize("decoder", [structured, binary], ids=["structured", "binary"])
def test_subject_is_accepted_and_ignored(event_type: str, decoder: Any) -> None:
    plain = core(decoder(golden(event_type)))
    event = decoder(with_attribute(event_type, "subject", "pool-a"))
    assert core(event) == plain and event.subject == "pool-a"


@pytest.mark.parametrize("decoder", [structured, binary], ids=["structured", "binary"])
def test_dataschema_is_accepted_and_ignored(event_type: str, decoder: Any) -> None:
    url = f"https://cpn.example/schemas/{event_type}.json"
    plain = core(decoder(golden(event_type)))
    assert core(decoder(with_attribute(event_type, "dataschema", url))) == plain


@pytest.mark.parametrize("decoder", [structured, binary], ids=["structured", "binary"])
def test_traceparent_extension_is_accepted_and_ignored(event_type: str, decoder: Any) -> None:
    plain = core(decoder(golden(event_type)))
    event = decoder(with_attribute(event_type, "traceparent", TRACEPARENT))
    assert core(event) == plain
    assert event.model_extra == {"traceparent": TRACEPARENT}


@pytest.mark.parametrize("decoder", [structured, binary], ids=["structured", "binary"])
def test_no_datacontenttype_means_json(event_type: str, decoder: Any) -> None:
    plain = core(decoder(golden(event_type)))
    obj = golden(event_type)
    del obj["datacontenttype"]
    assert core(decoder(obj)) == plain
    obj["datacontenttype"] = None  # JSON format §2.2: null is unset
    assert core(decoder(obj)) == plain


@pytest.mark.parametrize("value", ["application/json", "Application/JSON", "application/json; charset=utf-8",
                                   'application/json;charset="UTF-8"'])
def test_datacontenttype_is_json_in_any_case(value: str) -> None:
    plain = core(structured(golden()))
    assert core(structured(with_attribute("cpn.capacity.v1", "datacontenttype", value))) == plain
    assert core(binary(with_attribute("cpn.capacity.v1", "datacontenttype", value))) == plain


@pytest.mark.parametrize("value", ["text/plain", "application/xml", "application/json; charset=latin-1", ""])
def test_other_datacontenttypes_are_schema(value: str) -> None:
    for decoder in (structured, binary):
        out = decoder(with_attribute("cpn.capacity.v1", "datacontenttype", value))
        assert isinstance(out, Reject) and out.reason is Reason.SCHEMA, (decoder, out)


# --- extension names and values: a property over both modes ------------------------------------

names = st.from_regex(r"[a-z0-9]{1,24}", fullmatch=True).filter(
    lambda n: n not in {"data", *CORE, "datacontenttype", "dataschema", "subject"})
ce_strings = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\x9f\x80"),
                     max_size=40).filter(lambda s: not any(0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE
                                                           for c in s))
values = st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | ce_strings


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TYPES), st.dictionaries(names, values, max_size=5))
def test_any_extension_attributes_are_accepted_and_ignored(event_type: str, extensions: dict[str, Any]) -> None:
    plain = core(structured(golden(event_type)))
    obj = {**golden(event_type), **extensions}
    event = structured(obj)
    assert core(event) == plain
    assert event.model_extra == extensions
    # binary mode carries every value as header text: the same event
    assert core(binary({**golden(event_type), **{k: v for k, v in extensions.items() if v is not None}})) == plain


bad_names = st.one_of(
    st.from_regex(r"[a-z0-9]*[A-Z_.\-:][a-z0-9]*", fullmatch=True),
    st.text(min_size=1, max_size=8).filter(lambda n: any(not (c.isascii() and (c.islower() or c.isdigit()))
                                                         for c in n)),
)


@settings(max_examples=150, deadline=None)
@given(bad_names)
def test_an_attribute_name_that_breaks_the_naming_rules_is_schema(name: str) -> None:
    obj = with_attribute("cpn.capacity.v1", name, "x")
    out = structured(obj)
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA, out
    out = binary(obj)
    assert isinstance(out, Reject) and out.reason in (Reason.SCHEMA, Reason.UNDECODABLE), out


@pytest.mark.parametrize("value", [{"a": 1}, [1], 1.5, 2**31, -(2**31) - 1, "bell\x07", "\x85", "\ufdd0",
                                   "\U0010ffff"])
def test_an_extension_value_outside_the_type_system_is_schema(value: Any) -> None:
    out = structured(with_attribute("cpn.capacity.v1", "ext1", value))
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA, out
    assert "\x00" not in out.detail and len(out.detail) <= 200


def test_integral_extension_values_are_integers() -> None:
    event = structured(with_attribute("cpn.capacity.v1", "attempt", 3.0))
    assert event.model_extra == {"attempt": 3}


# --- the Kafka binding -------------------------------------------------------------------------


def test_structured_mode_is_chosen_by_content_type_and_ignores_ce_headers() -> None:
    obj = golden()
    for content_type in (b"application/cloudevents+json", b"Application/CloudEvents+JSON; charset=UTF-8"):
        headers = [("content-type", content_type), ("ce_source", b"//cpn/dc/other"), ("ce_Bad", b"x")]
        assert core(structured(obj, headers)) == core(structured(obj))


def test_no_headers_is_structured() -> None:
    assert core(structured(golden(), [])) == core(structured(golden()))


@pytest.mark.parametrize("content_type", [b"application/cloudevents+avro", b"application/cloudevents-batch+json"])
def test_other_event_formats_are_undecodable(content_type: bytes) -> None:
    out = structured(golden(), [("content-type", content_type)])
    assert isinstance(out, Reject) and out.reason is Reason.UNDECODABLE and "not supported" in out.detail


def test_binary_and_structured_give_the_same_event_and_identity(event_type: str) -> None:
    a, b = structured(golden(event_type)), binary(golden(event_type))
    assert core(a) == core(b)
    assert (a.source, a.id) == (b.source, b.id)


def mutations() -> list[tuple[str, Any]]:
    return [("id", ""), ("specversion", "0.3"), ("type", "cpn.unknown.v1"), ("time", "2026-11-27T00:00:00"),
            ("time", "2030-01-01T00:00:00Z"), ("source", "//cpn/dc/other-dc"), ("source", "nope"),
            ("subject", ""), ("dataschema", "relative/path"), ("Bad", "x"), ("data.devices_online", 600),
            ("data.busy_ratio", 3), ("data.devices_total", 512.5), ("data.device_model", "acme-x9")]


@pytest.mark.parametrize(("path", "value"), mutations())
def test_both_modes_give_the_same_reason(path: str, value: Any) -> None:
    obj = copy.deepcopy(golden())
    node, name = (obj["data"], path[5:]) if path.startswith("data.") else (obj, path)
    node[name] = value
    a, b = structured(obj), binary(obj)
    assert isinstance(a, Reject) and isinstance(b, Reject), (a, b)
    assert a.reason is b.reason, (a, b)


def test_binary_attribute_given_twice_is_schema() -> None:
    value, headers = as_binary(golden())
    out = decode(value, now=NOW, key=KEY, headers=[*headers, ("ce_id", b"other")])
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA and "twice" in out.detail
    out = decode(value, now=NOW, key=KEY, headers=[*headers, ("ce_datacontenttype", b"application/json")])
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA


def test_binary_ce_data_header_is_schema() -> None:
    value, headers = as_binary(golden())
    out = decode(value, now=NOW, key=KEY, headers=[*headers, ("ce_data", b"{}")])
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA


def test_binary_without_specversion_is_schema_and_without_type_unknown_type() -> None:
    value, headers = as_binary(golden())
    out = decode(value, now=NOW, key=KEY, headers=[h for h in headers if h[0] != "ce_specversion"])
    assert isinstance(out, Reject) and out.reason is Reason.SCHEMA
    out = decode(value, now=NOW, key=KEY, headers=[h for h in headers if h[0] != "ce_type"])
    assert isinstance(out, Reject) and out.reason is Reason.UNKNOWN_TYPE


@pytest.mark.parametrize("value", [b"\xff\xfe", b"not json", b"[1]", b""])
def test_binary_value_that_is_not_a_json_object_is_undecodable(value: bytes) -> None:
    _, headers = as_binary(golden())
    out = decode(value, now=NOW, key=KEY, headers=headers)
    assert isinstance(out, Reject) and out.reason is Reason.UNDECODABLE


def test_binary_header_that_is_not_utf8_is_undecodable() -> None:
    value, headers = as_binary(golden())
    out = decode(value, now=NOW, key=KEY, headers=[*headers, ("ce_note", b"\xff")])
    assert isinstance(out, Reject) and out.reason is Reason.UNDECODABLE


def test_the_size_limit_counts_value_and_headers() -> None:
    raw = json.dumps(golden()).encode()
    padding = MAX_BYTES - len(raw) - len("x-pad")
    assert not isinstance(structured(golden(), [("x-pad", b"p" * padding)]), Reject)
    out = structured(golden(), [("x-pad", b"p" * (padding + 1))])
    assert isinstance(out, Reject) and out.reason is Reason.TOO_LARGE
    value, headers = as_binary(golden())
    headers.append(("ce_pad", b"p" * MAX_BYTES))
    out = decode(value, now=NOW, key=KEY, headers=headers)
    assert isinstance(out, Reject) and out.reason is Reason.TOO_LARGE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=40)), max_size=6),
       st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_headers(headers: list[tuple[str, bytes | None]], value: bytes) -> None:
    out = decode(value, now=NOW, key=KEY, headers=headers)
    assert isinstance(out, Reject) or out.type in EVENT_TYPES
