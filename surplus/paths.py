"""Where the project keeps its local state (the repository root and its git-ignored var/), and the
one way a command creates a directory it was given. Pure, but for `make_dir` (I/O)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """The git-ignored working directory for local data (SURPLUS_VAR_DIR overrides)."""
    return Path(os.environ.get("SURPLUS_VAR_DIR", REPO / "var"))


def default_clickhouse_url() -> str:
    return f"chdb://{var_dir() / 'chdb'}"


def make_dir(path: Path | str, what: str = "directory") -> Path:
    """Create the directory `path` unless it exists, and nothing above it: its parent must exist.

    Inside the project's own var/ (`var_dir()`, itself made when its parent exists) the levels
    between are made too. Raises UserError (one line, naming `what`) when the parent is missing,
    when `path` is a file, or when the system refuses (permissions, read-only file system)."""
    from surplus.errors import UserError

    path = Path(path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"{what} {path} is a file, not a directory")
    base = var_dir().expanduser()
    ours = path.absolute().is_relative_to(base.absolute()) and base.absolute().parent.is_dir()
    if not ours and not path.absolute().parent.is_dir():
        raise UserError(f"cannot create {what} {path}: its parent directory {path.absolute().parent} "
                        "does not exist (create it first, or give a path whose parent exists)")
    try:
        path.mkdir(parents=ours, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    return path
