"""The worker's signature check: a Verifier for `decode` built from a key registry file. Wiring.

`load_verifier(path)` reads the registry (TOML `[[key]]`: key_id, dc_id, alg, secret or
public_key, not_before, not_after, revoked) once; the verifier it returns names the DC of an
event from its `source` and `data.dc_id` (they must agree) and checks the signature header with
`schemas.signing.verify` at the event's `time` (at the receiver's clock when the time is
missing or unreadable: the schema check rejects such an event later anyway). What it verifies
is what `decode` hands it: the value in structured mode, the canonical form of the `ce_`
headers and the value in binary mode (`schemas.signing.binary_signing_input`).

`python -m streams.signing keygen --key-id K --dc-id D [--alg ed25519]` prints a DC key file
and the registry entry that goes with it; `python -m streams.signing statement-key --key-id K
--key-file PATH` creates the platform's statement key (streams.statement_key) and prints its
public key.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from schemas.decode import Verifier
from schemas.events import SOURCE_PREFIX
from schemas.signing import (
    SIGNATURE_HEADER,
    KeyRegistry,
    SigningKey,
    SigningKeyError,
    load_signing_key,
    verify,
)
from surplus.errors import UserError

Clock = Callable[[], datetime]
MAX_TIME_CHARS = 40


def load_verifier(path: Path | str, *, clock: Clock = lambda: datetime.now(UTC)) -> Verifier:
    """A Verifier for the registry at `path`; a UserError naming the problem if it is unusable."""
    try:
        registry = KeyRegistry.load(path)
    except SigningKeyError as exc:
        raise UserError(f"signing keys: {exc}") from None
    return make_verifier(registry, clock=clock)


def make_verifier(registry: KeyRegistry, *, clock: Clock = lambda: datetime.now(UTC)) -> Verifier:
    """The Verifier over an already loaded registry."""

    def verifier(raw: bytes, headers: Mapping[str, bytes], obj: dict[str, object]) -> str | None:
        header = headers.get(SIGNATURE_HEADER)
        if isinstance(header, str):
            header = header.encode("utf-8", "replace")
        elif not isinstance(header, bytes):
            return f"no {SIGNATURE_HEADER} header"
        dc_id = event_dc(obj)
        if isinstance(dc_id, Mismatch):
            return dc_id.why
        return verify(raw, header, registry, dc_id, event_time(obj) or clock())

    return verifier


class Mismatch:
    """Why an event names no single DC."""

    def __init__(self, why: str) -> None:
        self.why = why


def event_dc(obj: Mapping[str, object]) -> str | Mismatch:
    """The DC an event claims to come from: `source` and `data.dc_id` must name the same one."""
    source = obj.get("source")
    from_source = (source[len(SOURCE_PREFIX):] if isinstance(source, str)
                   and source.startswith(SOURCE_PREFIX) else None)
    data = obj.get("data")
    from_data = data.get("dc_id") if isinstance(data, dict) else None
    if not isinstance(from_data, str):
        from_data = None
    if from_source is None and from_data is None:
        return Mismatch("the event names no DC (no source //cpn/dc/<dc_id>, no data.dc_id)")
    if from_source is not None and from_data is not None and from_source != from_data:
        return Mismatch(f"source names DC {_short(from_source)} but data.dc_id is "
                        f"{_short(from_data)}")
    return from_source if from_source is not None else str(from_data)


def event_time(obj: Mapping[str, object]) -> datetime | None:
    """The event's `time` when it is an RFC 3339 string with a zone, else None."""
    value = obj.get("time")
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def keygen(key_id: str, dc_id: str, alg: str) -> tuple[str, str]:
    """(the DC's key file, the registry entry) for a new random key, both TOML text."""
    key = SigningKey(key_id, dc_id, alg, secrets.token_bytes(32))  # type: ignore[arg-type]
    key_file = (f'key_id = "{key_id}"\ndc_id = "{dc_id}"\nalg = "{alg}"\n'
                f'secret = "{key.secret.hex()}"\n')
    material = (f'public_key = "{key.public_key().hex()}"' if alg == "ed25519"
                else f'secret = "{key.secret.hex()}"')
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    entry = (f'[[key]]\nkey_id = "{key_id}"\ndc_id = "{dc_id}"\nalg = "{alg}"\n{material}\n'
             f"# not_before = {now}   # optional validity window, checked at the event's time;\n"
             "# not_after = ...              # on the old key when this one replaces it\n")
    return key_file, entry


def fleet_keys(directory: Path, dc_ids: list[str]) -> Path:
    """A key file per DC in `directory` (kept if present) and the registry of them all; idempotent."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for dc_id in dc_ids:
        path = directory / f"{dc_id}.toml"
        if not path.exists():
            key_file, _ = keygen(f"{dc_id}-1", dc_id, "hmac-sha256")
            path.touch(mode=0o600)
            path.write_text(key_file)
        key = load_signing_key(path)
        entries.append(f'[[key]]\nkey_id = "{key.key_id}"\ndc_id = "{key.dc_id}"\nalg = "{key.alg}"\n'
                       f'secret = "{key.secret.hex()}"\n')
    registry = directory / "registry.toml"
    registry.touch(mode=0o600)
    registry.write_text("\n".join(entries))
    return registry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.signing")
    sub = parser.add_subparsers(dest="command", required=True)
    fleet = sub.add_parser("fleet-keys", help="a key file per DC and the workers' registry (idempotent)")
    fleet.add_argument("--dir", type=Path, required=True, help="where the key files and registry.toml go")
    fleet.add_argument("dc_ids", nargs="+")
    gen = sub.add_parser("keygen", help="print a new DC key file and its registry entry")
    gen.add_argument("--key-id", required=True)
    gen.add_argument("--dc-id", required=True)
    gen.add_argument("--alg", choices=["hmac-sha256", "ed25519"], default="hmac-sha256")
    gen.add_argument("--key-file", type=Path, help="write the key file here (mode 0600)")
    stmt = sub.add_parser("statement-key", help="create the platform's Ed25519 statement key file")
    stmt.add_argument("--key-id", default="statements-1")
    stmt.add_argument("--key-file", type=Path, help="where (default: $SURPLUS_STATEMENT_KEY or "
                      "var/keys/statement-key.toml); never overwritten")
    args = parser.parse_args(argv)
    if args.command == "statement-key":
        from streams.statement_key import default_path, write_key_file

        path = args.key_file or default_path()
        try:
            key = write_key_file(path, args.key_id)
        except UserError as exc:
            parser.exit(2, f"python -m streams.signing: error: {exc}\n")
        print(f"# statement key {key.key_id} written to {path}; its public key:")
        print(key.public_pem(), end="")
        return
    if args.command == "fleet-keys":
        print(fleet_keys(args.dir, args.dc_ids))
        return
    try:
        key_file, entry = keygen(args.key_id, args.dc_id, args.alg)
    except SigningKeyError as exc:
        parser.error(str(exc))
    if args.key_file is not None:
        args.key_file.touch(mode=0o600, exist_ok=False)
        args.key_file.write_text(key_file)
        print(f"# key written to {args.key_file}; add this to the workers' registry:")
    else:
        print(f"# the DC's key file (keep it secret, mode 0600):\n{key_file}")
        print("# the workers' registry entry:")
    print(entry, end="")


if __name__ == "__main__":
    main()
