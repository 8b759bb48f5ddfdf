"""Event signatures: a DC's key, the signature header over the exact bytes of the event, the key
registry and `verify`. Pure, except the small TOML reads in `load_signing_key` and `KeyRegistry.load`.

Header `surplus-signature: v1;kid=<key id>;alg=<hmac-sha256|ed25519>;sig=<base64url, no padding>`
where `sig` is HMAC-SHA256(secret, M) or Ed25519-sign(seed, M) over the signing input M:

- **structured mode** (the value is the whole event): M is the message value, byte for byte as
  produced (no re-serialisation).
- **binary mode** (attributes in `ce_` headers, the value is `data`): M covers every attribute
  header and the value, in this canonical form (`binary_signing_input`)::

      M = "cloudevents-kafka-binary/1\n"
          + for each signed header, sorted by name (bytewise): name + ":" + value + "\n"
          + "\n"
          + value

  The signed headers are every header whose name starts with `ce_`, and `content-type` (the
  `datacontenttype` attribute; matched in any case, written lowercase). Names and values are
  the header bytes exactly as sent (UTF-8); no trimming, no re-encoding. A signed header given
  twice, a name with `:` or a line break, or a value with a line break cannot be signed (the
  form would be ambiguous) and fails verification. Other headers (`surplus-signature` itself,
  tracing headers without `ce_`) are not covered. Example, the headers `ce_id: a1`,
  `ce_specversion: 1.0`, `content-type: application/json` and the value `{"dc_id":"x"}` give
  ``cloudevents-kafka-binary/1\nce_id:a1\nce_specversion:1.0\ncontent-type:application/json\n\n{"dc_id":"x"}``.

The registry (what workers hold) maps key ids to their DC, algorithm, key material and validity
window; during a rollover two keys of a DC are valid at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

SIGNATURE_HEADER: Final = "surplus-signature"
VERSION: Final = "v1"
Alg = Literal["hmac-sha256", "ed25519"]
ALGS: Final[tuple[str, ...]] = get_args(Alg)
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
DC_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MIN_HMAC_SECRET_BYTES: Final = 32
ED25519_BYTES: Final = 32
MAX_HEADER_BYTES: Final = 256
BINARY_PREFIX: Final = b"cloudevents-kafka-binary/1\n"


class SigningKeyError(ValueError):
    """A key file or registry entry that cannot be used (says which and why, never the secret)."""


# --- key material ---------------------------------------------------------------------------


def decode_material(text: str) -> bytes:
    """`hex:…`, `base64:…`, or bare hex (even length, 0-9a-f) else bare (url-safe) base64."""
    text = text.strip()
    try:
        if text.startswith("hex:"):
            return bytes.fromhex(text[4:])
        if text.startswith("base64:"):
            return _b64(text[7:])
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
            return bytes.fromhex(text)
        return _b64(text)
    except (ValueError, binascii.Error):
        raise SigningKeyError("key material is neither hex nor base64") from None


def _b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def _check_material(alg: str, material: bytes, what: str) -> None:
    if alg == "hmac-sha256" and len(material) < MIN_HMAC_SECRET_BYTES:
        raise SigningKeyError(f"{what} is {len(material)} bytes; HMAC keys need at least "
                        f"{MIN_HMAC_SECRET_BYTES}")
    if alg == "ed25519" and len(material) != ED25519_BYTES:
        raise SigningKeyError(f"{what} is {len(material)} bytes; Ed25519 keys are {ED25519_BYTES}")


def _ident(table: Mapping[str, Any], name: str, pattern: re.Pattern[str], where: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise SigningKeyError(f"{where}: {name} must be a string matching {pattern.pattern}")
    return value


def _alg(table: Mapping[str, Any], where: str) -> Alg:
    value = table.get("alg", "hmac-sha256")
    if value not in ALGS:
        raise SigningKeyError(f"{where}: alg must be one of {', '.join(ALGS)}")
    return cast(Alg, value)


# --- the signing side (agents) ----------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A DC's signing key: HMAC secret or Ed25519 private seed. Its repr never shows the secret."""

    key_id: str
    dc_id: str
    alg: Alg
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not KEY_ID.match(self.key_id):
            raise SigningKeyError(f"key_id must match {KEY_ID.pattern}")
        if not DC_ID.match(self.dc_id):
            raise SigningKeyError(f"dc_id must match {DC_ID.pattern}")
        if self.alg not in ALGS:
            raise SigningKeyError(f"alg must be one of {', '.join(ALGS)}")
        _check_material(self.alg, self.secret, f"key {self.key_id}: secret")

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, dc_id={self.dc_id!r}, alg={self.alg!r})"

    __str__ = __repr__

    def public_key(self) -> bytes:
        """The Ed25519 public key (what the registry holds); for HMAC there is none."""
        if self.alg != "ed25519":
            raise SigningKeyError(f"key {self.key_id} is {self.alg}: it has no public key")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = Ed25519PrivateKey.from_private_bytes(self.secret)
        return private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_signing_key(path: Path | str) -> SigningKey:
    """Read a DC's key file (TOML: key_id, dc_id, alg, secret as hex or base64)."""
    where = str(path)
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SigningKeyError(f"{where}: cannot read the key file: {type(exc).__name__}") from None
    secret = table.get("secret")
    if not isinstance(secret, str):
        raise SigningKeyError(f"{where}: secret must be a hex or base64 string")
    return SigningKey(
        key_id=_ident(table, "key_id", KEY_ID, where),
        dc_id=_ident(table, "dc_id", DC_ID, where),
        alg=_alg(table, where),
        secret=decode_material(secret),
    )


