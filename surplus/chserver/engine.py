"""The one chDB engine of the serving process: a connection per request or session. I/O.

chDB runs one engine per process, bound to one store path; every `chdb.connect(path)` is a
connection of its own to it, and connections run their queries at the same time (one query at
a time on each). So each HTTP request gets a fresh connection (about 1.5 ms) set up as its user,
unless it names a `session_id`: then the session's connection is kept and its requests queue on
it, as on a ClickHouse server. Every call here blocks; the HTTP side runs them in threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surplus.chserver import protocol
from surplus.chserver.access import User


def _chdb() -> Any:
    cwd = os.getcwd()
    os.chdir("/")  # chDB's first import reads ./config.xml when there is one
    try:
        import chdb
    finally:
        os.chdir(cwd)
    return chdb


def relations(path: Path, database: str) -> set[str]:
    """The tables and views of `database` in the store at `path` (the engine is closed after)."""
    chdb = _chdb()
    conn = chdb.connect(str(path))
    try:
        text = conn.query(f"SELECT name FROM system.tables WHERE database = '{database}'",
                          "TabSeparated").bytes().decode()
    finally:
        conn.close()
    return {line for line in text.splitlines() if line}


@dataclass(slots=True)
class Summary:
    """What X-ClickHouse-Summary reports."""

    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    elapsed_ns: int = 0

    def header(self) -> str:
        return "{" + ",".join(f'"{k}":"{getattr(self, k)}"' for k in (
            "read_rows", "read_bytes", "written_rows", "written_bytes", "result_rows",
            "result_bytes", "elapsed_ns")) + ',"total_rows_to_read":"0"}'


class Session:
    """A connection kept between requests that share a session_id; one request at a time."""

    def __init__(self, conn: Any, timeout_s: float) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.timeout_s = timeout_s
        self.last_used = time.monotonic()


class Engine:
    """The store's engine: opened with the generated users config, closed at stop."""

    def __init__(self, path: Path, config: Path) -> None:
        self.path = path
        self.config = config
        self._anchor: Any = None
        self._sessions: dict[tuple[str, str], Session] = {}
        self._sessions_lock = threading.Lock()
        self.version = ""
        self.timezone = "UTC"

    def open(self) -> None:
        chdb = _chdb()
        self._anchor = chdb.connect(f"{self.path}?config-file={self.config}")
        row = self._anchor.query("SELECT version(), timezone()", "TabSeparated").bytes().decode()
        self.version, self.timezone = row.strip().split("\t")

    def connect(self, user: User) -> Any:
        """A fresh connection set up as `user` (ServerError when the set-up is refused)."""
        conn = _chdb().connect(str(self.path))
        try:
            for statement in user.setup():
                conn.query(statement)
        except Exception as exc:
            conn.close()
            raise protocol.from_engine(str(exc)) from None
        return conn

    @contextlib.contextmanager
    def connection(self, user: User, session_id: str | None, timeout_s: float) -> Iterator[Any]:
        """The request's connection: the session's (waited for) or a fresh one closed after."""
        if not session_id:
            conn = self.connect(user)
            try:
                yield conn
            finally:
                conn.close()
            return
        key = (user.name, session_id)
        with self._sessions_lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(self.connect(user), timeout_s)
        if not session.lock.acquire(timeout=max(timeout_s, 1.0)):
            raise protocol.ServerError(protocol.SESSION_IS_LOCKED,
                                       f"Session {session_id} is locked by a concurrent client")
        try:
            session.timeout_s = timeout_s
            yield session.conn
        finally:
            session.last_used = time.monotonic()
            session.lock.release()

    def expire_sessions(self) -> int:
        """Close sessions idle past their timeout; return how many."""
        now = time.monotonic()
        closed = 0
        with self._sessions_lock:
            for key, session in list(self._sessions.items()):
                if now - session.last_used > session.timeout_s and session.lock.acquire(blocking=False):
                    del self._sessions[key]
                    session.conn.close()
                    closed += 1
        return closed

    def close(self) -> None:
        """Close every session (waiting for its request) and the engine itself."""
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with session.lock:
                session.conn.close()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None


def run_settings(conn: Any, settings: dict[str, str]) -> None:
    """Apply a request's settings to its connection (ServerError when one is refused)."""
    for name, value in settings.items():
        if not protocol.SETTING_NAME.match(name):
            raise protocol.ServerError(protocol.BAD_ARGUMENTS, f"Invalid setting name {name!r}")
        try:
            conn.query(f"SET {name} = {protocol.quote_setting(value)}")
        except Exception as exc:
            raise protocol.from_engine(str(exc)) from None


def execute(conn: Any, sql: str, fmt: str, params: dict[str, str]) -> tuple[bytes, Summary]:
    """Run a statement whose whole answer is returned at once."""
    try:
        result = conn.query(sql, fmt, params=params)
    except Exception as exc:
        raise protocol.from_engine(str(exc)) from None
    data = result.bytes()
    return data, Summary(read_rows=result.rows_read(), read_bytes=result.bytes_read(),
                         written_rows=result.rows_written(), written_bytes=result.bytes_written(),
                         result_bytes=len(data), elapsed_ns=int(result.elapsed() * 1e9))


class Stream:
    """A SELECT's result block by block (`fetch` -> bytes, b"" at the end)."""

    def __init__(self, conn: Any, sql: str, fmt: str, params: dict[str, str]) -> None:
        self.summary = Summary()
        self._done = False
        self._whole: bytes | None = None
        self._result: Any = None
        try:
            self._result = conn.send_query(sql, fmt, params=params)
        except Exception as exc:
            if "Streaming query is not supported" not in str(exc):  # DESCRIBE, SHOW CREATE, …
                raise protocol.from_engine(str(exc)) from None
            self._whole, self.summary = execute(conn, sql, fmt, params)

    def fetch(self) -> bytes:
        if self._whole is not None:
            whole, self._whole, self._done = self._whole, b"", True
            return whole
        if self._done:
            return b""
        try:
            chunk = self._result.fetch()
        except Exception as exc:
            self._done = True
            raise protocol.from_engine(str(exc)) from None
        data = chunk.bytes() if chunk is not None else b""
        if not data:
            self._done = True
            return b""
        self.summary.read_rows += chunk.rows_read()
        self.summary.read_bytes += chunk.bytes_read()
        self.summary.result_bytes += len(data)
        return data

    def close(self) -> None:
        if self._result is None:
            return
        if not self._done:
            with contextlib.suppress(Exception):
                self._result.cancel()
        with contextlib.suppress(Exception):
            self._result.close()


class Inserter:
    """An `INSERT … FORMAT F` fed the request body piece by piece."""

    def __init__(self, conn: Any, statement: str, fmt: str) -> None:
        try:
            self._inserter = conn.send_insert(statement, fmt)
        except Exception as exc:
            raise protocol.from_engine(str(exc)) from None
        self.started = time.perf_counter()

    def append(self, data: bytes) -> None:
        try:
            self._inserter.append(data)
        except Exception as exc:
            self.cancel()
            raise protocol.from_engine(str(exc)) from None

    def finish(self) -> Summary:
        try:
            done = self._inserter.finish()
        except Exception as exc:
            raise protocol.from_engine(str(exc)) from None
        return Summary(written_rows=done.rows_written, written_bytes=done.bytes_written,
                       elapsed_ns=int((time.perf_counter() - self.started) * 1e9))

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self._inserter.cancel()
