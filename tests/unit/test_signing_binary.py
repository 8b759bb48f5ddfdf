"""Binary-mode signatures (SPEC §3, issue 20): the canonical form over every `ce_` header and the
value; a spoofed header fails as `bad_signature` when signing is on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import decode
from schemas.reasons import Reason, Reject
from schemas.signing import KeyRegistry, SigningKey, binary_signing_input, sign, sign_binary
from streams.signing import make_verifier

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
SECRET = bytes(range(32))
KEY = SigningKey("gz-guian-01-2026a", "gz-guian-01", "hmac-sha256", SECRET)
ED_KEY = SigningKey("gz-guian-01-ed", "gz-guian-01", "ed25519", bytes(range(1, 33)))
REGISTRY = KeyRegistry.from_toml(f"""
[[key]]
key_id = "gz-guian-01-2026a"
dc_id = "gz-guian-01"
secret = "{SECRET.hex()}"

[[key]]
key_id = "gz-guian-01-ed"
dc_id = "gz-guian-01"
alg = "ed25519"
public_key = "{ED_KEY.public_key().hex()}"
""")
VERIFIER = make_verifier(REGISTRY, clock=lambda: NOW)


def binary_message(key: SigningKey = KEY) -> tuple[bytes, list[tuple[str, bytes]]]:
    obj = json.loads((EXAMPLES / "cpn.capacity.v1.json").read_text())
    headers = [(f"ce_{n}", str(v).encode()) for n, v in obj.items() if n not in ("data", "datacontenttype")]
    headers += [("content-type", b"application/json"), ("ce_traceparent", b"00-0af7-01")]
    value = json.dumps(obj["data"]).encode()
    return value, [*headers, sign_binary(headers, value, key)]


def run(value: bytes, headers: list[tuple[str, bytes]]) -> Any:
    return decode(value, now=NOW, key=b"gz-guian-01", headers=headers, verifier=VERIFIER)


def replaced(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(n, value if n == name else v) for n, v in headers]


@pytest.mark.parametrize("key", [KEY, ED_KEY], ids=["hmac", "ed25519"])
def test_a_signed_binary_event_is_accepted(key: SigningKey) -> None:
    value, headers = binary_message(key)
    event = run(value, headers)
    assert not isinstance(event, Reject), event
    assert event.data.dc_id == "gz-guian-01"


@pytest.mark.parametrize(("name", "spoof"), [
    ("ce_source", b"//cpn/dc/bj-01"),
    ("ce_time", b"2026-11-26T23:00:00Z"),
    ("ce_time", b"2026-11-27T00:00:00.000Z"),  # the same instant, other bytes: still not signed
    ("ce_id", b"cap-h100-a-0"),
    ("ce_traceparent", b"00-ffff-01"),
    ("content-type", b"application/json; charset=utf-8"),
])
def test_a_tampered_header_is_bad_signature(name: str, spoof: bytes) -> None:
    value, headers = binary_message()
    out = run(value, replaced(headers, name, spoof))
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE, out


def test_an_added_or_removed_ce_header_is_bad_signature() -> None:
    value, headers = binary_message()
    out = run(value, [*headers, ("ce_subject", b"pool-a")])
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE
    out = run(value, [h for h in headers if h[0] != "ce_traceparent"])
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


def test_a_tampered_value_is_bad_signature() -> None:
    value, headers = binary_message()
    out = run(value.replace(b"380", b"381"), headers)
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


def test_other_headers_and_order_are_not_covered() -> None:
    value, headers = binary_message()
    assert not isinstance(run(value, [("x-trace", b"anything"), *reversed(headers)]), Reject)


def test_unsigned_binary_event_is_bad_signature() -> None:
    value, headers = binary_message()
    out = run(value, headers[:-1])
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


def test_a_structured_signature_does_not_verify_a_binary_message() -> None:
    value, headers = binary_message()
    out = run(value, [*headers[:-1], sign(value, KEY)])  # signs the value only
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


def test_the_canonical_form_is_the_documented_one() -> None:
    headers = [("content-type", b"application/json"), ("ce_specversion", b"1.0"), ("ce_id", b"a1"),
               ("x-other", b"not covered")]
    assert binary_signing_input(headers, b'{"dc_id":"x"}') == (
        b'cloudevents-kafka-binary/1\nce_id:a1\nce_specversion:1.0\ncontent-type:application/json\n\n'
        b'{"dc_id":"x"}')


@pytest.mark.parametrize("headers", [
    [("ce_id", b"a\nce_type:x")],  # a line break in a value would make the form ambiguous
    [("ce_id", b"a"), ("ce_id", b"b")],
    [("content-type", b"application/json"), ("Content-Type", b"application/json")],
    [("ce_a:b", b"c")],
])
def test_headers_that_cannot_be_signed_are_refused(headers: list[tuple[str, bytes]]) -> None:
    assert isinstance(binary_signing_input(headers, b"{}"), str)
    value, good = binary_message()
    out = run(value, [*good, *headers])
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


header_lists = st.lists(st.tuples(st.from_regex(r"ce_[a-z0-9]{1,6}", fullmatch=True),
                                  st.binary(max_size=12).filter(lambda b: b"\n" not in b)),
                        max_size=5, unique_by=lambda h: h[0])


@settings(max_examples=200, deadline=None)
@given(header_lists, header_lists, st.binary(max_size=20), st.binary(max_size=20))
def test_distinct_messages_have_distinct_signing_inputs(a: list[Any], b: list[Any], va: bytes, vb: bytes) -> None:
    same_message = sorted(a) == sorted(b) and va == vb
    assert (binary_signing_input(a, va) == binary_signing_input(b, vb)) == same_message