def sign(value: bytes, key: SigningKey) -> tuple[str, bytes]:
    """(header name, header value) carrying the key id, alg and signature of `value`."""
    if key.alg == "hmac-sha256":
        sig = hmac.new(key.secret, value, hashlib.sha256).digest()
    else:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sig = Ed25519PrivateKey.from_private_bytes(key.secret).sign(value)
    text = base64.urlsafe_b64encode(sig).rstrip(b"=").decode("ascii")
    return SIGNATURE_HEADER, f"{VERSION};kid={key.key_id};alg={key.alg};sig={text}".encode("ascii")


def binary_signing_input(headers: Sequence[tuple[str, bytes | None]], value: bytes) -> bytes | str:
    """The bytes a binary-mode signature covers (the module's canonical form), or why the headers
    cannot be signed. `headers` are the message's headers in any order; others than `ce_*` and
    `content-type` are left out."""
    signed: dict[bytes, bytes] = {}
    for name, header_value in headers:
        if name.startswith("ce_"):
            key = name.encode("utf-8", "surrogateescape")
        elif name.lower() == "content-type":
            key = b"content-type"
        else:
            continue
        raw = header_value or b""
        if key in signed:
            return f"header {_short(name)} appears twice"
        if b":" in key or b"\n" in key or b"\r" in key:
            return f"header name {_short(name)} cannot be signed (':' or a line break)"
        if b"\n" in raw:
            return f"header {_short(name)} has a line break in its value"
        signed[key] = raw
    lines = b"".join(k + b":" + signed[k] + b"\n" for k in sorted(signed))
    return BINARY_PREFIX + lines + b"\n" + value


def sign_binary(headers: Sequence[tuple[str, bytes | None]], value: bytes, key: SigningKey) -> tuple[str, bytes]:
    """The signature header of a binary-mode message (its `ce_` headers, content-type, value)."""
    signing_input = binary_signing_input(headers, value)
    if isinstance(signing_input, str):
        raise ValueError(f"cannot sign these headers: {signing_input}")
    return sign(signing_input, key)


# --- the verifying side (workers) -------------------------------------------------------------


@dataclass(frozen=True)
class RegistryKey:
    """One registry entry: whose key, which algorithm, the verifying material, when it is valid."""

    key_id: str
    dc_id: str
    alg: Alg
    material: bytes = field(repr=False)  # HMAC secret or Ed25519 public key
    not_before: datetime | None = None
    not_after: datetime | None = None
    revoked: bool = False

    def valid_at(self, at: datetime) -> bool:
        if self.revoked:
            return False
        if self.not_before is not None and at < self.not_before:
            return False
        return self.not_after is None or at < self.not_after

    def window(self) -> str:
        start = self.not_before.isoformat() if self.not_before else "-inf"
        end = self.not_after.isoformat() if self.not_after else "+inf"
        return f"[{start}, {end})"


