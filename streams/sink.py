"""The ClickHouse sink: columnar inserts of a batch's rows, with bounded exponential back-off. I/O.

The only module of the worker that talks to ClickHouse. A write either completes for every
table or raises `SinkUnavailable`, and then the worker stops without committing: ClickHouse
being down never means skipping data. Retries use tenacity with exponential back-off and jitter
(`backoff_s` doubling up to `max_backoff_s`). A store that cannot be reached or refuses the
connection (an outage: `is_outage`) is waited out, however long it lasts (or up to `give_up_s`),
while the batch's offsets stay uncommitted; the outage is logged once when it starts and once when
writes go through again, never a line per retry. Any other error (the server answered and refused
this statement) gets `retries` more attempts, then `SinkUnavailable`. `stop()` ends a wait at once
(the worker is stopping). `check_schema` compares the columns the worker writes
(streams.batch.COLUMNS, from the registry) with the tables in `system.columns` at start, so a
missing migration is `SchemaDrift`, not a failed batch.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from streams.batch import COLUMNS, tables
from streams.ledger import JobKey, JobState

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)


class SinkUnavailable(RuntimeError):
    """ClickHouse did not take a write within the retry budget, or the worker stopped while it
    waited (retryable by a restart: nothing of the batch was committed)."""


class SchemaDrift(RuntimeError):
    """The store's tables are not the ones the worker writes (a migration is missing or extra)."""


# ClickHouse error codes (src/Common/ErrorCodes.cpp) that say "not now" rather than "never":
# the server is read-only, overloaded or lost its coordination for a while. Waited out like a
# server that cannot be reached.
TRANSIENT_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    279,  # ALL_CONNECTION_TRIES_FAILED
    319,  # UNKNOWN_STATUS_OF_INSERT
    999,  # KEEPER_EXCEPTION
})
_CODE = re.compile(r"\bcode: (\d+)", re.IGNORECASE)


# The HTTP stack under clickhouse-connect warns on every failed attempt; inside a sink call the
# sink's own two lines say it instead (see _Quiet).
DRIVER_LOGGERS = ("urllib3.connectionpool", "clickhouse_connect.driver._backend.http_sync",
                  "clickhouse_connect.driver.httpclient")
_inside = threading.local()


class _Quiet(logging.Filter):
    """Drops the driver's records logged from a thread that is inside a sink retry loop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_inside, "retrying", False)


_QUIET = _Quiet()


def _quiet_driver() -> None:
    for name in DRIVER_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means ClickHouse is unavailable for now (wait it out) rather than that it
    refused this statement: no connection (clickhouse-connect's OperationalError, an OSError) or
    a server error code in TRANSIENT_CODES."""
    from clickhouse_connect.driver.exceptions import OperationalError

    if isinstance(exc, OperationalError | OSError):
        return True
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in TRANSIENT_CODES


