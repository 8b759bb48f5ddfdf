"""The operator's tally (agents/tally.py): what the outbox sends is recorded once, hourly sums per
job follow the ledger rule, and `surplus agent tally` prints them."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agents.cli import main
from agents.delivery import DeliveryError
from agents.records import CloudEvent, build, job_event_id
from agents.tally import FILE_NAME, Sent, Tally, hourly
from schemas.events import Job
from tests.unit.test_agent_outbox import DC, T0, capacity, outbox


def job(seq: int, t: datetime, seconds: float, kwh: float, job_id: str = "train-1") -> CloudEvent:
    data = Job(dc_id=DC.dc_id, job_id=job_id, tenant_id="acme", pool_id="gpu",
               device_model="huawei-ascend-910c", devices=8, phase="start" if seq == 0 else "usage",
               seq=seq, device_seconds_total=seconds, energy_kwh_total=kwh)
    return build("cpn.job.v1", t, data, ident=job_event_id(job_id, seq))


def test_hourly_applies_the_ledger_rule_per_job_and_hour() -> None:
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    t = datetime(2026, 12, 1, 9, 58, tzinfo=UTC)
    events = [Sent("dc", "j", 2, ms(t + timedelta(minutes=4)), 960.3, 0.3),  # arrives first: order is by seq
              Sent("dc", "j", 0, ms(t), 0.0, 0.0),
              Sent("dc", "j", 1, ms(t + timedelta(minutes=1)), 480.1, 0.1),
              Sent("dc", "j", 3, ms(t + timedelta(minutes=5)), 900.0, 0.4)]  # falls: no entry
    rows = hourly(events)
    assert [(r.hour.hour, r.entries, r.device_seconds, r.energy_kwh) for r in rows] == [
        (9, 2, Decimal("480.100"), Decimal("0.100000")),
        (10, 1, Decimal("480.200"), Decimal("0.200000"))]  # 960.3 - 480.1, exactly as the ledger


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
    assert [(r.job_id, r.entries, str(r.device_seconds), str(r.energy_kwh)) for r in rows] == [
        ("train-1", 2, "480.000", "0.250000")]
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
