"""Writes schemas/jsonschema/<type>.json from the models, for agents in other languages. Pure but main.

Each file validates one structured-mode event (JSON Schema 2020-12; patterns are ECMA-262 with
the `u` flag). A document is accepted by its type's file exactly when `decode` accepts it, except
for what a JSON Schema cannot express, which the receiver checks after it (`NOT_EXPRESSED`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.registry import EVENT_TYPES

OUT = Path(__file__).resolve().parent.parent / "jsonschema"
NOT_EXPRESSED = (
    "Checked by the receiver after this schema (SPEC §3), not expressible in it: the message "
    "size (64 KiB of value and headers); the cross-field rules (`inconsistent`: devices, "
    "energies, sources sum, source = message key = data.dc_id); `time` at most 300 s ahead "
    "(`future_time`) and a real calendar day (no 02-30); a capacity event's device_model in the "
    "catalogue or a peak given (`unknown_device_model`); a job's rising counters "
    "(`counter_regression`). In binary mode the attributes are `ce_` headers and the value is "
    "`data`: it validates against this file's $defs for the payload."
)


def render() -> dict[str, str]:
    """File name -> JSON text, deterministic."""
    files = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://cpn.example/schemas/{event_type}.json"
        schema["$comment"] = NOT_EXPRESSED
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
