"""The alert rules file: the shipped example loads; each kind of bad file is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.alerts.config import DcSilent, PueAbove, load_rules, parse_rules
from surplus.errors import UserError
from surplus.paths import REPO

EXAMPLE = REPO / "schemas" / "alerts.example.toml"
RECEIVER = '[[receiver]]\nname = "ops"\nurl = "https://h.example/x"\nsecret = "k"\n'


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURPLUS_ALERTS_OPS_SECRET", "ops-key")
    monkeypatch.setenv("SURPLUS_ALERTS_ENERGY_SECRET", "energy-key")


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_rules(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.usefixtures("secrets")
def test_example_loads_with_secrets_from_the_environment() -> None:
    rules = load_rules(EXAMPLE)
    assert {r.name for r in rules.receiver} == {"ops", "energy-team"}
    assert rules.receiver_named("ops").secret_bytes() == b"ops-key"
    kinds = {r.kind for r in rules.rule}
    assert kinds == {"dc_silent", "green_share_below", "pue_above", "surplus_above",
                     "surplus_below", "deadletter_rate_above", "unpriced_usage", "ledger_restated",
                     "spool_at_risk"}
    silent = next(r for r in rules.rule if isinstance(r, DcSilent))
    assert silent.for_s == 120 and silent.alertname == "DcSilent"
    pue = next(r for r in rules.rule if isinstance(r, PueAbove))
    assert pue.threshold is None  # default: the hub's target


def test_defaults_are_the_documented_ones() -> None:
    rules = parse_rules({"receiver": [{"name": "ops", "url": "https://h.example/x", "secret": "k"}],
                         "rule": [{"kind": "dc_silent"}]})
    assert rules.rule[0].for_s == 120
    receiver = rules.receiver[0]
    assert (receiver.group_wait_s, receiver.group_interval_s, receiver.repeat_interval_s) == (30, 300, 14400)
    assert rules.engine.page_on_backfill is False
    assert rules.receivers_of(rules.rule[0]) == ("ops",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[receiver]\n", "invalid TOML"),
        (RECEIVER + '[[rule]]\nkind = "dc_silent"\nfor_seconds = 3\n', "rule.0.for_seconds: Extra inputs"),
        (RECEIVER + '[[rule]]\nkind = "no_such_rule"\n', "rule.0"),
        (RECEIVER.replace("https", "http"), "plain http; use https or set allow_http = true"),
        (RECEIVER.replace('secret = "k"', ""), "needs `secret` or `secret_env`"),
        (RECEIVER + '[[rule]]\nkind = "dc_silent"\nreceivers = ["pager"]\n', "'pager', which is not defined"),
        (RECEIVER + '[[rule]]\nkind = "dc_silent"\n[[rule]]\nkind = "dc_silent"\n', "same alertname"),
        (RECEIVER + '[[rule]]\nkind = "deadletter_rate_above"\n', "set per_minute or share"),
        (RECEIVER + '[[rule]]\nkind = "green_share_below"\nthreshold = 80\n', "rule.0.threshold"),
        (RECEIVER + '[[rule]]\nkind = "surplus_below"\n', "threshold_pflops: Field required"),
        ('[[receiver]]\nname = "ops"\nurl = "https://h.example/x"\nsecret_env = "SURPLUS_T_NOPE"\n',
         "SURPLUS_T_NOPE (its secret) is not set"),
        ("", "receiver: Field required"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _load(tmp_path, text)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_plain_http_is_allowed_only_when_asked() -> None:
    rules = parse_rules({"receiver": [{"name": "dev", "url": "http://127.0.0.1:9/x",
                                       "allow_http": True, "allow_unsigned": True}]})
    assert rules.receiver[0].secret_bytes() is None


def test_default_targets_match_the_reference_data() -> None:
    import json

    from streams.alerts.targets import PUE_TARGET_BY_HUB, pue_target

    reference = REPO / "schemas" / "reference" / "catalogue.json"  # vendored: always here
    hubs = json.loads(reference.read_text(encoding="utf-8"))["hubs"]
    assert {h["id"]: h["pue_target"] for h in hubs} == PUE_TARGET_BY_HUB
    assert pue_target("none") == 1.5