class Sink:
    """Writes a batch's rows to `database` through `client`; see the module doc for the retries.

    `backoff_s` is the first delay (seconds), doubled after each failed attempt up to
    `max_backoff_s`, plus up to `backoff_s` of random jitter. `retries`: further attempts after a
    statement error (None: as many as an outage). `give_up_s`: how long an outage is waited out
    (None: until it ends or `stop()`)."""

    def __init__(
        self,
        client: Client,
        database: str,
        *,
        retries: int | None = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        give_up_s: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_s = give_up_s
        self._stopping = threading.Event()
        self.sleep: Callable[[float], None] = sleep or self._wait  # a stop wakes a waiting retry
        self._contexts: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        # one statement at a time on the client: the metrics timer and a batch write run in two
        # threads, and one clickhouse-connect session refuses concurrent queries (code 373)
        self._client_lock = threading.Lock()
        self._failing_since: float | None = None  # monotonic time of the first failed attempt
        self._failed_attempts = 0
        _quiet_driver()

    @property
    def failing(self) -> bool:
        """Whether ClickHouse is refusing the sink's statements right now (an outage under way)."""
        return self._failing_since is not None

    def stop(self) -> None:
        """End every wait: a retry in progress raises SinkUnavailable instead of sleeping on."""
        self._stopping.set()

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def write(self, tuples: Mapping[str, list[tuple[Any, ...]]]) -> int:
        """Insert every table's rows (tuples in COLUMNS order, in `tables()` order); return the row count."""
        written = 0
        for table in tables():
            rows = tuples.get(table) or []
            if rows:
                names = COLUMNS[table]
                columns = [list(c) for c in zip(*rows, strict=True)]
                self._retry(partial(self._insert_columns, table, names, columns), f"insert into {table}")
                written += len(rows)
        return written

    def check_schema(self, only: Iterable[str] | None = None) -> None:
        """SchemaDrift naming the table and columns when a table the worker writes lacks one of
        its columns, or has a column the worker does not write and ClickHouse cannot fill (no
        DEFAULT, MATERIALIZED or ALIAS expression)."""
        wanted = {t: COLUMNS[t] for t in (only or tables())}
        in_list = ",".join(f"'{t}'" for t in wanted)  # table names are the registry's identifiers
        sql = (
            "SELECT table, name, default_kind FROM system.columns "
            f"WHERE database = '{self.database}' AND table IN ({in_list})"
        )
        found: dict[str, dict[str, str]] = {}
        for table, name, default_kind in self._query(sql, "read the table columns"):
            found.setdefault(table, {})[name] = default_kind
        problems = []
        for table, columns in wanted.items():
            have = found.get(table)
            if have is None:
                problems.append(f"table {self.database}.{table} is missing")
                continue
            missing = [c for c in columns if c not in have]
            unfilled = [c for c, kind in have.items() if c not in columns and not kind]
            if missing:
                problems.append(f"{table} lacks {', '.join(missing)}")
            if unfilled:
                problems.append(f"{table} has {', '.join(unfilled)} that the worker does not write")
        if problems:
            raise SchemaDrift(
                f"the store does not match the event registry: {'; '.join(problems)} "
                "(run `surplus db migrate`, or add the migration of the new type)"
            )

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows given as dicts (small tables: metrics, alerts)."""
        names = tuple(rows[0])
        columns = [list(c) for c in zip(*map(itemgetter(*names), rows), strict=True)]
        self._retry(lambda: self._insert_columns(table, names, columns), f"insert into {table}")

    def _insert_columns(self, table: str, names: tuple[str, ...], columns: list[list[Any]]) -> None:
        key = (table, names)
        context = self._contexts.get(key)
        if context is None:
            context = self.client.create_insert_context(
                table=f"{self.database}.{table}", column_names=list(names), column_oriented=True
            )
            self._contexts[key] = context
        context.data = columns
        self.client.insert(context=context)

    def _retry(self, action: Callable[[], None], what: str) -> None:
        """Run `action` until it succeeds; SinkUnavailable when the budget is spent or stop()."""
        retrying = Retrying(
            sleep=self.sleep,
            stop=self._should_stop,
            wait=wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)
            + wait_random(0, self.backoff_s),
            before_sleep=partial(self._failed, what),
            reraise=True,
        )
        def attempt() -> None:
            with self._client_lock:
                action()

        _inside.retrying = True
        try:
            retrying(attempt)
        except Exception as exc:  # the last attempt's error, once the retries are spent
            attempts = retrying.statistics.get("attempt_number", 1)
            why = "the worker is stopping" if self._stopping.is_set() else f"{attempts} attempts"
            raise SinkUnavailable(f"{what} failed ({why}): {_reason(exc)}") from exc
        finally:
            _inside.retrying = False
        self._recovered()

    def _should_stop(self, state: RetryCallState) -> bool:
        if self._stopping.is_set():
            return True
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None and is_outage(exc):
            elapsed = state.seconds_since_start or 0.0
            return self.give_up_s is not None and elapsed >= self.give_up_s
        return self.retries is not None and state.attempt_number > self.retries

    def _failed(self, what: str, state: RetryCallState) -> None:
        """Before each back-off sleep: say so on the first failure of a spell, then count only."""
        exc = state.outcome.exception() if state.outcome is not None else None
        with self._lock:
            self._failed_attempts += 1
            if self._failing_since is not None:
                return
            self._failing_since = time.monotonic()
        kind = "is unavailable" if exc is not None and is_outage(exc) else "refused a statement"
        log.warning(
            "ClickHouse %s (%s: %s): backing off (%.1f s doubling to %.0f s between attempts) and "
            "committing nothing until writes go through", kind, what,
            _reason(exc) if exc is not None else "?", self.backoff_s, self.max_backoff_s)

    def _recovered(self) -> None:
        with self._lock:
            since, attempts = self._failing_since, self._failed_attempts
            self._failing_since, self._failed_attempts = None, 0
        if since is not None:
            log.warning("ClickHouse takes writes again after %.1f s (%d failed attempts): resuming",
                        time.monotonic() - since, attempts)

    def _query(self, sql: str, what: str) -> list[Any]:
        result: list[Any] = []

        def run() -> None:
            result[:] = self.client.query(sql).result_rows

        self._retry(run, what)
        return result

    def job_states(self, keys: Iterable[JobKey]) -> dict[JobKey, JobState]:
        """The highest-seq ledger entry of each job: the state a worker resumes from."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        states: dict[JobKey, JobState] = {}
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            # ids are validated against ^[a-z0-9][a-z0-9._-]{0,62}$: safe to inline
            in_list = ",".join(f"('{dc}','{job}')" for dc, job in chunk)
            sql = (
                "SELECT dc_id, job_id, max(seq), argMax(device_seconds_total, seq), "
                "argMax(energy_kwh_total, seq), argMax(period_end, seq) "
                f"FROM {self.database}.ledger_entries WHERE (dc_id, job_id) IN ({in_list}) "
                "GROUP BY dc_id, job_id"
            )
            for dc_id, job_id, seq, seconds, energy, end in self._query(sql, "load job states"):
                states[(dc_id, job_id)] = JobState(
                    int(seq), Decimal(repr(seconds)), Decimal(repr(energy)), _aware(end)
                )
        return states


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong, from the innermost cause when there is one (the driver
    wraps a refused connection in two layers that repeat the request's URL)."""
    root, seen = exc, 0
    while (inner := root.__cause__ or root.__context__) is not None and seen < 10:
        root, seen = inner, seen + 1
    if root is exc or not isinstance(root, OSError):
        return _first_line(exc)
    return f"{type(root).__name__}: {_first_line(root)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
