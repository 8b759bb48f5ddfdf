"""The sink's retry policy (streams/sink.py): an outage is waited out with bounded exponential
back-off and said once; a refused statement has a budget; stop() ends a wait. The ClickHouse
client here is a stand-in that fails as clickhouse-connect does (its own exception types); the
real served store going away is tests/e2e/test_clickhouse_outage.py."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from streams.sink import Sink, SinkUnavailable, is_outage


class FlakyClient:
    """Raises the queued errors on insert, one per call, then accepts."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.inserted = 0

    def create_insert_context(self, **_kwargs: Any) -> Any:
        return type("Context", (), {"data": None})()

    def insert(self, context: Any) -> None:
        if self.errors:
            # as urllib3 and clickhouse-connect do on every failed attempt
            logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=0)) after ...")
            logging.getLogger("clickhouse_connect.driver._backend.http_sync").warning(
                "Unexpected Http Driver Exception")
            raise self.errors.pop(0)
        self.inserted += 1


REFUSED = OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded "
                           "(Caused by NewConnectionError: [Errno 111] Connection refused)")
ROWS = [{"ts": 1, "worker": "w", "metric": "m", "label": "", "value": 1.0}]


def test_an_outage_is_waited_out_with_bounded_backoff_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient([REFUSED] * 12)
    sleeps: list[float] = []
    sink = Sink(client, "cpn", retries=2, backoff_s=0.5, max_backoff_s=4.0, sleep=sleeps.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        sink.insert("pipeline_metrics", ROWS)
    assert client.inserted == 1  # 12 failures is past the statement budget (2): an outage has none
    assert len(sleeps) == 12
    # doubling from 0.5 s, capped at 4 s, plus up to 0.5 s of jitter
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5 and 2.0 <= sleeps[2] <= 2.5
    assert all(4.0 <= s <= 4.5 for s in sleeps[3:])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # the driver's line per attempt is dropped inside the sink
    assert lines[0].startswith("ClickHouse is unavailable (insert into pipeline_metrics: Error HTTPConnectionPool")
    assert lines[1].startswith("ClickHouse takes writes again after") and "12 failed attempts" in lines[1]
    assert not sink.failing


def test_a_refused_statement_has_a_budget() -> None:
    client = FlakyClient([DatabaseError("Code: 62. DB::Exception: Syntax error")] * 5)
    sink = Sink(client, "cpn", retries=2, sleep=lambda _s: None)  # type: ignore[arg-type]
    with pytest.raises(SinkUnavailable, match="3 attempts"):
        sink.insert("pipeline_metrics", ROWS)
    assert client.inserted == 0 and len(client.errors) == 2 and sink.failing


def test_give_up_after_a_while_and_stop_ends_a_wait() -> None:
    sink = Sink(FlakyClient([REFUSED] * 10**6), "cpn", backoff_s=0.01, max_backoff_s=0.02,  # type: ignore[arg-type]
                give_up_s=0.2)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable):
        sink.insert("pipeline_metrics", ROWS)
    assert time.monotonic() - started < 5

    waiting = Sink(FlakyClient([REFUSED] * 10**6), "cpn", backoff_s=30, max_backoff_s=30)  # type: ignore[arg-type]
    failure: list[BaseException] = []

    def write() -> None:
        try:
            waiting.insert("pipeline_metrics", ROWS)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and waiting.failing  # sleeping 30 s between attempts
    waiting.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(failure[0], SinkUnavailable) and "stopping" in str(failure[0])


def test_what_counts_as_an_outage() -> None:
    assert is_outage(REFUSED) and is_outage(ConnectionResetError())
    assert is_outage(DatabaseError("Received ClickHouse exception, code: 252, server response: "
                                   "Code: 252. DB::Exception: Too many parts"))
    assert is_outage(DatabaseError("Code: 164. DB::Exception: Cannot execute query in readonly mode"))
    assert not is_outage(DatabaseError("Code: 62. DB::Exception: Syntax error"))
    assert not is_outage(ValueError("bad column"))


def test_the_line_names_the_innermost_cause() -> None:
    from streams.sink import _reason

    def refused() -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise OperationalError("Error HTTPConnectionPool(host='h', port=1): Max retries exceeded "
                                   "with url: /?date_time_input_format=best_effort&...") from inner

    with pytest.raises(OperationalError) as caught:
        refused()
    assert _reason(caught.value) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert _reason(DatabaseError("Code: 62. DB::Exception: Syntax error\nmore")) == "Code: 62. DB::Exception: Syntax error"
