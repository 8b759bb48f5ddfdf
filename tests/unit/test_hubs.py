"""The hub table (schemas/hubs.py) against the vendored reference, and the repository carries it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from schemas.events import Registration
from schemas.hubs import HUB_IDS, HUBS, NO_HUB, PUE_TARGET_BY_HUB, hub_name, pue_limit

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "schemas" / "reference"


def test_the_hub_table_is_the_reference() -> None:
    hubs = json.loads((REFERENCE / "catalogue.json").read_text(encoding="utf-8"))["hubs"]
    assert [h["id"] for h in hubs] == [h for h in HUB_IDS if h != NO_HUB]
    for ref in hubs:
        hub = HUBS[ref["id"]]
        assert (hub.name, hub.name_zh, hub.role, hub.pue_target) == (
            ref["name_en"], ref["name_zh"], ref["role"], ref["pue_target"])
    assert {h["id"]: h["pue_target"] for h in hubs} == PUE_TARGET_BY_HUB


def test_hub_lookups() -> None:
    assert hub_name("gz") == "Guizhou hub" and HUBS["gz"].short_name == "Guizhou"
    assert hub_name("xx") == "xx"
    assert pue_limit("gz") == 1.2 and pue_limit("jjj") == 1.25 and pue_limit(NO_HUB) == 1.5


def test_a_registration_names_one_of_the_hubs() -> None:
    hub_field = Registration.model_json_schema()["properties"]["hub"]
    assert tuple(hub_field["enum"]) == HUB_IDS


def test_the_vendored_files_are_the_ones_the_readme_names() -> None:
    readme = (REFERENCE / "README.md").read_text(encoding="utf-8")
    for name in ("catalogue.json", "domain-data.md"):
        digest = hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest()
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        assert digest in row, f"{name}: its checksum in schemas/reference/README.md is stale"


def test_nothing_reads_outside_the_repository() -> None:
    """No Python file of the project names the shared folder beside the checkout as a path."""
    shared = "sha" + "red"  # spelt in two pieces so that this file does not match itself
    outside = re.compile(rf"{shared}/reference|\.\./{shared}|parent\s*/\s*\"{shared}\"|\"{shared}\"\s*/")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for top in ("agents", "schemas", "streams", "surplus", "tests", "tools", "bench")
        for path in (REPO / top).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert offenders == []
