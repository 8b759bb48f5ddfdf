"""Hourly ledger statements (SPEC §4.1): entries digest, chain hash, Ed25519 signature, and the plan
of what `surplus ledger close` issues. Pure: values in, values out (no clock, no store, no files).

The exact strings, so that anyone can recompute them with hashlib and an Ed25519 library:

- an entry line is `<entry_id>|<device_seconds>|<energy_kwh>|<amount_cny>\\n`, the numbers with
  exactly 3, 6 and 4 decimals, rounded half-even from the value's shortest round-trip decimal
  form (`Decimal(repr(x))` for a float); `entries_digest` is the lowercase hex SHA-256 of the
  hour's lines concatenated in byte order of `entry_id`;
- a statement's totals are the sums of those rounded entry figures;
- `hash` = hex SHA-256 of `<dc_id>|<hour YYYY-MM-DDTHH:00:00Z>|<version>|<entries>|
  <device_seconds>|<energy_kwh>|<amount_cny>|<entries_digest>|<prev_hash>` (one line, no
  newline), `prev_hash` being the previous statement's `hash` in the DC's chain (64 zeros first);
- `signature` = standard base64 (with padding) of the Ed25519 signature of the ASCII `hash`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Literal

ZERO_HASH = "0" * 64
PLACES = {"device_seconds": Decimal("0.001"), "energy_kwh": Decimal("0.000001"),
          "amount_cny": Decimal("0.0001")}
DECIMALS = {"device_seconds": 3, "energy_kwh": 6, "amount_cny": 4}
Reason = Literal["close", "restatement"]
Number = float | int | Decimal | str


class StatementError(ValueError):
    """A value that cannot be part of a statement (says which and why)."""


def decimal_of(value: Number) -> Decimal:
    """The exact decimal of a value: a float's shortest round-trip form (`repr`), else as given."""
    if isinstance(value, bool):
        raise StatementError(f"{value!r} is not a number")
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(value)
    except InvalidOperation:
        raise StatementError(f"{value!r} is not a decimal number") from None


def rounded(value: Number, column: str) -> Decimal:
    """`value` rounded half-even to the places of `column` (device_seconds 3, energy_kwh 6,
    amount_cny 4). Raises StatementError for a value that is not a finite number."""
    exact = decimal_of(value)
    if not exact.is_finite():
        raise StatementError(f"{column} {value!r} is not a finite number")
    q = exact.quantize(PLACES[column], rounding=ROUND_HALF_EVEN)
    return q.copy_abs() if q.is_zero() else q  # never "-0.000"


def fixed(value: Number, column: str) -> str:
    """`value` written with exactly the decimals of `column`, e.g. fixed(1.5, "energy_kwh") ==
    "1.500000"."""
    return format(rounded(value, column), "f")


def hour_text(hour: datetime) -> str:
    """`YYYY-MM-DDTHH:00:00Z` of the UTC hour that holds `hour`."""
    return hour_start(hour).strftime("%Y-%m-%dT%H:00:00Z")


def hour_start(t: datetime) -> datetime:
    """The start of the UTC hour that holds `t` (naive times are taken as UTC)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry as a statement sees it: its id and the three rounded figures."""

    entry_id: str
    device_seconds: Decimal
    energy_kwh: Decimal
    amount_cny: Decimal

    @classmethod
    def of(cls, entry_id: str, device_seconds: Number, energy_kwh: Number,
           amount_cny: Number) -> Entry:
        return cls(entry_id, rounded(device_seconds, "device_seconds"),
                   rounded(energy_kwh, "energy_kwh"), rounded(amount_cny, "amount_cny"))

    def line(self) -> str:
        return (f"{self.entry_id}|{fixed(self.device_seconds, 'device_seconds')}|"
                f"{fixed(self.energy_kwh, 'energy_kwh')}|{fixed(self.amount_cny, 'amount_cny')}\n")

    def as_strings(self) -> dict[str, str]:
        return {"entry_id": self.entry_id,
                "device_seconds": fixed(self.device_seconds, "device_seconds"),
                "energy_kwh": fixed(self.energy_kwh, "energy_kwh"),
                "amount_cny": fixed(self.amount_cny, "amount_cny")}


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    """Entries in byte order of entry_id (UTF-8)."""
    return sorted(entries, key=lambda e: e.entry_id.encode("utf-8"))


