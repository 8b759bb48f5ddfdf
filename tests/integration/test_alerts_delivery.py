"""Delivery against real HTTP receivers: retries, a receiver down for the whole budget, resend, CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.alerts.cli import resend_all, sample_notification
from streams.alerts.config import RulesFile, parse_rules
from streams.alerts.engine import engine_from
from streams.alerts.model import Notification
from streams.alerts.persist import AlertStore
from streams.alerts.receiver import Recorder
from streams.alerts.sign import verify
from surplus.cli import main

pytestmark = pytest.mark.clickhouse

SECRET = "hook-secret"
NOW = datetime.now(UTC).replace(microsecond=0)


def rules_for(url: str, attempts: int = 3) -> RulesFile:
    return parse_rules({
        "receiver": [{"name": "ops", "url": url, "allow_http": True, "secret": SECRET,
                      "max_attempts": attempts, "backoff_s": 0.01, "max_backoff_s": 0.05,
                      "timeout_s": 2, "group_wait_s": 0}],
        "rule": [{"kind": "dc_silent", "for_s": 120}],
    })


def rules_text(url: str) -> str:
    return (f'[[receiver]]\nname = "ops"\nurl = "{url}"\nallow_http = true\nsecret = "{SECRET}"\n'
            'max_attempts = 2\nbackoff_s = 0.01\n')


def free_port() -> int:
    with Recorder() as probe:
        return probe.port


def silent_dc(store: Any) -> None:
    """A store where dc-a last spoke 300 s ago and dc-b now (heartbeats, as a worker writes them)."""
    rows = [[dc, f"hb-{dc}", t, "0.1.0", "b", 1.0, 0, 0.0, t]
            for dc, t in (("dc-a", NOW - timedelta(seconds=300)), ("dc-b", NOW))]
    store.client.insert(f"{store.database}.heartbeats", rows, column_names=[
        "dc_id", "event_id", "time", "agent_version", "boot_id", "uptime_s",
        "spool_backlog_events", "spool_oldest_age_s", "received_at"])


async def deliver_one(store: Any, rules: RulesFile) -> None:
    """An engine over a store with a silent DC: tick (fire, plan, queue), send, wait for the outcome."""
    silent_dc(store)
    engine = engine_from(rules, store.client, store.database, clock=lambda: NOW)
    engine.start()
    notes = await engine.tick()
    assert len(notes) == 1
    await asyncio.wait_for(engine.drain(), timeout=20)
    await engine.close()


def test_retries_until_the_receiver_answers(store: Any) -> None:
    with Recorder(statuses=[500, 500]) as hook:
        asyncio.run(deliver_one(store, rules_for(hook.url, attempts=3)))
        assert len(hook.received) == 3
        bodies = {r.body for r in hook.received}
        assert len(bodies) == 1  # the same notification each time
    log = store.rows("SELECT attempt, http_status, outcome FROM {db}.alert_notifications "
                     "ORDER BY attempt")
    assert log == [(1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
    assert store.rows("SELECT count() FROM {db}.alert_undelivered") == [(0,)]


def test_a_receiver_down_for_the_whole_budget_is_kept_then_resent(store: Any) -> None:
    port = free_port()  # nothing listens there now
    rules = rules_for(f"http://127.0.0.1:{port}/hook", attempts=3)
    asyncio.run(deliver_one(store, rules))
    log = store.rows("SELECT attempt, http_status, outcome FROM {db}.alert_notifications "
                     "ORDER BY attempt")
    assert log == [(1, 0, "retry"), (2, 0, "retry"), (3, 0, "failed")]
    kept = store.dicts("SELECT receiver, status, attempts, last_error, body "
                       "FROM {db}.alert_undelivered FINAL WHERE delivered = 0")
    assert len(kept) == 1 and kept[0]["attempts"] == 3 and "Connect" in kept[0]["last_error"]
    assert json.loads(kept[0]["body"])["version"] == "4"

    alerts_store = AlertStore(store.client, store.database)
    with Recorder(port=port) as hook:
        delivered, failed = asyncio.run(resend_all(rules, alerts_store, alerts_store.undelivered()))
        assert (delivered, failed) == (1, [])
        assert hook.received[0].body == kept[0]["body"].encode()
        assert verify(SECRET.encode(), hook.received[0].signature, hook.received[0].body,
                      now=int(datetime.now(UTC).timestamp()))
    assert alerts_store.undelivered() == []
    again = asyncio.run(resend_all(rules, alerts_store, alerts_store.undelivered()))
    assert again == (0, [])


def test_resend_command_delivers_the_undelivered(store: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    alerts_store = AlertStore(store.client, store.database)
    with Recorder() as hook:
        n = sample_notification(rules_for(hook.url), "ops", NOW)
        alerts_store.save_undelivered(n, 5, "HTTP 503")
        path = tmp_path / "rules.toml"
        path.write_text(rules_text(hook.url), encoding="utf-8")
        code = main(["alerts", "resend", "--rules", str(path), "--url", store.url])
        assert code == 0, capsys.readouterr().err
        assert "resent 1 of 1" in capsys.readouterr().out
        assert len(hook.received) == 1
    assert alerts_store.undelivered() == []


def test_resend_command_reports_what_is_still_undelivered(store: Any, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    AlertStore(store.client, store.database).save_undelivered(
        Notification("n-1", "ops", "{}:{}", "firing", 1, b"{}", NOW), 5, "HTTP 503")
    path = tmp_path / "rules.toml"
    path.write_text(rules_text(url), encoding="utf-8")
    code = main(["alerts", "resend", "--rules", str(path), "--url", store.url])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "1 still undelivered" in err


def test_test_command_sends_a_signed_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Recorder() as hook:
        path = tmp_path / "rules.toml"
        path.write_text(rules_text(hook.url), encoding="utf-8")
        assert main(["alerts", "test", "--receiver", "ops", "--rules", str(path)]) == 0
        assert "delivered a test notification to ops (HTTP 200)" in capsys.readouterr().out
        (item,) = hook.received
        body = item.json()
        assert body["version"] == "4" and body["alerts"][0]["labels"]["alertname"] == "SurplusTestAlert"
        assert verify(SECRET.encode(), item.signature, item.body, now=int(datetime.now(UTC).timestamp()))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["alerts", "test", "--receiver", "pager"], "no receiver named 'pager'"),
        (["alerts", "test", "--receiver", "ops", "--rules", "/nonexistent.toml"], "cannot read"),
    ],
)
def test_commands_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules_text("http://127.0.0.1:9/hook"), encoding="utf-8")
    monkeypatch.setenv("SURPLUS_ALERT_RULES", str(path))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_test_command_reports_an_unreachable_receiver(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules_text(f"http://127.0.0.1:{free_port()}/hook"), encoding="utf-8")
    assert main(["alerts", "test", "--receiver", "ops", "--rules", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surplus: error: test notification to ops failed: ConnectError")


def test_run_once_evaluates_delivers_and_a_second_run_sends_nothing_new(
        store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`surplus alerts run --once` (cron-style): the state and the stream clock are kept in the
    store, so the next run knows the alert already fired."""
    silent_dc(store)
    with Recorder() as hook:
        path = tmp_path / "rules.toml"
        path.write_text(rules_text(hook.url) + 'group_wait_s = 0\n[[rule]]\nkind = "dc_silent"\n',
                        encoding="utf-8")
        args = ["alerts", "run", "--once", "--no-migrate", "--rules", str(path), "--url", store.url]
        assert main(args) == 0, capsys.readouterr().err
        assert "evaluated 1 time(s); queued 1 notification(s)" in capsys.readouterr().out
        assert main(args) == 0, capsys.readouterr().err
        assert "queued 0 notification(s)" in capsys.readouterr().out
        bodies = [item.json() for item in hook.received]
    assert [(b["status"], b["alerts"][0]["labels"]["dc_id"]) for b in bodies] == [("firing", "dc-a")]
    assert store.rows("SELECT count() FROM {db}.alert_clock FINAL") == [(1,)]


