"""Signed hourly statements (SPEC §4.1) on a real store: close, export, verify offline, tamper,
restate on a late job event (a real Kafka broker and a real HTTP receiver), invoice.

Job events go through the worker's own Handler (decode, ledger, ClickHouse write), so the
entries are the pipeline's. `independent_check` recomputes every digest, hash and signature of
an exported file with json, decimal, hashlib, base64 and the `cryptography` package only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from streams.alerts.receiver import Recorder
from streams.alerts.sign import verify as verify_hook
from streams.batch import Record
from streams.sink import Sink
from streams.worker import Handler
from surplus.cli import main

pytestmark = pytest.mark.clickhouse

# whole hours, well past the default grace: the hours 6, 5 and 4 hours ago
H0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
SECRET = "hook-secret"


def job_event(dc: str, job: str, seq: int, t: datetime, seconds: float, kwh: float,
              tenant: str = "acme-ai", model: str = "nvidia-h100-sxm5-80gb") -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": f"job-{job}-{seq}", "source": f"//cpn/dc/{dc}",
        "type": "cpn.job.v1", "time": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"dc_id": dc, "job_id": job, "tenant_id": tenant, "pool_id": "gpu",
                 "device_model": model, "devices": 8, "phase": "start" if seq == 0 else "usage",
                 "seq": seq, "device_seconds_total": seconds, "energy_kwh_total": kwh},
    }


def fleet_events() -> list[dict[str, Any]]:
    """Two DCs, three jobs, usage every 7 minutes over three hours, awkward decimals."""
    out = []
    for dc, job, rate, kwh_rate in (("dc-a", "train-1", 8.0, 0.0123456789),
                                    ("dc-a", "infer-2", 2.5, 0.1 + 0.2),
                                    ("dc-b", "train-3", 4.125, 0.000333)):
        seconds = kwh = 0.0
        for seq in range(26):
            t = H0 + timedelta(minutes=7 * seq, seconds=13)
            if seq:
                seconds += rate * 420 + 0.0005 * seq
                kwh += kwh_rate * 7
            out.append(job_event(dc, job, seq, t, round(seconds, 4), round(kwh, 9)))
    return out


class Pipeline:
    """The worker's handler writing into the test's store."""

    def __init__(self, store: Any) -> None:
        self.handler = Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                               prices=PriceBook.load(), deadletter_topic="t.deadletter",
                               metrics_interval_s=3600)
        self.offset = 0

    def feed(self, events: list[dict[str, Any]]) -> None:
        records = []
        for e in events:
            self.offset += 1
            records.append(Record("t.jobs", 0, self.offset, e["data"]["dc_id"].encode(),
                                  json.dumps(e).encode()))
        asyncio.run(self.handler(records))


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SURPLUS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("SURPLUS_ALERT_RULES", raising=False)
    monkeypatch.delenv("SURPLUS_STATEMENT_GRACE_S", raising=False)
    from streams.signing import main as signing

    path = tmp_path / "statement-key.toml"
    signing(["statement-key", "--key-id", "test-statements-1", "--key-file", str(path)])
    return path


@pytest.fixture
def closed(store: Any, key_file: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The fleet's events in the store, every hour closed."""
    Pipeline(store).feed(fleet_events())
    assert main(["ledger", "close", "--url", store.url, "--key-file", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert "6 closed, 0 restated" in out, out  # three hours of each DC
    return store


def export(store: Any, tmp_path: Path, dc: str, *extra: str) -> Path:
    out = tmp_path / f"{dc}-{len(extra)}.json"
    day = H0.strftime("%Y-%m-%d")
    end = (H0 + timedelta(hours=4)).strftime("%Y-%m-%d")
    assert main(["ledger", "statement", "--dc", dc, "--from", day, "--to", end, "--url", store.url,
                 "--out", str(out), *extra]) == 0
    return out


def pubkey(key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    capsys.readouterr()
    assert main(["ledger", "pubkey", "--key-file", str(key_file)]) == 0
    path = tmp_path / "statements.pem"
    path.write_text(capsys.readouterr().out)
    return path


# --- an independent verifier: hashlib, decimal, base64 and cryptography only ------------------


def _q(text: str, places: str) -> str:
    return format(Decimal(text).quantize(Decimal(places), rounding=ROUND_HALF_EVEN), "f")


def independent_check(doc: dict[str, Any], pem: bytes) -> int:
    """SPEC §4.1 recomputed from the file; returns the number of statements checked."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(pem)
    prev = None
    for s in doc["statements"]:
        entries = sorted(s["entries"], key=lambda e: e["entry_id"].encode())
        lines = "".join(f"{e['entry_id']}|{_q(e['device_seconds'], '0.001')}|"
                        f"{_q(e['energy_kwh'], '0.000001')}|{_q(e['amount_cny'], '0.0001')}\n"
                        for e in entries)
        digest = hashlib.sha256(lines.encode()).hexdigest()
        assert digest == s["entries_digest"]
        seconds = sum(Decimal(e["device_seconds"]) for e in entries)
        kwh = sum(Decimal(e["energy_kwh"]) for e in entries)
        cny = sum(Decimal(e["amount_cny"]) for e in entries)
        assert (_q(str(seconds), "0.001"), _q(str(kwh), "0.000001"), _q(str(cny), "0.0001")) == (
            s["device_seconds"], s["energy_kwh"], s["amount_cny"])
        text = (f"{s['dc_id']}|{s['hour']}|{s['version']}|{len(entries)}|{s['device_seconds']}|"
                f"{s['energy_kwh']}|{s['amount_cny']}|{digest}|{s['prev_hash']}")
        assert hashlib.sha256(text.encode()).hexdigest() == s["hash"]
        assert s["prev_hash"] == (prev if prev is not None else "0" * 64)
        public.verify(base64.b64decode(s["signature"]), s["hash"].encode("ascii"))  # type: ignore[union-attr,call-arg]
        prev = s["hash"]
    return len(doc["statements"])


# --- tests --------------------------------------------------------------------------------------


def test_every_statement_recomputes_independently(closed: Any, key_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pem = pubkey(key_file, tmp_path, capsys)
    rows = closed.rows("SELECT dc_id, count(), min(version), max(version) FROM "
                       "{db}.ledger_statements FINAL GROUP BY dc_id ORDER BY dc_id")
    assert rows == [("dc-a", 3, 1, 1), ("dc-b", 3, 1, 1)]
    checked = 0
    for dc in ("dc-a", "dc-b"):
        doc = json.loads(export(closed, tmp_path, dc, "--entries").read_text())
        assert doc["dc_id"] == dc and doc["key_id"] == "test-statements-1"
        assert set(doc["statements"][0]) == {
            "dc_id", "hour", "version", "reason", "entries", "device_seconds", "energy_kwh",
            "amount_cny", "entries_digest", "prev_hash", "hash", "key_id", "signature", "closed_at"}
        checked += independent_check(doc, pem.read_bytes())
        # the entries are the ledger's, to the figure
        ledger = closed.rows(f"SELECT count() FROM {{db}}.ledger WHERE dc_id = '{dc}'")[0][0]
        assert sum(len(s["entries"]) for s in doc["statements"]) == ledger
    assert checked == len(closed.rows("SELECT * FROM {db}.ledger_statements FINAL"))


def test_close_is_idempotent(closed: Any, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = closed.rows("SELECT dc_id, hour, version, hash FROM {db}.ledger_statements FINAL "
                         "ORDER BY ALL")
    for extra in ([], ["--full"]):
        assert main(["ledger", "close", "--url", closed.url, "--key-file", str(key_file), *extra]) == 0
        assert "0 closed, 0 restated" in capsys.readouterr().out
    assert closed.rows("SELECT dc_id, hour, version, hash FROM {db}.ledger_statements FINAL "
                       "ORDER BY ALL") == before


def _verify(path: Path, pem: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["ledger", "verify", str(path), "--pubkey", str(pem)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_tampering_fails_verify_naming_the_statement(closed: Any, key_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    pem = pubkey(key_file, tmp_path, capsys)
    good = export(closed, tmp_path, "dc-a", "--entries", "--format", fmt)
    code, out = _verify(good, pem, capsys)
    assert code == 0, out
    assert "3 statements of DC dc-a verify" in out and "signatures checked" in out

    if fmt == "csv":
        lines = good.read_text().splitlines(keepends=True)
        entry_rows = [i for i, line in enumerate(lines) if line.startswith("entry,")]
        changed = list(lines)
        changed[entry_rows[3]] = changed[entry_rows[3]].replace(".", "9.", 1)  # a figure of an entry
        dropped = [line for i, line in enumerate(lines) if i != entry_rows[-1]]
        cases = {"changed": changed, "dropped": dropped}
        for name, content in cases.items():
            path = tmp_path / f"{name}.csv"
            path.write_text("".join(content))
            code, out = _verify(path, pem, capsys)
            assert code == 1 and "statement #" in out, (name, out)
        return

    doc = json.loads(good.read_text())
    hours = [s["hour"] for s in doc["statements"]]

    def tampered(change: Any) -> tuple[int, str]:
        copy = json.loads(good.read_text())
        change(copy["statements"])
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(copy))
        return _verify(path, pem, capsys)

    def amount(ss: list[dict[str, Any]]) -> None:
        e = ss[1]["entries"][2]
        e["amount_cny"] = format(Decimal(e["amount_cny"]) + Decimal("0.0100"), "f")

    code, out = tampered(amount)
    assert code == 1 and f"statement #2 (dc-a {hours[1]} v1)" in out and "entries_digest" in out, out

    def total(ss: list[dict[str, Any]]) -> None:
        ss[2]["amount_cny"] = format(Decimal(ss[2]["amount_cny"]) - Decimal("1"), "f")

    code, out = tampered(total)
    assert code == 1 and f"statement #3 (dc-a {hours[2]} v1)" in out, out

    code, out = tampered(lambda ss: ss[0]["entries"].pop(4))
    assert code == 1 and f"statement #1 (dc-a {hours[0]} v1)" in out and "entries_digest" in out, out

    def swap(ss: list[dict[str, Any]]) -> None:
        ss[0], ss[1] = ss[1], ss[0]

    code, out = tampered(swap)
    assert code == 1 and "statement #" in out and "chain is broken" in out, out
    assert out.count("\n") == 1 and "Traceback" not in out

    def resign(ss: list[dict[str, Any]]) -> None:
        ss[1]["signature"] = ss[0]["signature"]

    code, out = tampered(resign)
    assert code == 1 and "statement #2" in out and "signature" in out, out

    # bad input is exit 2, one line
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    code, out = _verify(bad, pem, capsys)
    assert code == 2 and out.count("\n") == 1
    assert _verify(good, tmp_path / "missing.pem", capsys)[0] == 2


@pytest.mark.kafka
def test_a_late_job_event_restates_the_hour(closed: Any, key_file: Path, tmp_path: Path,
                                            kafka_bootstrap: str, topic_prefix: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pem = pubkey(key_file, tmp_path, capsys)
    late_hour = H0 + timedelta(hours=1)
    with Recorder() as hook:
        rules = tmp_path / "rules.toml"
        rules.write_text(f'[[receiver]]\nname = "ledger"\nurl = "{hook.url}"\nallow_http = true\n'
                         f'secret = "{SECRET}"\ngroup_wait_s = 0\n\n'
                         '[[rule]]\nkind = "ledger_restated"\nseverity = "warning"\n')
        # a job that ran in the closed hour, reported late
        Pipeline(closed).feed([
            job_event("dc-a", "late-9", 0, late_hour + timedelta(minutes=10), 0.0, 0.0),
            job_event("dc-a", "late-9", 1, late_hour + timedelta(minutes=40), 14400.0, 2.75),
        ])
        argv = ["ledger", "close", "--url", closed.url, "--key-file", str(key_file),
                "--rules", str(rules), "--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "0 closed, 1 restated; 1 restatement events published, 1 ledger_restated" in out, out
        assert main(argv) == 0  # nothing new: nothing issued, published or sent
        assert "0 closed, 0 restated; 0 restatement" in capsys.readouterr().out
        (note,) = hook.received
    body = note.json()
    assert body["version"] == "4" and body["status"] == "firing"
    (alert,) = body["alerts"]
    hour = late_hour.strftime("%Y-%m-%dT%H:00:00Z")
    assert alert["labels"] == {"alertname": "LedgerRestated", "severity": "warning", "dc_id": "dc-a",
                               "hour": hour, "version": "2"}
    assert verify_hook(SECRET.encode(), note.signature, note.body, now=int(datetime.now(UTC).timestamp()))

    versions = closed.rows("SELECT version, reason, entries FROM {db}.ledger_statements FINAL "
                           f"WHERE dc_id = 'dc-a' AND hour = '{late_hour:%Y-%m-%d %H:%M:%S}' "
                           "ORDER BY version")
    assert [v[:2] for v in versions] == [(1, "close"), (2, "restatement")]
    assert versions[1][2] == versions[0][2] + 2  # earlier versions stay

    events = read_topic(kafka_bootstrap, topic_prefix + "restatements", 1)
    (event,) = events
    assert event["type"] == "cpn.restatement.v1" and event["source"] == "//cpn/dc/dc-a"
    data = event["data"]
    assert (data["dc_id"], data["hour"], data["version"]) == ("dc-a", hour, 2)
    assert data["new"]["entries"] == data["old"]["entries"] + 2
    assert Decimal(data["new"]["device_seconds"]) - Decimal(data["old"]["device_seconds"]) == Decimal(14400)
    assert Decimal(data["new"]["amount_cny"]) > Decimal(data["old"]["amount_cny"])

    # the restated chain still verifies, both versions in it, v2 with its entries
    doc_path = export(closed, tmp_path, "dc-a", "--entries")
    code, text = _verify(doc_path, pem, capsys)
    assert code == 0, text
    doc = json.loads(doc_path.read_text())
    assert [(s["hour"], s["version"]) for s in doc["statements"]][-1] == (hour, "2")
    assert isinstance(doc["statements"][-1]["entries"], list)


def read_topic(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    import time

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < expected and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            assert m.key() == b"dc-a"
            assert dict(m.headers() or [])["content-type"] == b"application/cloudevents+json"
            out.append(json.loads(m.value()))
        extra = consumer.poll(2)
        assert extra is None or extra.error(), "more restatement events than expected"
    finally:
        consumer.close()
    return out


def test_an_invoice_equals_tenant_usage_daily(store: Any, key_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    events = fleet_events()
    events += [job_event("dc-b", "other", s, H0 + timedelta(minutes=s), 60.0 * s, 0.01 * s,
                         tenant="other-co") for s in range(5)]
    events += [job_event("dc-b", "mystery", s, H0 + timedelta(minutes=s), 33.3 * s, 0.02 * s,
                         model="acme-npu-9") for s in range(4)]
    Pipeline(store).feed(events)
    months = {r[0] for r in store.rows("SELECT DISTINCT toYYYYMM(day) FROM {db}.tenant_usage_daily")}
    bill: dict[str, Any] = {}
    for m in sorted(months):
        text = f"{str(m)[:4]}-{str(m)[4:]}"
        assert main(["ledger", "invoice", "--tenant", "acme-ai", "--month", text, "--format", "json",
                     "--url", store.url]) == 0
        bill = json.loads(capsys.readouterr().out)
        expected = store.rows("SELECT sum(amount_cny) FROM {db}.tenant_usage_daily WHERE "
                              f"tenant_id = 'acme-ai' AND toYYYYMM(day) = {m}")[0][0]
        assert Decimal(bill["total_amount_cny"]) == Decimal(expected)
        assert sum(Decimal(line["amount_cny"]) for line in bill["lines"]) == Decimal(expected)
    lines = {(line["dc_id"], line["device_model"]): line for line in bill["lines"]}
    assert ("dc-a", "nvidia-h100-sxm5-80gb") in lines
    assert lines[("dc-a", "nvidia-h100-sxm5-80gb")]["unit_prices_cny_per_device_hour"]
    mystery = lines[("dc-b", "acme-npu-9")]  # not in the catalogue: in no price book
    assert mystery["amount_cny"] == "0.0000" and Decimal(mystery["unpriced_device_hours"]) > 0
    assert all(line["dc_id"] != "other" for line in bill["lines"])
    assert main(["ledger", "invoice", "--tenant", "acme-ai", "--month", "2026-13",
                 "--url", store.url]) == 2
