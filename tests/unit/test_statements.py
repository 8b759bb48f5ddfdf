"""The statement core (SPEC §4.1): exact strings, rounding, chaining, restatements, offline verify."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.statement_files import parse, to_csv, to_json, verify
from streams.statements import (
    ZERO_HASH,
    Entry,
    StatementKey,
    cutoff,
    entries_digest,
    fixed,
    plan_close,
    segment,
)
from streams.tally_check import TallyRow, differences

KEY = StatementKey("k-1", bytes(range(32)))
H = datetime(2026, 12, 1, 10, tzinfo=UTC)
AT = datetime(2026, 12, 1, 13, 0, 5, tzinfo=UTC)


def pem() -> bytes:
    return KEY.public_pem().encode()


def test_figures_are_written_half_even_from_the_shortest_decimal() -> None:
    assert fixed(0.0005, "device_seconds") == "0.000"  # half-even: down to the even digit
    assert fixed(0.0015, "device_seconds") == "0.002"
    assert fixed(2.0000005, "energy_kwh") == "2.000000"  # repr is 2.0000005, not a binary neighbour
    assert fixed(2.0000015, "energy_kwh") == "2.000002"
    assert fixed(Decimal("1.23445"), "amount_cny") == "1.2344"
    assert fixed(-0.0, "device_seconds") == "0.000"
    assert fixed(1e-07, "energy_kwh") == "0.000000"
    assert fixed(3600, "device_seconds") == "3600.000"


def test_digest_and_hash_are_the_spec_strings() -> None:
    entries = [Entry.of("dc-a/j-2/1", 60.0, 0.1 + 0.2, Decimal("0.2500")),
               Entry.of("dc-a/j-10/0", 0.0, 0.0, Decimal("0"))]
    lines = "dc-a/j-10/0|0.000|0.000000|0.0000\ndc-a/j-2/1|60.000|0.300000|0.2500\n"
    assert entries_digest(entries) == hashlib.sha256(lines.encode()).hexdigest()
    plan = plan_close({("dc-a", H): entries}, {}, {}, KEY, AT)
    (s,) = plan.statements
    text = f"dc-a|2026-12-01T10:00:00Z|1|2|60.000|0.300000|0.2500|{s.entries_digest}|{ZERO_HASH}"
    assert s.hash == hashlib.sha256(text.encode()).hexdigest()
    assert (s.version, s.reason, s.prev_hash) == (1, "close", ZERO_HASH)
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    load_pem_public_key(pem()).verify(base64.b64decode(s.signature), s.hash.encode())  # type: ignore[union-attr,call-arg]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e7, allow_nan=False), st.floats(0, 1e4, allow_nan=False),
                          st.decimals(0, 10_000, places=4, allow_nan=False)),
                min_size=1, max_size=20, unique_by=lambda t: t[0]), st.randoms())
def test_digest_and_totals_do_not_depend_on_order(figures: list[tuple[float, float, Decimal]],
                                                   rng: object) -> None:
    entries = [Entry.of(f"dc/j/{i}", s, e, a) for i, (s, e, a) in enumerate(figures)]
    shuffled = list(entries)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert entries_digest(shuffled) == entries_digest(entries)
    a = plan_close({("dc", H): entries}, {}, {}, KEY, AT).statements[0]
    b = plan_close({("dc", H): shuffled}, {}, {}, KEY, AT).statements[0]
    assert a.hash == b.hash and a.signature == b.signature  # Ed25519 is deterministic
    assert a.device_seconds == sum(Decimal(fixed(s, "device_seconds")) for s, _, _ in figures)
    assert a.amount_cny == sum(Decimal(fixed(x, "amount_cny")) for _, _, x in figures)


def test_a_changed_hour_is_restated_and_chained_after_the_head() -> None:
    e1 = [Entry.of("dc/j/0", 0, 0, 0), Entry.of("dc/j/1", 60, 0.5, Decimal("1.0000"))]
    first = plan_close({("dc", H): e1, ("dc", H + timedelta(hours=1)): e1[:1]}, {}, {}, KEY, AT)
    one, two = first.statements
    assert two.prev_hash == one.hash
    later = AT + timedelta(hours=1)
    same = plan_close({("dc", H): e1}, {("dc", H): one}, {"dc": two}, KEY, later)
    assert same.statements == [] and same.restated == []
    grown = [*e1, Entry.of("dc/k/0", 30, 0.1, Decimal("0.5000"))]
    again = plan_close({("dc", H): grown}, {("dc", H): one}, {"dc": two}, KEY, later)
    (three,) = again.statements
    assert (three.version, three.reason, three.prev_hash, three.entries) == (2, "restatement", two.hash, 3)
    assert again.restated[0].old is one and again.restated[0].new is three


def test_cutoff_closes_an_hour_grace_seconds_after_its_end() -> None:
    assert cutoff(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), 7200) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert cutoff(datetime(2026, 12, 1, 11, 59, 59, tzinfo=UTC), 7200) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert cutoff(datetime(2026, 12, 1, 12, 30, tzinfo=UTC), 0) == datetime(2026, 12, 1, 12, tzinfo=UTC)


def _chain(hours: int = 4) -> tuple[list, dict]:  # type: ignore[type-arg]
    hourly = {("dc", H + timedelta(hours=i)): [Entry.of(f"dc/j{i}/{n}", 60 * n + 0.25, 0.1 * n, Decimal(n))
                                                for n in range(3)] for i in range(hours)}
    plan = plan_close(hourly, {}, {}, KEY, AT)
    return plan.statements, {(h, 1): e for (_, h), e in hourly.items()}


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_files_round_trip_and_verify(fmt: str) -> None:
    statements, entries = _chain()
    text = to_json("dc", "k-1", statements, entries) if fmt == "json" else to_csv(statements, entries)
    doc = parse(text)
    assert doc.statements == statements
    verdict = verify(doc, pem())
    assert verdict.ok and verdict.with_entries == 4
    plain = to_json("dc", "k-1", statements) if fmt == "json" else to_csv(statements)
    assert verify(parse(plain), pem()).ok and verify(parse(plain), None).with_entries == 0


def test_each_kind_of_tampering_names_the_first_bad_statement() -> None:
    statements, entries = _chain()
    doc = json.loads(to_json("dc", "k-1", statements, entries))

    def check(change: object, index: int, words: str) -> None:
        copy = json.loads(json.dumps(doc))
        change(copy["statements"])  # type: ignore[operator]
        verdict = verify(parse(json.dumps(copy)), pem())
        assert not verdict.ok
        first = verdict.failures[0]
        assert first.index == index and words in first.why, first

    check(lambda ss: ss[2]["entries"][1].update(amount_cny="9.0000"), 3, "entries_digest")
    check(lambda ss: ss[1]["entries"].pop(0), 2, "entries_digest")
    check(lambda ss: ss.insert(1, ss.pop(2)), 2, "chain is broken")
    check(lambda ss: ss.pop(1), 2, "chain is broken")
    check(lambda ss: ss[3].update(energy_kwh="0.300001"), 4, "totals")
    check(lambda ss: ss[0].update(amount_cny="3.00"), 1, "decimals")
    check(lambda ss: ss[0].update(signature=ss[1]["signature"]), 1, "signature")
    check(lambda ss: ss[1].update(version=2, reason="close"), 2, "reason")
    doc = json.loads(to_json("dc", "k-1", statements))  # no entries: the hash catches a figure
    check(lambda ss: ss[3].update(energy_kwh="0.300001"), 4, "hash does not match")


def test_a_segment_keeps_the_chain_unbroken() -> None:
    statements, _ = _chain()
    assert segment(statements, H + timedelta(hours=1), H + timedelta(hours=3)) == statements[1:3]
    assert segment(statements, H - timedelta(days=1), H) == []
    doc = parse(to_json("dc", "k-1", statements[1:3]))
    assert verify(doc, pem()).ok  # a segment starts from its first prev_hash


def test_the_tally_differences_are_per_hour() -> None:
    statements, entries = _chain(3)
    doc = parse(to_json("dc", "k-1", statements, entries))
    rows = []
    for (hour, _), listed in entries.items():
        for e in listed:
            rows.append(TallyRow("dc", hour, e.entry_id.split("/")[1], 1, e.device_seconds, e.energy_kwh))
    rows.append(TallyRow("other-dc", H, "x", 5, Decimal(1), Decimal(1)))  # another DC: ignored
    assert differences(doc, rows) == []
    planted = [r if r.job_id != "j1" else TallyRow(r.dc_id, r.hour, r.job_id, r.entries,
                                                    r.device_seconds + 1, r.energy_kwh) for r in rows]
    (diff,) = differences(doc, planted)
    assert diff.hour == H + timedelta(hours=1) and diff.jobs == ("j1",)
    assert "2026-12-01T11:00:00Z: platform 3 entries" in diff.line()
    missing = [r for r in rows if r.hour != H + timedelta(hours=2)]
    (gone,) = differences(doc, missing)
    assert gone.operator is None
