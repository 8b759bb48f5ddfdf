"""`surplus ledger close`: close and restate hourly statements. Wiring (store, Kafka, webhooks).

One run: take `now`; read which closed hours changed since the last run; plan the statements
(streams.statements.plan_close); publish a `cpn.restatement.v1` event per restatement (before
anything is written: a failed publish writes nothing); write the run's statements in one insert;
then notify the `ledger_restated` rules' receivers (what is not delivered is kept for
`surplus alerts resend`).

Run it on a schedule by ONE process, however many workers run (a cron job or systemd timer on
one host). It is idempotent: versions are derived from what is stored, a second run with nothing
new issues nothing, and two runs that see the same data write identical statements (the hash and
the Ed25519 signature do not depend on `closed_at`), which the ReplacingMergeTree keyed by
(dc_id, hour, version) keeps once. On one host an exclusive lock file keeps two closers from
running at once (`lock`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from streams.statement_store import StatementStore
from streams.statements import Restated, Statement, StatementKey, cutoff, plan_close
from surplus.errors import UserError

# entries written this close to a run (in flight while it read) are looked at again next time
WRITE_MARGIN = timedelta(seconds=300)
DEFAULT_GRACE_S = 7200.0


@dataclass(frozen=True, slots=True)
class CloseResult:
    looked_at: int  # (dc_id, hour)s whose entries were read
    issued: list[Statement]
    restated: list[Restated]
    published: int
    notified: int


def grace_from_env() -> float:
    text = os.environ.get("SURPLUS_STATEMENT_GRACE_S", "")
    if not text:
        return DEFAULT_GRACE_S
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"SURPLUS_STATEMENT_GRACE_S={text!r} is not a number of seconds") from None
    if value < 0:
        raise UserError("SURPLUS_STATEMENT_GRACE_S must not be negative")
    return value


@contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive lock file: a second closer on this host stops with one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another `surplus ledger close` is running (lock {path})") from None
        yield
    finally:
        os.close(fd)


def close(
    store: StatementStore,
    key: StatementKey,
    now: datetime,
    grace_s: float,
    *,
    full: bool = False,
    publish: Callable[[Sequence[Restated]], int] | None = None,
    notify: Callable[[Sequence[Restated]], int] | None = None,
) -> CloseResult:
    """Close every hour past its grace at `now` and restate every closed hour that changed."""
    last = None if full else store.last_run()
    since = last - WRITE_MARGIN if last is not None else None
    summaries = store.hours(cutoff(now, grace_s), since=since, grace_s=grace_s)
    latest = store.latest((s.dc_id, s.hour) for s in summaries)
    need = []
    for s in summaries:
        old = latest.get((s.dc_id, s.hour))
        if (full or old is None or old.entries != s.entries
                or s.last_written >= old.closed_at - WRITE_MARGIN):
            need.append((s.dc_id, s.hour))
    if not need:
        return CloseResult(0, [], [], 0, 0)
    entries = store.entries(need)
    plan = plan_close(entries, {k: v for k, v in latest.items() if k in entries}, store.heads(),
                      key, now)
    published = publish(plan.restated) if publish is not None and plan.restated else 0
    store.insert(plan.statements)
    notified = notify(plan.restated) if notify is not None and plan.restated else 0
    return CloseResult(len(need), plan.statements, plan.restated, published, notified)
