"""Where the project keeps its local state: the repository root and its git-ignored var/. Pure."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """The git-ignored working directory for local data (SURPLUS_VAR_DIR overrides)."""
    return Path(os.environ.get("SURPLUS_VAR_DIR", REPO / "var"))


def default_clickhouse_url() -> str:
    return f"chdb://{var_dir() / 'chdb'}"
