"""`python -m streams.signing fleet-keys` (used by the compose stack): a key per DC, a registry that
verifies them, and a second run that keeps the keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from schemas.signing import SIGNATURE_HEADER, load_signing_key, sign
from streams.signing import fleet_keys, load_verifier


def test_fleet_keys_are_idempotent_and_verify(tmp_path: Path) -> None:
    registry = fleet_keys(tmp_path, ["dc-a", "dc-b"])
    first = {p.name: p.read_text() for p in tmp_path.glob("dc-*.toml")}
    assert fleet_keys(tmp_path, ["dc-a", "dc-b"]) == registry
    assert {p.name: p.read_text() for p in tmp_path.glob("dc-*.toml")} == first  # the keys are kept
    assert (tmp_path / "dc-a.toml").stat().st_mode & 0o077 == 0

    verifier = load_verifier(registry)
    event = {"source": "//cpn/dc/dc-a", "time": datetime.now(UTC).isoformat(), "data": {"dc_id": "dc-a"}}
    raw = json.dumps(event).encode()
    name, header = sign(raw, load_signing_key(tmp_path / "dc-a.toml"))
    assert name == SIGNATURE_HEADER
    assert verifier(raw, {name: header}, event) is None
    _, other = sign(raw, load_signing_key(tmp_path / "dc-b.toml"))
    assert verifier(raw, {name: other}, event) is not None  # DC b's key cannot speak for DC a
