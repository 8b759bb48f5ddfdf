"""The platform's statement key (SPEC §4.1): an Ed25519 key file kept like the DCs' signing keys.
I/O (one small TOML file, mode 0600).

Key file: `key_id = "..."`, `alg = "ed25519"`, `secret = "<hex of the 32-byte seed>"`. Where it
is: `SURPLUS_STATEMENT_KEY`, else `var/keys/statement-key.toml`. Create one with
`python -m streams.signing statement-key --key-id K --key-file PATH`; `surplus ledger pubkey`
prints its public key (PEM), which is what the parties verify statement files with.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from schemas.signing import KEY_ID, SigningKeyError, decode_material
from streams.statements import StatementError, StatementKey
from surplus.errors import UserError
from surplus.paths import var_dir

ENV_VAR = "SURPLUS_STATEMENT_KEY"


def default_path() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else var_dir() / "keys" / "statement-key.toml"


def load_statement_key(path: Path | None = None) -> StatementKey:
    """Read the key file; a UserError naming the file and the problem (never the secret)."""
    path = path or default_path()
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no statement key at {path}: create one with `python -m streams.signing "
                        f"statement-key --key-file {path}` (or set {ENV_VAR})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"statement key {path}: cannot read it ({type(exc).__name__})") from None
    key_id, alg, secret = table.get("key_id"), table.get("alg", "ed25519"), table.get("secret")
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise UserError(f"statement key {path}: key_id must match {KEY_ID.pattern}")
    if alg != "ed25519":
        raise UserError(f"statement key {path}: alg must be ed25519")
    if not isinstance(secret, str):
        raise UserError(f"statement key {path}: secret must be a hex or base64 string")
    try:
        return StatementKey(key_id, decode_material(secret))
    except (SigningKeyError, StatementError) as exc:
        raise UserError(f"statement key {path}: {exc}") from None


def new_key_file(key_id: str) -> str:
    """The TOML text of a new random statement key."""
    if not KEY_ID.match(key_id):
        raise UserError(f"key_id must match {KEY_ID.pattern}")
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return (f"# the platform's statement key (Ed25519), created {now}; keep it secret\n"
            f'key_id = "{key_id}"\nalg = "ed25519"\nsecret = "{secrets.token_bytes(32).hex()}"\n')


def write_key_file(path: Path, key_id: str) -> StatementKey:
    """Create a new key file at `path` (mode 0600); refuses to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path} exists: a statement key is never overwritten") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new_key_file(key_id))
    return load_statement_key(path)
