"""Event signatures (schemas.signing, streams.signing): header format, registry, rotation, DC binding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.decode import decode
from schemas.reasons import Reason, Reject
from schemas.signing import (
    SIGNATURE_HEADER,
    KeyRegistry,
    SigningKey,
    SigningKeyError,
    load_signing_key,
    parse_header,
    sign,
    verify,
)
from streams.signing import event_dc, keygen, load_verifier, main, make_verifier
from surplus.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 5, tzinfo=UTC)
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))
KEY_A = SigningKey("gz-guian-01-2026a", "gz-guian-01", "hmac-sha256", SECRET_A)
KEY_B = SigningKey("bj-01-2026a", "bj-01", "hmac-sha256", SECRET_B)

REGISTRY = f"""
[[key]]
key_id = "gz-guian-01-2026a"
dc_id = "gz-guian-01"
alg = "hmac-sha256"
secret = "{SECRET_A.hex()}"

[[key]]
key_id = "bj-01-2026a"
dc_id = "bj-01"
secret = "base64:{__import__('base64').b64encode(SECRET_B).decode()}"
"""


def golden(event_type: str = "cpn.capacity.v1") -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{event_type}.json").read_text())


def signed(obj: dict[str, Any], key: SigningKey = KEY_A) -> tuple[bytes, dict[str, bytes]]:
    raw = json.dumps(obj).encode()
    name, value = sign(raw, key)
    return raw, {name: value}


def reason(raw: bytes, headers: dict[str, bytes], registry: str = REGISTRY) -> str | None:
    verifier = make_verifier(KeyRegistry.from_toml(registry), clock=lambda: NOW)
    return verifier(raw, headers, json.loads(raw))


def test_header_format_names_key_alg_and_signature() -> None:
    name, value = sign(b"{}", KEY_A)
    assert name == SIGNATURE_HEADER == "surplus-signature"
    text = value.decode()
    assert text.startswith("v1;kid=gz-guian-01-2026a;alg=hmac-sha256;sig=")
    kid, alg, sig = parse_header(value)  # type: ignore[misc]
    assert (kid, alg, len(sig)) == ("gz-guian-01-2026a", "hmac-sha256", 32)
    assert "=" not in text.rsplit("sig=", 1)[1]  # base64url without padding


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_genuine_event_passes_and_decodes(alg: str, tmp_path: Path) -> None:
    key_file, entry = keygen("gz-k1", "gz-guian-01", alg)
    (tmp_path / "key.toml").write_text(key_file)
    (tmp_path / "registry.toml").write_text(entry)
    key = load_signing_key(tmp_path / "key.toml")
    raw, headers = signed(golden(), key)
    verifier = load_verifier(tmp_path / "registry.toml", clock=lambda: NOW)
    out = decode(raw, now=NOW, key=b"gz-guian-01", headers=headers, verifier=verifier)
    assert not isinstance(out, Reject), out
    if alg == "ed25519":
        assert "secret" not in entry  # workers hold only the public key


def test_missing_wrong_and_tampered_signatures_are_bad_signature() -> None:
    raw, headers = signed(golden())
    assert reason(raw, headers) is None
    assert reason(raw, {}) == "no surplus-signature header"
    assert "malformed" in (reason(raw, {SIGNATURE_HEADER: b"hmac abc"}) or "")
    tampered = raw.replace(b'"devices_allocated": 380', b'"devices_allocated": 3')
    assert tampered != raw
    assert "does not match" in (reason(tampered, headers) or "")
    # re-serialised (same JSON, other bytes): the signature is over the exact bytes
    assert "does not match" in (reason(json.dumps(json.loads(raw), indent=1).encode(), headers) or "")
    out = decode(tampered, now=NOW, key=b"gz-guian-01", headers=headers,
                 verifier=make_verifier(KeyRegistry.from_toml(REGISTRY)))
    assert isinstance(out, Reject) and out.reason is Reason.BAD_SIGNATURE


def test_another_dcs_key_is_refused() -> None:
    raw, headers = signed(golden(), KEY_B)  # gz-guian-01's event signed with bj-01's key
    why = reason(raw, headers)
    assert why is not None and "belongs to DC 'bj-01'" in why


def test_source_and_data_dc_must_agree() -> None:
    obj = golden()
    obj["source"] = "//cpn/dc/bj-01"  # source names B, data names A, signed with B's key
    raw, headers = signed(obj, KEY_B)
    why = reason(raw, headers)
    assert why is not None and "data.dc_id" in why
    assert event_dc({"data": {"dc_id": "x"}}) == "x"
    assert event_dc({"source": "//cpn/dc/y", "data": []}) == "y"
    assert not isinstance(event_dc({}), str)


def test_unknown_key_and_alg_confusion() -> None:
    stranger = SigningKey("nobody", "gz-guian-01", "hmac-sha256", SECRET_A)
    raw, headers = signed(golden(), stranger)
    assert reason(raw, headers) == "unknown key id 'nobody'"
    forged = headers[SIGNATURE_HEADER].replace(b"hmac-sha256", b"ed25519")
    forged = forged.replace(b"nobody", b"gz-guian-01-2026a")
    why = reason(raw, {SIGNATURE_HEADER: forged})
    assert why is not None and "the header says ed25519" in why


def rotation_registry() -> KeyRegistry:
    return KeyRegistry.from_toml(f"""
