"""The ClickHouse sink: columnar inserts of a batch's rows, with retry and back-off. I/O.

The only module of the worker that talks to ClickHouse. A write either completes for every
table or raises `SinkUnavailable` after the retry budget, and then the worker crashes without
committing: ClickHouse being down never means skipping data. `check_schema` compares the
columns the worker writes (streams.batch.COLUMNS, from the registry) with the tables in
`system.columns` at start, so a missing migration is `SchemaDrift`, not a failed batch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from streams.batch import COLUMNS, tables
from streams.ledger import JobKey, JobState

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)


class SinkUnavailable(RuntimeError):
    """ClickHouse did not take a write within the retry budget (retryable by a restart)."""


class SchemaDrift(RuntimeError):
    """The store's tables are not the ones the worker writes (a migration is missing or extra)."""


class Sink:
    def __init__(
        self,
        client: Client,
        database: str,
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.database = database
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self._contexts: dict[tuple[str, tuple[str, ...]], Any] = {}

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
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                action()
                return
            except Exception as exc:  # any driver error is retried, then escalated
                if attempt == self.retries:
                    raise SinkUnavailable(f"{what} failed {attempt + 1} times: {exc}") from exc
                wait = min(self.max_backoff_s, delay) * (0.5 + random.random())
                log.warning("%s failed (%s); retry %d in %.1f s", what, _first_line(exc), attempt + 1, wait)
                self.sleep(wait)
                delay *= 2

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