def test_run_says_in_one_line_when_the_store_is_unreachable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules_text("http://127.0.0.1:9/hook"), encoding="utf-8")
    url = f"http://surplus:pw@127.0.0.1:{free_port()}/cpn"
    assert main(["alerts", "run", "--once", "--rules", str(path), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "127.0.0.1" in err


@pytest.mark.parametrize("command", ["run", "test", "resend", "check"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", command, "--help"]) == 0
    assert "--rules" in capsys.readouterr().out


def test_what_is_still_queued_at_shutdown_is_kept(store: Any) -> None:
    rules = rules_for("http://127.0.0.1:9/hook")

    async def scenario() -> None:
        silent_dc(store)
        engine = engine_from(rules, store.client, store.database, clock=lambda: NOW)
        assert len(await engine.tick()) == 1  # queued; no sender was started
        await engine.close()

    asyncio.run(scenario())
    kept = store.rows("SELECT attempts, last_error FROM {db}.alert_undelivered FINAL")
    assert kept == [(0, "evaluator stopped before delivery")]


def test_backoff_doubles_is_capped_and_jittered() -> None:
    from streams.alerts.delivery import backoff_s

    receiver = rules_for("http://127.0.0.1:9/hook").receiver[0].model_copy(
        update={"backoff_s": 1.0, "max_backoff_s": 5.0})
    assert [backoff_s(receiver, n, rng=lambda: 0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff_s(receiver, 1, rng=lambda: 0.0) == 0.5
    assert backoff_s(receiver, 1, rng=lambda: 0.999) < 1.5
