"""The README's agent snippets are cut from the client programs the tests build and run, so the
README cannot drift from code that works: `python -m tests.clients.snippets` rewrites them,
`--check` says which is stale. Pure but main."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLIENTS = REPO / "tests" / "clients"
# snippet name -> (file, start marker, end marker, fence language)
SNIPPETS = {
    "python": (CLIENTS / "sdk.py", "# snippet:python:start", "# snippet:python:end", "python"),
    "java": (CLIENTS / "cloudevents-java" / "src" / "main" / "java" / "cn" / "cpn" / "surplus" / "clients"
             / "Produce.java", "// snippet:start", "// snippet:end", "java"),
    "go": (CLIENTS / "kafka-go" / "main.go", "// snippet:go:start", "// snippet:go:end", "go"),
}


def snippet(name: str) -> str:
    path, start, end, _ = SNIPPETS[name]
    text = path.read_text(encoding="utf-8")
    body = text[text.index(start) + len(start):text.index(end)]
    return textwrap.dedent(body.strip("\n")).rstrip() + "\n"


def render(readme: str) -> str:
    for name, (_, _, _, lang) in SNIPPETS.items():
        block = f"<!-- snippet:{name} -->\n```{lang}\n{snippet(name)}```\n<!-- /snippet:{name} -->"
        readme, n = re.subn(rf"<!-- snippet:{name} -->.*?<!-- /snippet:{name} -->", lambda _m, b=block: b, readme,
                            flags=re.S)
        if n != 1:
            raise SystemExit(f"README.md needs one <!-- snippet:{name} --> ... <!-- /snippet:{name} --> block")
    return readme


def main(argv: list[str]) -> int:
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md agent snippets are stale; run python -m tests.clients.snippets")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
