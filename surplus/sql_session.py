"""Where `surplus sql` runs its statements, as an analyst: the embedded chDB store or a ClickHouse HTTP server. I/O.

Two sessions with one interface (`run(statement, fmt)` -> the result in ClickHouse's own output
format, piece by piece):

- **embedded** (`chdb:///path`): the store opened in this process with the engine config the
  served store uses (surplus/chserver/access.py): the analyst's deploy/clickhouse profile
  (`readonly = 2` last, execution-time, memory and result limits with their constraints), its row
  policies when it is a provincial analyst, and no file(), url() or remote() reads;
- **served** (`http(s)://…`, `surplus store serve` or a ClickHouse server): clickhouse-connect's
  HTTP client signed in as the analyst; the server enforces the user's profile.

Both keep one session, so `SET` and `USE` hold for the statements after them. Every failure of
the store is a `StoreError` with ClickHouse's code and its message as one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from surplus.errors import UserError

_CODE = re.compile(r"Code:\s*(\d+)\.\s*(?:DB::Exception:\s*)?(.*)")
_TRAILER = re.compile(r"\s*\(version [^)]*\)(\s*\(for url [^)]*\))?\s*$")
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*([^'\")]+)")
MAX_MESSAGE = 400  # characters of a message kept on its line (syntax errors list every expectation)


class StoreError(Exception):
    """A statement the store refused (syntax, unknown table, access denied, limits): one line."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return f"Code {self.code}: {self.message}" if self.code is not None else self.message


def store_error(text: str) -> StoreError:
    """ClickHouse's exception text (from the engine, or an HTTP client's wrapping of it) -> one line."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    for line in lines:
        match = _CODE.search(line)
        if match:
            message = _TRAILER.sub("", match.group(2)).strip()
            return StoreError(int(match.group(1)), _clip(message or "unknown error"))
    errno = _ERRNO.search(text)  # a connection that failed: its reason, not the whole chain
    if errno:
        return StoreError(None, errno.group(1).strip().lower())
    return StoreError(None, _clip(lines[0] if lines else "unknown error"))


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


class Session(Protocol):
    def run(self, statement: str, fmt: str | None) -> Iterator[bytes]:
        """The statement's result in `fmt` (None: the statement's own FORMAT, or none); StoreError."""

    def close(self) -> None: ...


class EmbeddedSession:
    """The chDB store at `path`, opened in this process as the analyst `user` of `users_dir`."""

    def __init__(self, path: Path, database: str, user: str, users_dir: Path,
                 settings: Mapping[str, str]) -> None:
        from surplus.chserver import protocol
        from surplus.chserver.access import engine_config, reader
        from surplus.chserver.cli import declared_relations
        from surplus.chserver.engine import Engine, relations, run_settings
        from surplus.store import is_store

        if not is_store(path):  # opening what is not a chDB store would make one there
            raise UserError(f"no store at {path} (create one with `surplus db migrate --url chdb://{path}`)")
        analyst, profiles = reader(users_dir, database, user)
        served = _served(path)
        if served is not None:
            raise UserError(served)
        self._dir = tempfile.TemporaryDirectory(prefix="surplus-sql-")
        self.engine: Any = None
        said = Path(self._dir.name) / "engine.stderr"
        try:
            known = declared_relations()
            with _stderr_to(said):  # chDB prints a refused lock itself; it is said below in one line
                if analyst.grants is not None or analyst.filters:  # its policies must cover every relation
                    known |= relations(path, database)
                config = engine_config(Path(self._dir.name), database, [analyst], profiles, known)
                self.engine = Engine(path, config)
                self.engine.open()
            self.conn = self.engine.connect(analyst)
            run_settings(self.conn, {**settings})
            self.conn.query(f"USE {database}")
        except protocol.ServerError as exc:
            self.close()
            raise store_error(str(exc)) from None
        except Exception as exc:  # chDB's own: the store is locked by another process, or broken
            told = said.read_text(errors="replace") if said.exists() else ""
            self.close()
            raise UserError(_open_failure(path, f"{exc}\n{told}")) from None

    def run(self, statement: str, fmt: str | None) -> Iterator[bytes]:
        from surplus.chserver import protocol
        from surplus.chserver.engine import Stream

        try:
            stream = Stream(self.conn, statement, fmt or "TabSeparated", {})
        except protocol.ServerError as exc:
            raise store_error(str(exc)) from None
        try:
            while chunk := stream.fetch():
                yield chunk
        except protocol.ServerError as exc:
            raise store_error(str(exc)) from None
        finally:
            stream.close()

    def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.close()
        self._dir.cleanup()


def _served(path: Path) -> str | None:
    """The line to say when `surplus store serve` holds the store (its lock is taken), else None."""
    import fcntl

    state_dir = path.with_name(path.name + ".serve")
    if not (state_dir / "lock").exists():
        return None
    with open(state_dir / "lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return None
    try:
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
        where = f"http://analyst:<password>@{state['host']}:{state['port']}/{state['database']}"
    except (OSError, ValueError, KeyError):
        where = "its http:// URL"
    return f"the store {path} is served by another process: query it there, --url {where}"


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (what C++ code writes) to `path` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _open_failure(path: Path, text: str) -> str:
    if "lock" in text.lower():
        return (f"the store {path} is open in another process (a worker or demo?): stop it, or serve "
                "the store (`surplus store serve`) and query its http:// URL")
    first = (text.strip().splitlines() or ["unknown error"])[0]
    return f"cannot open the store {path}: {first[:300]}"


class ServedSession:
    """A ClickHouse HTTP interface (a server, or `surplus store serve`) signed in as `user`."""

    def __init__(self, dsn: str, database: str, user: str, password: str,
                 settings: Mapping[str, str]) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        from surplus.store import redact

        self.settings = dict(settings)
        try:
            self.client = clickhouse_connect.get_client(dsn=dsn, username=user, password=password,
                                                        database=database)
        except ClickHouseError as exc:
            error = store_error(str(exc))
            if error.code is None:  # no answer from a server at all
                raise UserError(f"cannot reach ClickHouse at {redact(dsn)}: {error.message}") from None
            raise UserError(f"ClickHouse at {redact(dsn)} refused {user!r}: {error}") from None

    def run(self, statement: str, fmt: str | None) -> Iterator[bytes]:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            stream: Any = self.client.raw_stream(statement, settings=self.settings, fmt=fmt)
            try:
                while chunk := stream.read(1 << 16):
                    yield chunk
            finally:
                stream.close()
        except ClickHouseError as exc:
            raise store_error(str(exc)) from None

    def close(self) -> None:
        self.client.close()