def entries_digest(entries: Iterable[Entry]) -> str:
    """Lowercase hex SHA-256 of the entry lines in byte order of entry_id."""
    h = hashlib.sha256()
    for e in ordered(entries):
        h.update(e.line().encode("utf-8"))
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Totals:
    entries: int
    device_seconds: Decimal
    energy_kwh: Decimal
    amount_cny: Decimal

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> Totals:
        return cls(len(entries), sum((e.device_seconds for e in entries), Decimal("0.000")),
                   sum((e.energy_kwh for e in entries), Decimal("0.000000")),
                   sum((e.amount_cny for e in entries), Decimal("0.0000")))

    def as_strings(self) -> dict[str, str]:
        return {"entries": str(self.entries),
                "device_seconds": fixed(self.device_seconds, "device_seconds"),
                "energy_kwh": fixed(self.energy_kwh, "energy_kwh"),
                "amount_cny": fixed(self.amount_cny, "amount_cny")}


@dataclass(frozen=True, slots=True)
class Statement:
    """One row of cpn.ledger_statements (SPEC §5)."""

    dc_id: str
    hour: datetime
    version: int
    reason: Reason
    entries: int
    device_seconds: Decimal
    energy_kwh: Decimal
    amount_cny: Decimal
    entries_digest: str
    prev_hash: str
    hash: str
    key_id: str
    signature: str
    closed_at: datetime

    @property
    def totals(self) -> Totals:
        return Totals(self.entries, self.device_seconds, self.energy_kwh, self.amount_cny)

    @property
    def name(self) -> str:
        """How messages name it: `dc-a 2026-01-01T10:00:00Z v2`."""
        return f"{self.dc_id} {hour_text(self.hour)} v{self.version}"

    def hash_input(self) -> str:
        return hash_input(self.dc_id, self.hour, self.version, self.totals, self.entries_digest,
                          self.prev_hash)

    def as_strings(self) -> dict[str, str]:
        """Every column, numbers as strings in the SPEC formats, times RFC 3339 UTC."""
        return {"dc_id": self.dc_id, "hour": hour_text(self.hour), "version": str(self.version),
                "reason": self.reason, **self.totals.as_strings(),
                "entries_digest": self.entries_digest, "prev_hash": self.prev_hash,
                "hash": self.hash, "key_id": self.key_id, "signature": self.signature,
                "closed_at": rfc3339(self.closed_at)}


COLUMNS = ("dc_id", "hour", "version", "reason", "entries", "device_seconds", "energy_kwh",
           "amount_cny", "entries_digest", "prev_hash", "hash", "key_id", "signature", "closed_at")


def rfc3339(t: datetime) -> str:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_input(dc_id: str, hour: datetime, version: int, totals: Totals, digest: str,
               prev_hash: str) -> str:
    t = totals.as_strings()
    return (f"{dc_id}|{hour_text(hour)}|{version}|{t['entries']}|{t['device_seconds']}|"
            f"{t['energy_kwh']}|{t['amount_cny']}|{digest}|{prev_hash}")


