"""The generated JSON Schema files match the models, and the golden examples validate against the models."""

from __future__ import annotations

from schemas.tools import gen_jsonschema


def test_jsonschema_files_are_current() -> None:
    assert gen_jsonschema.main(["--check"]) == 0, "run: python -m schemas.tools.gen_jsonschema"


def test_every_event_type_has_a_schema_file() -> None:
    from schemas.registry import EVENT_TYPES

    assert set(gen_jsonschema.render()) == {f"{t}.json" for t in EVENT_TYPES}
