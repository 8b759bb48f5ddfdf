"""Hostile input at `decode` (with and without a verifier): it always ends in an event or a reason.

The generators here (`hostile_messages`, `SEEDS`) are shared by the worker fuzz test
(tests/integration/test_fuzz_worker.py) and the long run (tools/fuzz_decode.py).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import decode
from schemas.reasons import DETAIL_MAX_CHARS, Reason, Reject
from schemas.registry import EVENT_TYPES
from schemas.signing import KeyRegistry, SigningKey, sign
from streams.signing import make_verifier

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
DC = "gz-guian-01"
KEY = SigningKey("gz-1", DC, "hmac-sha256", bytes(range(32)))
REGISTRY = KeyRegistry.from_toml(
    f'[[key]]\nkey_id = "gz-1"\ndc_id = "{DC}"\nsecret = "{bytes(range(32)).hex()}"\n')
GOLDEN = {t: json.loads((EXAMPLES / f"{t}.json").read_text()) for t in sorted(EVENT_TYPES)}

# --- the hostile corpus ---------------------------------------------------------------------

HUGE_INT = 10**100
TIMES = [
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "2026-11-26T23:59:60Z", "2016-12-31T23:59:60+00:00", "2026-11-27T00:00:00+25:00",
    "2026-11-27T00:00:00-24:00", "2026-11-27T00:00:00", "2026-11-27", "", "T", "now",
    "2026-11-27T00:00:00.0000000001Z", "2026-13-01T00:00:00Z", "+12026-11-27T00:00:00Z",
    "2026-11-27T00:00:00Z" + " " * 100, "1970-01-01T00:00:00Z", "2026-11-27T00:00:00\u202eZ",
]
STRINGS = [
    "", "\u0000", "a\u0000b", "\u202e10-zg", "\u200b", "\ufeff", "ｇｚ", "gz-guіan-01",  # Cyrillic і
    "\\ud800", "x" * 70_000, "x" * 129, "😀" * 50, "../../etc/passwd", "'; DROP TABLE cpn.x;--",
    "%s%s%n", "\r\n\t", "null",
]
NUMBERS: list[Any] = [
    HUGE_INT, -HUGE_INT, 2**32, 2**63, 2**64, -1, -0.0, 1e308, -1e308, 5e-324, 1.7976931348623157e308,
    0.1 + 0.2, True, False, None, "1", [], {},
]
LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400",
            b"1" + b"0" * 5000, str(HUGE_INT).encode(), b"0x10", b"01", b"1_000", b".5", b"+1"]
DEEP = [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 100_000, b'{"data":' * 5000 + b"{}" + b"}" * 5000]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    return out


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def _deep(levels: int) -> str:
    """A placeholder that `_dumps` replaces by `levels` nested arrays (json.dumps would recurse)."""
    return f"__deep_{levels}__"


def _dumps(obj: Any, rnd: random.Random) -> bytes:
    text = json.dumps(obj, ensure_ascii=rnd.random() < 0.5, allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")
    for levels in (2, 50, 500, 2000, 10_000):
        raw = raw.replace(f'"{_deep(levels)}"'.encode(), b"[" * levels + b"1" + b"]" * levels)
    return raw


def mutate(rnd: random.Random, event_type: str | None = None) -> bytes:
    """A golden event with one to three hostile edits (values, deletions, literals, nesting)."""
    obj = copy.deepcopy(GOLDEN[event_type or rnd.choice(sorted(GOLDEN))])
    for _ in range(rnd.randint(1, 3)):
        path = rnd.choice(_paths(obj))
        roll = rnd.random()
        if roll < 0.25:
            _set(obj, path, rnd.choice(NUMBERS))
        elif roll < 0.45:
            _set(obj, path, rnd.choice(STRINGS))
        elif roll < 0.6:
            _set(obj, path, rnd.choice(TIMES))
        elif roll < 0.7:
            _set(obj, path, None, delete=True)
        elif roll < 0.8:
            _set(obj, path, _deep(rnd.choice([2, 50, 500, 2000, 10_000])))
        elif roll < 0.9:
            _set(obj, (*path[:-1], rnd.choice(["extra", "__proto__", "dc_id\u0000"])), 1)
        else:
            raw = _dumps(obj, rnd)
            numbers = [part for part in raw.split(b" ") if part[:1].isdigit()]
            if numbers:
                raw = raw.replace(rnd.choice(numbers).rstrip(b",}"), rnd.choice(LITERALS), 1)
            return raw
    return _dumps(obj, rnd)


def hostile(rnd: random.Random) -> bytes:
    """One hostile message value of any family."""
    family = rnd.random()
    if family < 0.6:
        return mutate(rnd)
    if family < 0.7:
        return rnd.choice(DEEP)
    if family < 0.85:
        return rnd.randbytes(rnd.choice([0, 1, 16, 300, 4096, 70_000]))
    golden = _dumps(copy.deepcopy(GOLDEN[rnd.choice(sorted(GOLDEN))]), rnd)
    cut = rnd.randrange(len(golden))
    return golden[:cut] + rnd.randbytes(rnd.randint(0, 8)) + golden[cut + 1:]


def hostile_headers(rnd: random.Random, value: bytes) -> dict[str, bytes]:
    """Signature headers: genuine, missing, garbage, or genuine for other bytes."""
    roll = rnd.random()
    if roll < 0.4:
        return dict([sign(value, KEY)])
    if roll < 0.55:
        return {}
    if roll < 0.7:
        return {"surplus-signature": rnd.randbytes(rnd.choice([0, 10, 300]))}
    if roll < 0.85:
        name, header = sign(value + b" ", KEY)
        return {name: header}
    return {"surplus-signature": b"v1;kid=gz-1;alg=hmac-sha256;sig=" + b"A" * rnd.randint(0, 400)}


SEEDS: list[bytes] = [*DEEP, *[b'{"specversion": ' + lit + b"}" for lit in LITERALS]]


def check(raw: bytes, outcome: Any) -> None:
    """The invariant: an event of a known type, or a reject with a reason and a short detail."""
    if isinstance(outcome, Reject):
        assert outcome.reason in Reason
        assert 0 < len(outcome.detail) <= DETAIL_MAX_CHARS
        outcome.detail.encode("utf-8")  # storable: no lone surrogates in what we write
    else:
        assert outcome.type in EVENT_TYPES, raw[:200]


# --- tests ------------------------------------------------------------------------------------

Verifier = Callable[[bytes, Any, dict[str, object]], str | None]
VERIFIER: Verifier = make_verifier(REGISTRY, clock=lambda: NOW)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False), st.booleans())
def test_decode_survives_hostile_messages(rnd: random.Random, verify: bool) -> None:
    raw = hostile(rnd)
    headers = hostile_headers(rnd, raw) if verify else {}
    outcome = decode(raw, now=NOW, key=DC.encode(), headers=headers,
                     verifier=VERIFIER if verify else None)
    check(raw, outcome)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=70_000), st.dictionaries(st.text(max_size=20), st.binary(max_size=300),
                                                   max_size=3))
def test_decode_survives_arbitrary_bytes_and_headers(raw: bytes, headers: dict[str, bytes]) -> None:
    check(raw, decode(raw, now=NOW, key=raw[:10], headers=headers, verifier=VERIFIER))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=200))
def test_any_unicode_in_any_string_field(text: str) -> None:
    rnd = random.Random(text.encode("utf-8", "surrogatepass"))
    obj = copy.deepcopy(GOLDEN[rnd.choice(sorted(GOLDEN))])
    paths = [p for p in _paths(obj) if isinstance(_get(obj, p), str)]
    _set(obj, rnd.choice(paths), text)
    raw = _dumps(obj, rnd)
    check(raw, decode(raw, now=NOW, key=DC.encode()))


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


@pytest.mark.parametrize("raw", SEEDS, ids=lambda r: repr(r[:24]))
def test_seeds(raw: bytes) -> None:
    check(raw, decode(raw, now=NOW, key=DC.encode(), verifier=VERIFIER))


def _with(event_type: str, path: str, value: Any) -> bytes:
    obj = copy.deepcopy(GOLDEN[event_type])
    _set(obj, tuple(path.split(".")), value)
    return json.dumps(obj).encode()


def _literal(event_type: str, old: str, literal: bytes) -> bytes:
    raw = json.dumps(GOLDEN[event_type]).encode()
    assert old.encode() in raw
    return raw.replace(old.encode(), literal, 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DEEP[0], Reason.UNDECODABLE),
        (DEEP[1], Reason.UNDECODABLE),
        (_literal("cpn.capacity.v1", "0.71", b"NaN"), Reason.UNDECODABLE),
        (_literal("cpn.capacity.v1", "0.71", b"Infinity"), Reason.UNDECODABLE),
        (_literal("cpn.capacity.v1", "0.71", b"-Infinity"), Reason.UNDECODABLE),
        (_literal("cpn.capacity.v1", "0.71", b"1e400"), Reason.SCHEMA),  # parses as inf
        (_literal("cpn.power.v1", "498.9", b"1e400"), Reason.SCHEMA),
        (_literal("cpn.capacity.v1", "512", b"1" + b"0" * 5000), Reason.UNDECODABLE),
        (_with("cpn.capacity.v1", "data.devices_total", HUGE_INT), Reason.INCONSISTENT),
        (_with("cpn.capacity.v1", "data.busy_ratio", HUGE_INT), Reason.SCHEMA),
        (_with("cpn.dc.v1", "data.name", "\ud800"), Reason.UNDECODABLE),  # escaped lone surrogate
        (_with("cpn.capacity.v1", "data.dc_id", "\u202egz-guian-01"), Reason.SCHEMA),
        (_with("cpn.capacity.v1", "data.pool_id", "h100\u0000"), Reason.SCHEMA),
        (_with("cpn.capacity.v1", "id", "x" * 129), Reason.SCHEMA),
        (_with("cpn.dc.v1", "data.name", "x" * 60_000), Reason.SCHEMA),
        (_with("cpn.dc.v1", "data.name", "x" * 70_000), Reason.TOO_LARGE),
        (_with("cpn.capacity.v1", "time", "0000-01-01T00:00:00Z"), Reason.SCHEMA),
        (_with("cpn.capacity.v1", "time", "9999-12-31T23:59:59Z"), Reason.FUTURE_TIME),
        (_with("cpn.capacity.v1", "time", "2026-11-26T23:59:60Z"), Reason.SCHEMA),  # leap second
        (_with("cpn.capacity.v1", "time", "2026-11-27T00:00:00+25:00"), Reason.SCHEMA),
        (_with("cpn.capacity.v1", "time", "2026-11-27T00:00:00"), Reason.SCHEMA),
        (_with("cpn.capacity.v1", "time", "x" * 10_000), Reason.SCHEMA),
    ],
    ids=lambda v: v.value if isinstance(v, Reason) else repr(v[:30]) + f"..{len(v)}",
)
def test_hostile_values_get_their_reason(raw: bytes, reason: Reason) -> None:
    outcome = decode(raw, now=NOW, key=DC.encode())
    assert isinstance(outcome, Reject) and outcome.reason is reason, outcome


def test_signature_checks_survive_hostile_envelopes() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        obj = copy.deepcopy(GOLDEN["cpn.capacity.v1"])
        obj["source"] = rnd.choice([*STRINGS, *NUMBERS, "//cpn/dc/", "//cpn/dc/" + "a" * 500])
        obj["data"] = rnd.choice([obj["data"], None, [], "x", {"dc_id": rnd.choice(NUMBERS)}])
        obj["time"] = rnd.choice([*TIMES, *NUMBERS])
        raw = _dumps(obj, rnd)
        why = VERIFIER(raw, hostile_headers(rnd, raw), json.loads(raw.decode("utf-8", "replace")))
        assert why is None or (isinstance(why, str) and len(why) <= DETAIL_MAX_CHARS)
