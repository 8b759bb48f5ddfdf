"""Writes schemas/jsonschema/<type>.json from the models, for agents in other languages. Pure but main."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.registry import EVENT_TYPES

OUT = Path(__file__).resolve().parent.parent / "jsonschema"


def render() -> dict[str, str]:
    """File name -> JSON text, deterministic."""
    files = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://cpn.example/schemas/{event_type}.json"
        files[f"{event_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale JSON Schema files: {', '.join(stale)}; run python -m schemas.tools.gen_jsonschema")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