[[key]]
key_id = "old"
dc_id = "gz-guian-01"
secret = "{SECRET_A.hex()}"
not_before = 2026-01-01T00:00:00Z
not_after = 2026-12-01T00:00:00Z

[[key]]
key_id = "new"
dc_id = "gz-guian-01"
secret = "{SECRET_B.hex()}"
not_before = 2026-11-15T00:00:00Z
""")


@pytest.mark.parametrize(
    ("at", "old_ok", "new_ok"),
    [
        (datetime(2026, 11, 1, tzinfo=UTC), True, False),  # before the rollover
        (datetime(2026, 11, 20, tzinfo=UTC), True, True),  # overlap: both
        (datetime(2026, 12, 1, tzinfo=UTC), False, True),  # old one's not_after: new only
        (datetime(2027, 6, 1, tzinfo=UTC), False, True),
    ],
)
def test_key_rotation(at: datetime, old_ok: bool, new_ok: bool) -> None:
    registry = rotation_registry()
    old = SigningKey("old", "gz-guian-01", "hmac-sha256", SECRET_A)
    new = SigningKey("new", "gz-guian-01", "hmac-sha256", SECRET_B)
    value = b'{"x": 1}'
    assert (verify(value, sign(value, old)[1], registry, "gz-guian-01", at) is None) is old_ok
    assert (verify(value, sign(value, new)[1], registry, "gz-guian-01", at) is None) is new_ok
    # the worker's verifier checks at the event's time
    obj = golden()
    obj["time"] = at.isoformat()
    raw, headers = signed(obj, old)
    assert (make_verifier(registry)(raw, headers, json.loads(raw)) is None) is old_ok


def test_revoked_key_is_refused_at_any_time() -> None:
    text = REGISTRY.replace('alg = "hmac-sha256"\n', 'alg = "hmac-sha256"\nrevoked = true\n', 1)
    raw, headers = signed(golden())
    assert reason(raw, headers, text) == "key 'gz-guian-01-2026a' is revoked"


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("", "no [[key]]"),
        ('[[key]]\nkey_id = "k"\ndc_id = "d"\nsecret = "00ff"\n', "at least 32"),
        ('[[key]]\nkey_id = "k"\ndc_id = "D!"\nsecret = "' + "ab" * 32 + '"\n', "dc_id"),
        ('[[key]]\nkey_id = "k"\ndc_id = "d"\nalg = "md5"\nsecret = "x"\n', "alg"),
        ('[[key]]\nkey_id = "k"\ndc_id = "d"\nalg = "ed25519"\nsecret = "' + "ab" * 32 + '"\n',
         "public_key"),
        ('[[key]]\nkey_id = "k"\ndc_id = "d"\nsecret = "' + "ab" * 32
         + '"\nnot_after = 2026-01-01T00:00:00\n', "zone"),
        (('[[key]]\nkey_id = "k"\ndc_id = "d"\nsecret = "' + "ab" * 32 + '"\n') * 2, "twice"),
        ('[[key]]\nkey_id = "k"\ndc_id = "d"\nsecret = "not base64 !!"\n', "neither hex"),
    ],
)
def test_bad_registries_say_why_without_the_secret(toml: str, fragment: str) -> None:
    with pytest.raises(SigningKeyError, match=None) as info:
        KeyRegistry.from_toml(toml)
    assert fragment in str(info.value)
    assert "ab" * 32 not in str(info.value)


def test_load_verifier_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="signing keys"):
        load_verifier(tmp_path / "missing.toml")


def test_secrets_never_in_repr_or_str() -> None:
    registry = KeyRegistry.from_toml(REGISTRY)
    for text in (repr(KEY_A), str(KEY_A), repr(registry), repr(list(registry))):
        for secret in (SECRET_A, SECRET_B):
            assert secret.hex() not in text
            assert repr(secret) not in text
            assert __import__("base64").b64encode(secret).decode() not in text
    assert "gz-guian-01-2026a" in repr(KEY_A)


def test_short_hmac_secret_refused() -> None:
    with pytest.raises(SigningKeyError, match="at least 32"):
        SigningKey("k", "d", "hmac-sha256", b"short")


def test_keygen_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keygen", "--key-id", "k1", "--dc-id", "gz-guian-01", "--alg", "ed25519",
          "--key-file", str(tmp_path / "k.toml")])
    out = capsys.readouterr().out
    key = load_signing_key(tmp_path / "k.toml")
    assert (tmp_path / "k.toml").stat().st_mode & 0o077 == 0
    assert key.secret.hex() not in out
    registry = KeyRegistry.from_toml(out)
    value = b"payload"
    assert verify(value, sign(value, key)[1], registry, "gz-guian-01", datetime.now(UTC)
                  + timedelta(seconds=1)) is None
