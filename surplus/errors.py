"""The error a user sees as one line, and what each exit status means. Pure (but for lazy imports).

Exit status of every command (README "Exit status"; each command's --help ends with its own):

    0  done (for a check: nothing found)
    1  the check ran and found something: differences, a statement that fails, a tally that
       differs, notifications still undelivered, a broker that is not running
    2  bad input, or a store/broker/service that is missing or does not answer (one line)
    3  a worker stopped by the dead-letter guard, without committing (streams/guard.py)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_UNAVAILABLE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix (bad input, a service that does not answer): one line, exit 2."""

    def __init__(self, message: str, *, exit_code: int = EXIT_UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Found(UserError):
    """A check found what it looks for (differences, a failing statement): one line, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_FOUND)


class WorkerStop(UserError):
    """A running worker must stop without committing (e.g. too many dead letters): one line, exit 3."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_STOPPED)


def service_error(exc: BaseException) -> str | None:
    """One line for an error of a service's client library that reached the command unhandled
    (ClickHouse, Kafka, a refused connection), else None (a bug: let it show its traceback)."""
    if _is(exc, "clickhouse_connect.driver.exceptions", "ClickHouseError"):
        return clickhouse_line(str(exc))
    if _is(exc, "confluent_kafka", "KafkaException"):
        error = exc.args[0] if exc.args else exc
        text = error.str() if hasattr(error, "str") else str(error)
        return f"Kafka: {text}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service did not answer: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    return None


def _is(exc: BaseException, module: str, name: str) -> bool:
    """Whether `exc` is a `module.name` (False when that library is not installed)."""
    import importlib

    try:
        kind = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(exc, kind)


def clickhouse_line(text: str) -> str:
    """`Code: 81. DB::Exception: Database cpn does not exist. (UNKNOWN_DATABASE) (version …)` and
    the like, as one line with what to do."""
    import re

    flat = " ".join(text.split())
    match = re.search(r"DB::Exception: (?P<what>.+?)(?: \((?P<code>[A-Z_]+)\))?(?: \(version .*)?\.?$", flat)
    what = match.group("what").rstrip(".") if match else flat[:200]
    code = match.group("code") if match else None
    if code in ("UNKNOWN_DATABASE", "UNKNOWN_TABLE"):
        return f"ClickHouse: {what}: apply the migrations first (surplus db migrate --url ...)"
    return f"ClickHouse: {what}"
