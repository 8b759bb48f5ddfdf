"""Statement files for the parties (SPEC §4.1): write them as JSON or CSV, read them back, and verify
them offline (digests, hashes, signatures, the chain). Pure: text and values in and out.

JSON is one object `{"dc_id", "key_id", "statements": [...]}`, the statements in chain order, each
with every cpn.ledger_statements column (numbers as strings: `version` and `entries` as whole
numbers, the figures with exactly 3, 6 and 4 decimals; times RFC 3339 UTC). With entries, a statement's `entries`
is the list of the hour's entries (`entry_id`, `device_seconds`, `energy_kwh`, `amount_cny`
strings) rather than their count (the count is the list's length). CSV has the same columns,
one statement a row; with entries a first column `record` says `statement` or `entry`, and an
entry row fills `dc_id`, `hour`, `version` (its statement) and `entry_id` plus its figures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from streams.statements import (
    COLUMNS,
    DECIMALS,
    PLACES,
    Entry,
    Statement,
    StatementError,
    Totals,
    entries_digest,
    fixed,
    hour_start,
    ordered,
    rounded,
    signature_ok,
    statement_hash,
)

ENTRY_FIELDS = ("entry_id", "device_seconds", "energy_kwh", "amount_cny")


class BadFile(ValueError):
    """A file that is not a statement file (exit 2): one line saying where and what."""


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed statement file: the statements in file order, and their entries when present."""

    dc_id: str
    key_id: str
    statements: list[Statement]
    entries: list[list[Entry] | None]  # per statement, None when the file has no entries for it
    raw: list[dict[str, str]] = field(default_factory=list)  # the figures as written


# --- writing ---------------------------------------------------------------------------------


def to_json(dc_id: str, key_id: str, statements: Sequence[Statement],
            entries: Mapping[tuple[datetime, int], Sequence[Entry]] | None = None) -> str:
    """The JSON document; `entries` by (hour, version) when they are to be included."""
    items: list[dict[str, Any]] = []
    for s in statements:
        item: dict[str, Any] = dict(s.as_strings())
        if entries is not None:
            item["entries"] = [e.as_strings() for e in ordered(entries.get((s.hour, s.version), ()))]
        items.append(item)
    return json.dumps({"dc_id": dc_id, "key_id": key_id, "statements": items}, indent=2) + "\n"


