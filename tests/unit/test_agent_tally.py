"""The operator's tally (agents/tally.py): what the outbox sends is recorded once, hourly sums per
job follow the ledger rule, and `surplus agent tally` prints them."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents.cli import main
from agents.delivery import DeliveryError
from agents.records import JOB, CloudEvent, Record, build, job_event_id
from agents.tally import FILE_NAME, Sent, Tally, hourly
from schemas.events import Job
from schemas.prices import PriceBook
from tests.unit.test_agent_outbox import DC, T0, capacity, outbox


def job(seq: int, t: datetime, seconds: float, kwh: float, job_id: str = "train-1") -> CloudEvent:
    data = Job(dc_id=DC.dc_id, job_id=job_id, tenant_id="acme", pool_id="gpu",
               device_model="huawei-ascend-910c", devices=8, phase="start" if seq == 0 else "usage",
               seq=seq, device_seconds_total=seconds, energy_kwh_total=kwh)
    return build("cpn.job.v1", t, data, ident=job_event_id(job_id, seq))


def test_hourly_applies_the_ledger_rule_per_job_and_hour() -> None:
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    t = datetime(2026, 12, 1, 9, 58, tzinfo=UTC)
    events = [Sent("dc", "j", 0, ms(t), 0.0, 0.0),
              Sent("dc", "j", 1, ms(t + timedelta(minutes=1)), 480.1, 0.1),
              Sent("dc", "j", 3, ms(t + timedelta(minutes=4)), 960.3, 0.3),  # arrives before seq 2
              Sent("dc", "j", 2, ms(t + timedelta(minutes=3)), 700.0, 0.2),  # late, lower: nothing
              Sent("dc", "j", 4, ms(t + timedelta(minutes=5)), 900.0, 0.4)]  # falls: no entry
    rows = hourly(events)
    assert [(r.hour.hour, r.entries, r.device_seconds, r.energy_kwh) for r in rows] == [
        (9, 2, Decimal("480.100"), Decimal("0.100000")),
        (10, 1, Decimal("480.200"), Decimal("0.200000"))]  # 960.3 - 480.1, exactly as the ledger


def test_the_tally_follows_the_ledger_in_arrival_order() -> None:
    """The ledger's rule (SPEC §4) follows arrival order in the partition, not seq order: seq 2
    arriving first takes the whole usage into its own hour, and the late seq 1 yields nothing."""
    from streams.ledger import apply

    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    t = datetime(2026, 12, 1, 9, 58, tzinfo=UTC)
    sent = [Sent(DC.dc_id, "train-1", 0, ms(t), 0.0, 0.0),
            Sent(DC.dc_id, "train-1", 2, ms(t + timedelta(minutes=4)), 960.3, 0.3),
            Sent(DC.dc_id, "train-1", 1, ms(t + timedelta(minutes=1)), 480.1, 0.1)]
    events = [decode_job(job(e.seq, datetime.fromtimestamp(e.time_ms / 1000, tz=UTC),
                             e.device_seconds_total, e.energy_kwh_total)) for e in sent]
    entries = apply(events, {}, PriceBook.load()).entries
    platform: dict[int, tuple[int, Decimal]] = {}
    for entry in entries:
        n, sec = platform.get(entry.period_end.hour, (0, Decimal("0.000")))
        platform[entry.period_end.hour] = (n + 1, sec + Decimal(entry.device_seconds).quantize(Decimal("0.001")))
    assert {r.hour.hour: (r.entries, r.device_seconds) for r in hourly(sent)} == platform == {
        9: (1, Decimal("0.000")), 10: (1, Decimal("960.300"))}


def decode_job(event: CloudEvent) -> Any:
    from schemas.decode import decode
    from schemas.events import JobEvent

    got = decode(json.dumps(event).encode(), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert isinstance(got, JobEvent), got
    return got


def test_only_what_the_broker_acknowledged_is_in_the_tally(tmp_path: Path) -> None:
    """Job events read from the spool but not delivered (the agent stopped, the broker is down)
    and events given up are not in the tally: the platform does not have them either. Once
    delivered they are, once (the demo's spool could hold sent-but-unconfirmed events)."""
    tally = Tally(tmp_path / "spool" / FILE_NAME)
    box, pub, _ = outbox(tmp_path, tally=tally, retry_backoff_s=1.0)
    pub.auto = False
    box.put([job(0, T0, 0.0, 0.0), job(1, T0 + timedelta(minutes=1), 60.0, 0.01)])
    box.pump()
    assert len(pub.sent) == 2 and tally.between(T0, T0 + timedelta(hours=1)) == []  # sent, unconfirmed
    pub.outcomes = [None, DeliveryError("MSG_SIZE_TOO_LARGE", "too large", permanent=True)]
    box.pump()
    box.wait(0)
    rows = tally.between(T0, T0 + timedelta(hours=1))
    assert [(r.entries, str(r.device_seconds)) for r in rows] == [(1, "0.000")]  # seq 1 was given up
    box.put([job(2, T0 + timedelta(minutes=2), 120.0, 0.02)])
    assert pub.queue  # sent, never confirmed: it stays in the spool, not in the tally
    box._mono = iter(range(100, 10**6)).__next__  # the close's drain deadline passes
    box.close(0.1)
    reopened = Tally(tmp_path / "spool" / FILE_NAME)
    assert [(r.entries, str(r.device_seconds)) for r in reopened.between(T0, T0 + timedelta(hours=1))] == [
        (1, "0.000")]
    reopened.close()


def test_a_tally_written_before_arrival_numbers_is_read_in_seq_order(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / FILE_NAME
    old = sqlite3.connect(path)
    old.executescript("""CREATE TABLE job_events (
        dc_id TEXT NOT NULL, job_id TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
        device_seconds_total REAL NOT NULL, energy_kwh_total REAL NOT NULL,
        PRIMARY KEY (dc_id, job_id, seq)) WITHOUT ROWID;""")
    t = int(T0.timestamp() * 1000)
    old.executemany("INSERT INTO job_events VALUES (?, ?, ?, ?, ?, ?)",
                    [(DC.dc_id, "train-1", 1, t + 60_000, 60.0, 0.1), (DC.dc_id, "train-1", 0, t, 0.0, 0.0)])
    old.commit()
    old.close()
    tally = Tally(path)
    tally.record([Record(1, t + 120_000, JOB, b"dc", json.dumps(job(2, T0 + timedelta(minutes=2), 90.0, 0.2)).encode())])
    assert [(r.entries, str(r.device_seconds)) for r in tally.between(T0, T0 + timedelta(hours=1))] == [
        (3, "90.000")]
    tally.close()


def test_the_outbox_records_each_sent_job_event_once(tmp_path: Path) -> None:
    tally = Tally(tmp_path / "spool" / FILE_NAME)
    box, pub, mono = outbox(tmp_path, tally=tally, retry_backoff_s=1.0)
    pub.auto = False
    box.put([job(0, T0, 0.0, 0.0), capacity(1), job(1, T0 + timedelta(minutes=1), 480.0, 0.25)])
    pub.outcomes = [DeliveryError("_TRANSPORT", "broker down")]
    box.pump()
    mono.t = 5
    pub.auto = True
    box.pump()  # rewound and resent: the same job events again
    box.pump()
    assert box.backlog == 0 and len(pub.sent) > 3
    rows = tally.between(T0, T0 + timedelta(hours=1))
    # this fake delivered seq 1 before the resent seq 0, as a broker would then hold them: the
    # ledger's entry is seq 1's whole 480 s and the late seq 0 yields nothing; so does the tally
    assert [(r.job_id, r.entries, str(r.device_seconds), str(r.energy_kwh)) for r in rows] == [
        ("train-1", 1, "480.000", "0.250000")]
    recorded = tally._db.execute("SELECT count(*) FROM job_events").fetchone()[0]
    assert recorded == 2  # each job event once, however often it was sent
    box.close(0.1)


def test_the_tally_command_prints_csv_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = tmp_path / "spool"
    box, _, _ = outbox(tmp_path, tally=Tally(spool / FILE_NAME))
    box.put([job(s, T0 + timedelta(minutes=20 * s), 600.0 * s, 0.5 * s) for s in range(5)])
    box.close(1)
    day = T0.strftime("%Y-%m-%d")
    assert main(["tally", "--spool", str(spool), "--from", day, "--to", day]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["hour"], r["entries"], r["device_seconds"]) for r in rows] == [
        ("2026-11-16T01:00:00Z", "3", "1200.000"), ("2026-11-16T02:00:00Z", "2", "1200.000")]
    assert main(["tally", "--spool", str(spool), "--from", "2026-11-16T02:00:00Z",
                 "--to", "2026-11-16T03:00:00Z", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["hour"] for r in doc["tally"]] == ["2026-11-16T02:00:00Z"]
    assert main(["tally", "--spool", str(tmp_path / "nowhere"), "--from", day, "--to", day]) == 2
    assert "no tally" in capsys.readouterr().err
    assert main(["tally", "--spool", str(spool), "--from", "yesterday", "--to", day]) == 2