def statement_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the statement key ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementKey:
    """The platform's Ed25519 statement key: its id and 32-byte private seed (never in repr)."""

    key_id: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise StatementError(f"statement key {self.key_id}: an Ed25519 seed is 32 bytes, "
                                 f"not {len(self.seed)}")

    def sign(self, hash_hex: str) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(hash_hex.encode("ascii"))
        return base64.b64encode(sig).decode("ascii")

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def signature_ok(public_pem: bytes, hash_hex: str, signature: str) -> bool:
    """Does `signature` (base64) sign the ASCII `hash_hex` under the PEM public key?"""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise StatementError("the public key is not an Ed25519 key")
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, hash_hex.encode("ascii"))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def issue(dc_id: str, hour: datetime, version: int, reason: Reason, entries: Sequence[Entry],
          prev_hash: str, key: StatementKey, closed_at: datetime) -> Statement:
    """A new signed statement of `entries` for (dc_id, hour), chained after `prev_hash`."""
    totals = Totals.of(entries)
    digest = entries_digest(entries)
    h = statement_hash(hash_input(dc_id, hour, version, totals, digest, prev_hash))
    return Statement(dc_id, hour_start(hour), version, reason, totals.entries, totals.device_seconds,
                     totals.energy_kwh, totals.amount_cny, digest, prev_hash, h, key.key_id,
                     key.sign(h), closed_at)


# --- what a close run issues -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restated:
    """A restatement: the version it replaces and the new one."""

    old: Statement
    new: Statement


@dataclass(frozen=True, slots=True)
class ClosePlan:
    statements: list[Statement]  # to insert, per DC in chain order
    restated: list[Restated]


def cutoff(now: datetime, grace_s: float) -> datetime:
    """Hours that start before this are closed at `now`: hour h closes when h + 1 h + grace <= now."""
    return hour_start(now - timedelta(seconds=grace_s) - timedelta(hours=1)) + timedelta(hours=1)


def plan_close(
    hours: Mapping[tuple[str, datetime], Sequence[Entry]],
    latest: Mapping[tuple[str, datetime], Statement],
    heads: Mapping[str, Statement],
    key: StatementKey,
    closed_at: datetime,
) -> ClosePlan:
    """The statements a close run issues for the closed `hours` it looked at.

    `hours`: (dc_id, hour) -> the hour's entries now; `latest`: the latest stored version of each
    such hour; `heads`: each DC's last issued statement (its chain head). An hour with no
    statement gets version 1 (`close`); an hour whose entries digest or totals differ from its
    latest version gets the next version (`restatement`); an unchanged hour gets nothing. Per DC
    the new statements are chained in order of (hour, version) after the DC's head.
    """
    out: list[Statement] = []
    restated: list[Restated] = []
    by_dc: dict[str, list[datetime]] = {}
    for dc_id, hour in hours:
        by_dc.setdefault(dc_id, []).append(hour)
    for dc_id in sorted(by_dc):
        head = heads.get(dc_id)
        prev = head.hash if head is not None else ZERO_HASH
        for hour in sorted(by_dc[dc_id]):
            entries = ordered(hours[(dc_id, hour)])
            old = latest.get((dc_id, hour))
            if old is not None and old.entries_digest == entries_digest(entries) \
                    and old.totals == Totals.of(entries):
                continue
            if old is None and not entries:
                continue
            version = 1 if old is None else old.version + 1
            reason: Reason = "close" if old is None else "restatement"
            new = issue(dc_id, hour, version, reason, entries, prev, key, closed_at)
            out.append(new)
            if old is not None:
                restated.append(Restated(old, new))
            prev = new.hash
    return ClosePlan(out, restated)


def chain_order(statements: Iterable[Statement]) -> list[Statement]:
    """Stored statements of one DC in the order they were issued (closed_at, hour, version)."""
    return sorted(statements, key=lambda s: (s.closed_at, s.hour, s.version))


def segment(chain: Sequence[Statement], start: datetime, end: datetime) -> list[Statement]:
    """The contiguous part of a DC's chain from the first to the last statement of an hour in
    [start, end): statements issued in between for other hours (restatements of older hours)
    are kept, so the segment's links are unbroken and it verifies on its own."""
    inside = [i for i, s in enumerate(chain) if start <= s.hour < end]
    return list(chain[inside[0]:inside[-1] + 1]) if inside else []