def to_csv(statements: Sequence[Statement],
           entries: Mapping[tuple[datetime, int], Sequence[Entry]] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if entries is None:
        writer.writerow(COLUMNS)
        for s in statements:
            row = s.as_strings()
            writer.writerow([row[c] for c in COLUMNS])
        return out.getvalue()
    writer.writerow(["record", *COLUMNS, "entry_id"])
    blank = dict.fromkeys(COLUMNS, "")
    for s in statements:
        row = s.as_strings()
        writer.writerow(["statement", *[row[c] for c in COLUMNS], ""])
        for e in ordered(entries.get((s.hour, s.version), ())):
            fields = {**blank, "dc_id": s.dc_id, "hour": row["hour"], "version": s.version,
                      **{k: v for k, v in e.as_strings().items() if k != "entry_id"}}
            writer.writerow(["entry", *[fields[c] for c in COLUMNS], e.entry_id])
    return out.getvalue()


# --- reading ---------------------------------------------------------------------------------


def parse(text: str) -> Document:
    """A JSON or CSV statement file (by its first character); BadFile when it is neither."""
    stripped = text.lstrip()
    if not stripped:
        raise BadFile("the file is empty")
    if stripped[0] == "{":
        return _parse_json(stripped)
    return _parse_csv(text)


def _parse_json(text: str) -> Document:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFile(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("statements"), list):
        raise BadFile("a statement file is an object with a `statements` list")
    dc_id, key_id = doc.get("dc_id"), doc.get("key_id")
    if not isinstance(dc_id, str) or not isinstance(key_id, str):
        raise BadFile("`dc_id` and `key_id` must be strings")
    statements, entries, raw = [], [], []
    for i, item in enumerate(doc["statements"], start=1):
        if not isinstance(item, dict):
            raise BadFile(f"statement #{i} is not an object")
        listed = item.get("entries")
        fields = dict(item)
        hour_entries: list[Entry] | None = None
        if isinstance(listed, list):
            hour_entries = [_entry(e, f"statement #{i} entry #{j}") for j, e in enumerate(listed, 1)]
            fields["entries"] = str(len(listed))
        s, written = _statement(fields, f"statement #{i}")
        statements.append(s)
        entries.append(hour_entries)
        raw.append(written)
    return Document(dc_id, key_id, statements, entries, raw)


def _parse_csv(text: str) -> Document:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise BadFile("not a statement file: no JSON object and no CSV rows")
    with_records = "record" in rows[0]
    statements: list[Statement] = []
    entries: list[list[Entry] | None] = []
    raw: list[dict[str, str]] = []
    for n, row in enumerate(rows, start=2):
        record = row.get("record", "statement") if with_records else "statement"
        if record == "statement":
            s, written = _statement(row, f"line {n}")
            statements.append(s)
            entries.append([] if with_records else None)
            raw.append(written)
        elif record == "entry":
            if not statements:
                raise BadFile(f"line {n}: an entry row before any statement row")
            hour_entries = entries[-1]
            assert hour_entries is not None
            hour_entries.append(_entry(row, f"line {n}"))
        else:
            raise BadFile(f"line {n}: record must be `statement` or `entry`, not {record!r}")
    if not statements:
        raise BadFile("no statement rows")
    first = statements[0]
    return Document(first.dc_id, first.key_id, statements, entries, raw)


def _text(fields: Mapping[str, Any], name: str, where: str) -> str:
    value = fields.get(name)
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise BadFile(f"{where}: `{name}` is missing or not a string")
    return str(value)


def _integer(fields: Mapping[str, Any], name: str, where: str) -> int:
    text = _text(fields, name, where)
    if not text.isdigit():
        raise BadFile(f"{where}: `{name}` {text!r} is not a whole number")
    return int(text)


def _time(text: str, name: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise BadFile(f"{where}: `{name}` {text!r} is not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise BadFile(f"{where}: `{name}` {text!r} has no zone")
    return t.astimezone(UTC)


def _figure(fields: Mapping[str, Any], name: str, where: str) -> tuple[Decimal, str]:
    text = _text(fields, name, where)
    try:
        return rounded(text, name), text
    except StatementError:
        raise BadFile(f"{where}: `{name}` {text!r} is not a decimal number") from None


def _statement(fields: Mapping[str, Any], where: str) -> tuple[Statement, dict[str, str]]:
    figures = {name: _figure(fields, name, where) for name in PLACES}
    written = {name: text for name, (_, text) in figures.items()}
    reason = _text(fields, "reason", where)
    s = Statement(
        dc_id=_text(fields, "dc_id", where),
        hour=_time(_text(fields, "hour", where), "hour", where),
        version=_integer(fields, "version", where),
        reason=reason,  # type: ignore[arg-type]  # checked by verify
        entries=_integer(fields, "entries", where),
        device_seconds=figures["device_seconds"][0],
        energy_kwh=figures["energy_kwh"][0],
        amount_cny=figures["amount_cny"][0],
        entries_digest=_text(fields, "entries_digest", where),
        prev_hash=_text(fields, "prev_hash", where),
        hash=_text(fields, "hash", where),
        key_id=_text(fields, "key_id", where),
        signature=_text(fields, "signature", where),
        closed_at=_time(_text(fields, "closed_at", where), "closed_at", where),
    )
    written["hour"] = _text(fields, "hour", where)
    return s, written


def _entry(item: Any, where: str) -> Entry:
    if not isinstance(item, Mapping):
        raise BadFile(f"{where}: an entry is an object of {', '.join(ENTRY_FIELDS)}")
    entry_id = _text(item, "entry_id", where)
    values = {name: _figure(item, name, where) for name in PLACES}
    for name, (value, text) in values.items():
        if fixed(value, name) != text:
            raise BadFile(f"{where}: `{name}` {text!r} is not written with {DECIMALS[name]} decimals")
    return Entry(entry_id, values["device_seconds"][0], values["energy_kwh"][0],
                 values["amount_cny"][0])


# --- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    index: int  # 1-based position in the file
    statement: str  # its name: `dc hour vN`
    why: str

    def line(self) -> str:
        return f"statement #{self.index} ({self.statement}): {self.why}"


@dataclass(frozen=True, slots=True)
class Verdict:
    statements: int
    with_entries: int
    signatures_checked: bool
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return not self.failures


def verify(doc: Document, public_pem: bytes | None) -> Verdict:
    """Check every statement in file order: its figures' format, its entries (digest and totals)
    when present, its hash, its signature (when a key is given) and its link to the previous one.
    A chain segment may start anywhere: the first statement's prev_hash is taken as given."""
    failures: list[Failure] = []
    seen: dict[datetime, int] = {}
    previous: Statement | None = None
    for i, (s, hour_entries, written) in enumerate(
            zip(doc.statements, doc.entries, doc.raw or [{}] * len(doc.statements), strict=True),
            start=1):
        why = _problem(doc, s, hour_entries, written, previous, seen, public_pem)
        if why is not None:
            failures.append(Failure(i, s.name, why))
        seen[s.hour] = max(seen.get(s.hour, 0), s.version)
        previous = s
    return Verdict(len(doc.statements), sum(e is not None for e in doc.entries),
                   public_pem is not None, failures)


def _problem(doc: Document, s: Statement, hour_entries: list[Entry] | None,
             written: Mapping[str, str], previous: Statement | None, seen: Mapping[datetime, int],
             public_pem: bytes | None) -> str | None:
    if s.dc_id != doc.dc_id:
        return f"dc_id {s.dc_id!r} is not the file's {doc.dc_id!r}"
    if s.key_id != doc.key_id:
        return f"key_id {s.key_id!r} is not the file's {doc.key_id!r}"
    if hour_start(s.hour) != s.hour or written.get("hour", "").replace("+00:00", "Z") \
            not in ("", s.hour.strftime("%Y-%m-%dT%H:00:00Z")):
        return f"hour {written.get('hour')!r} is not written as YYYY-MM-DDTHH:00:00Z"
    for name in PLACES:
        text = written.get(name)
        if text is not None and text != fixed(getattr(s, name), name):
            return f"{name} {text!r} is not written with exactly {DECIMALS[name]} decimals"
    expected = "close" if s.version == 1 else "restatement"
    if s.version < 1 or s.reason != expected:
        return f"version {s.version} must have reason {expected!r}, not {s.reason!r}"
    if seen.get(s.hour, 0) >= s.version:
        return f"issued after version {seen[s.hour]} of the same hour (statements out of order)"
    if hour_entries is not None:
        if entries_digest(hour_entries) != s.entries_digest:
            return "entries_digest does not match its entries (an entry was changed, added or dropped)"
        if Totals.of(hour_entries) != s.totals:
            return "its totals are not the sums of its entries"
    if statement_hash(s.hash_input()) != s.hash:
        return "hash does not match its fields (a figure, the digest or prev_hash was changed)"
    if previous is not None and s.prev_hash != previous.hash:
        return (f"prev_hash is not the hash of the statement before it ({previous.name}): "
                "the chain is broken (a statement was dropped, inserted or reordered)")
    if public_pem is not None and not signature_ok(public_pem, s.hash, s.signature):
        return f"signature does not verify with the public key (key_id {s.key_id})"
    return None


def latest_versions(statements: Iterable[Statement]) -> dict[tuple[str, datetime], Statement]:
    """The highest version of each (dc_id, hour)."""
    out: dict[tuple[str, datetime], Statement] = {}
    for s in statements:
        key = (s.dc_id, s.hour)
        if key not in out or s.version > out[key].version:
            out[key] = s
    return out