class KeyRegistry:
    """The keys a worker accepts, by key id. Built from TOML `[[key]]` tables."""

    def __init__(self, keys: Iterable[RegistryKey]) -> None:
        self._keys: dict[str, RegistryKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise SigningKeyError(f"key_id {key.key_id!r} appears twice in the registry")
            self._keys[key.key_id] = key

    def get(self, key_id: str) -> RegistryKey | None:
        return self._keys.get(key_id)

    def __iter__(self) -> Iterator[RegistryKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRegistry({len(self._keys)} keys: {', '.join(self._keys)})"

    @classmethod
    def from_toml(cls, text: str, where: str = "registry") -> KeyRegistry:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SigningKeyError(f"{where}: not TOML: {exc}") from None
        tables = doc.get("key")
        if not isinstance(tables, list) or not tables:
            raise SigningKeyError(f"{where}: no [[key]] tables")
        return cls(_registry_key(t, f"{where} [[key]] #{i + 1}") for i, t in enumerate(tables))

    @classmethod
    def load(cls, path: Path | str) -> KeyRegistry:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"{path}: cannot read the key registry: {type(exc).__name__}") from None
        return cls.from_toml(text, str(path))


def _registry_key(table: Any, where: str) -> RegistryKey:
    if not isinstance(table, dict):
        raise SigningKeyError(f"{where}: not a table")
    key_id = _ident(table, "key_id", KEY_ID, where)
    where = f"{where} ({key_id})"
    alg = _alg(table, where)
    name = "secret" if alg == "hmac-sha256" else "public_key"
    text = table.get(name)
    if not isinstance(text, str):
        raise SigningKeyError(f"{where}: {alg} keys need {name} (hex or base64)")
    material = decode_material(text)
    _check_material(alg, material, f"{where}: {name}")
    revoked = table.get("revoked", False)
    if not isinstance(revoked, bool):
        raise SigningKeyError(f"{where}: revoked must be true or false")
    not_before, not_after = _when(table, "not_before", where), _when(table, "not_after", where)
    if not_before and not_after and not_after <= not_before:
        raise SigningKeyError(f"{where}: not_after is not after not_before")
    return RegistryKey(key_id, _ident(table, "dc_id", DC_ID, where), alg, material,
                       not_before, not_after, revoked)


def _when(table: Mapping[str, Any], name: str, where: str) -> datetime | None:
    value = table.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise SigningKeyError(f"{where}: {name} is not an RFC 3339 time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SigningKeyError(f"{where}: {name} needs a zone (e.g. 2026-01-01T00:00:00Z)")
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise SigningKeyError(f"{where}: {name} must be a time with a zone")


def parse_header(header_value: bytes) -> tuple[str, str, bytes] | None:
    """(key id, alg, signature) from a header value, or None when it is not well formed."""
    if len(header_value) > MAX_HEADER_BYTES:
        return None
    try:
        text = header_value.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split(";")
    if len(parts) != 4 or parts[0] != VERSION:
        return None
    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    kid, alg, sig = fields.get("kid", ""), fields.get("alg", ""), fields.get("sig", "")
    if not KEY_ID.match(kid) or alg not in ALGS or not re.fullmatch(r"[A-Za-z0-9_-]+", sig):
        return None
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (ValueError, binascii.Error):
        return None
    return kid, alg, raw


def verify(
    value: bytes, header_value: bytes | None, registry: KeyRegistry, dc_id: str, at: datetime
) -> str | None:
    """None when `value` is signed by a key of DC `dc_id` valid at `at`; else a short reason."""
    if header_value is None:
        return f"no {SIGNATURE_HEADER} header"
    parsed = parse_header(header_value)
    if parsed is None:
        return f"malformed {SIGNATURE_HEADER} header"
    kid, alg, sig = parsed
    key = registry.get(kid)
    if key is None:
        return f"unknown key id {kid!r}"
    if alg != key.alg:
        return f"key {kid!r} is {key.alg}, the header says {alg}"
    if key.revoked:
        return f"key {kid!r} is revoked"
    if not key.valid_at(at):
        return f"key {kid!r} is not valid at {at.isoformat()} (valid {key.window()})"
    if key.dc_id != dc_id:
        return f"key {kid!r} belongs to DC {key.dc_id!r}, the event names DC {_short(dc_id)}"
    if not _matches(key, value, sig):
        return f"signature by key {kid!r} does not match the value (tampered or wrong key)"
    return None


def _matches(key: RegistryKey, value: bytes, sig: bytes) -> bool:
    if key.alg == "hmac-sha256":
        return hmac.compare_digest(hmac.new(key.material, value, hashlib.sha256).digest(), sig)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.material).verify(sig, value)
    except (InvalidSignature, ValueError):
        return False
    return True


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
