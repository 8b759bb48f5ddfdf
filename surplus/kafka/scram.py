"""SCRAM-SHA-512 users of the secure local broker: their passwords and their creation. I/O.

The broker's own user and `admin` are written into the storage at format time
(`format_arguments`); further users (one per DC, the workers) are added through the Admin API
(`add_user`). Passwords are made once and kept in `secure/passwords.json` (mode 0600).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from surplus.kafka.pki import private
from surplus.kafka.templates import SCRAM_MECHANISM

FORMATTED_USERS = ("broker", "admin")


def passwords(secure_dir: Path) -> dict[str, str]:
    """The broker's own, the admin's and the keystores' passwords (made once, mode 0600)."""
    path = secure_dir / "passwords.json"
    try:
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    except (OSError, ValueError):
        pass
    secure_dir.mkdir(parents=True, exist_ok=True)
    made = {name: secrets.token_hex(16) for name in ("store", *FORMATTED_USERS)}
    private(path, json.dumps(made))
    return made


def format_arguments(secure_dir: Path) -> list[str]:
    """`kafka-storage format` arguments that create the broker and admin users."""
    known = passwords(secure_dir)
    args: list[str] = []
    for user in FORMATTED_USERS:
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={known[user]}]"]
    return args


def add_user(admin: Any, name: str, password: str, timeout_s: float = 30) -> None:
    """Create or update a SCRAM-SHA-512 user through `admin` (a confluent-kafka AdminClient)."""
    from confluent_kafka.admin._scram import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    upsert = UserScramCredentialUpsertion(
        name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=timeout_s)
