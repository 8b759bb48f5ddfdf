"""The ClickHouse store: one way to connect (chDB or a server). I/O.

All access goes through clickhouse-connect, so `chdb:///path` (in-process, on disk) and
`http(s)://user:pass@host:8123/cpn` (a server) run the same code. Migrations live in
surplus/migrations.py (`migrate` is re-exported here for callers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

from surplus.errors import UserError
from surplus.logs import reason
from surplus.migrations import MIGRATIONS_DIR, migrate
from surplus.paths import make_dir

__all__ = ["MIGRATIONS_DIR", "Target", "connect", "embedded_dir", "is_store", "migrate", "parse_url", "redact"]

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the store is: the DSN clickhouse-connect gets and the database name."""

    dsn: str
    database: str

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")


def parse_url(url: str, database: str | None = None) -> Target:
    """`chdb:///path[?database=x]` or `http(s)://user:pass@host:port/db` -> Target.

    The password may hold any character, raw or percent-encoded, `# ? / @ :` included: the
    user information is everything before the last `@` of the URL (a host, path or database never
    holds one). The DSN handed to clickhouse-connect carries it percent-encoded. Raises
    UserError, with the password redacted, for anything it cannot use."""
    scheme, sep, rest = url.partition("://")
    if scheme == "chdb" and sep:
        parts = urlsplit(url)
        db = database or parse_qs(parts.query).get("database", ["cpn"])[0]
        dsn = f"chdb://{parts.netloc}{parts.path}"
    elif scheme in ("http", "https") and sep:
        userinfo, at, location = rest.rpartition("@")
        try:
            parts = urlsplit(f"{scheme}://{location}")
            port = parts.port
        except ValueError as exc:
            raise UserError(f"CLICKHOUSE_URL {redact(url)!r}: {exc}") from None
        if not parts.hostname:
            raise UserError(f"CLICKHOUSE_URL {redact(url)!r} names no host")
        db = database or parts.path.strip("/") or "cpn"
        credentials = ""
        if at:
            user, colon, password = userinfo.partition(":")
            credentials = quote(unquote(user), safe="")
            if colon:
                credentials += ":" + quote(unquote(password), safe="")
            credentials += "@"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        dsn = f"{scheme}://{credentials}{host}{f':{port}' if port is not None else ''}"
    else:
        raise UserError(
            f"CLICKHOUSE_URL {redact(url)!r}: use chdb:///path or http(s)://user:pass@host:8123/db"
        )
    if not DB_NAME.match(db):
        raise UserError(f"database name {db!r} is not a plain identifier")
    return Target(dsn=dsn, database=db)


def is_store(path: Path) -> bool:
    """Whether `path` holds a chDB store (its `metadata` directory)."""
    return (path / "metadata").is_dir()


def embedded_dir(path: Path, *, create: bool) -> Path:
    """The directory of an embedded store: there already, or made (only when `create`; one level).

    UserError when it is missing and not to be created, or is an empty directory."""
    if is_store(path):
        return path
    if not create:
        what = "is an empty directory" if path.is_dir() and not any(path.iterdir()) else (
            "is not a chDB store" if path.exists() else "does not exist")
        raise UserError(f"no store at {path}: it {what}; create one with "
                        f"`surplus db migrate --url chdb://{path}` (or run a worker or the demo)")
    return make_dir(path, "the store directory")


def redact(url: str) -> str:
    """The URL with its password (whatever characters it holds) replaced by `***`; never raises."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, location = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{location}"


def connect(url: str, database: str | None = None, *, create: bool = True) -> tuple[Client, Target]:
    """A clickhouse-connect client; one clear UserError when the store cannot be reached.

    An embedded store (`chdb:///path`) is made when missing if `create` (its directory only, when
    the parent exists: surplus.paths.make_dir); the commands that only read or add to a migrated
    store (report, ledger, place, api, alerts, forecast) pass `create=False`: a missing store is
    then one UserError, and nothing is created."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ClickHouseError

    target = parse_url(url, database)
    if target.embedded:
        embedded_dir(Path(target.dsn[len("chdb://"):]), create=create)
    try:
        client = clickhouse_connect.get_client(dsn=target.dsn)
    except (ClickHouseError, OSError) as exc:
        text = str(exc)
        lowered = text.lower()
        if target.embedded and any(w in lowered for w in ("lock", "already", "embeddedserver")):
            raise UserError(
                f"the embedded store {target.dsn} is in use by another process "
                "(a running worker or demo?); stop it, or query through it"
            ) from None
        first = reason(text.strip().splitlines()[0]) if text.strip() else type(exc).__name__
        raise UserError(f"cannot reach ClickHouse at {redact(target.dsn)}: {first}") from None
    return client, target
