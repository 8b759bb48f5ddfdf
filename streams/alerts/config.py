"""The alert rules file (TOML): engine settings, receivers and rules as strict pydantic models. Config.

`load_rules(path)` is the only function that touches the outside world (it reads the file and
the environment variables named by `secret_env`); a bad file is one UserError line.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from surplus.errors import UserError

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Seconds = Annotated[float, Field(ge=0, le=7 * 86400)]
Severity = Literal["critical", "warning", "info"]
Precision = Literal["fp16", "fp32", "fp64"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(Strict):
    """How and when rules are evaluated, and what the webhook bodies say about us."""

    instance: Name = "default"
    external_url: str = "http://localhost:3000"
    evaluation_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    page_on_backfill: bool = False
    backfill_lookback_s: Annotated[float, Field(gt=0)] = 900.0
    idle_after_s: Annotated[float, Field(gt=0)] = 60.0
    # an evaluator that has not written the instance's clock for this long has let it go, and
    # another may take over (docs/alerts.md, "One evaluator")
    lease_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    queue_max: Annotated[int, Field(ge=1)] = 1000
    senders: Annotated[int, Field(ge=1, le=64)] = 4


class Receiver(Strict):
    """A webhook: where to POST, how to sign, how to group and how hard to retry."""

    name: Name
    url: str
    secret: SecretStr | None = None
    secret_env: str | None = None
    allow_http: bool = False
    allow_unsigned: bool = False
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    backoff_s: Annotated[float, Field(gt=0)] = 1.0
    max_backoff_s: Annotated[float, Field(gt=0)] = 60.0
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait_s: Seconds = 30.0
    group_interval_s: Seconds = 300.0
    repeat_interval_s: Seconds = 4 * 3600.0
    send_resolved: bool = True
    max_alerts: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _check(self) -> Receiver:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        if parts.scheme == "http" and not self.allow_http:
            raise ValueError(f"url {self.url!r} is plain http; use https or set allow_http = true")
        if self.secret is None and self.secret_env is None and not self.allow_unsigned:
            raise ValueError("needs `secret` or `secret_env` (or allow_unsigned = true)")
        return self

    def secret_bytes(self) -> bytes | None:
        return self.secret.get_secret_value().encode() if self.secret is not None else None


class RuleBase(Strict):
    name: Name | None = None
    severity: Severity = "warning"
    receivers: list[Name] = Field(default_factory=list)
    labels: dict[LabelName, str] = Field(default_factory=dict)
    annotations: dict[LabelName, str] = Field(default_factory=dict)
    for_s: Seconds = 0.0
    keep_firing_for_s: Seconds = 0.0

    @property
    def alertname(self) -> str:
        return self.name or DEFAULT_NAMES[self.kind]  # type: ignore[attr-defined]

    @property
    def id(self) -> str:
        return f"{self.alertname}:{self.severity}"


class DcSilent(RuleBase):
    """No event from a DC for `for_s` seconds of event time."""

    kind: Literal["dc_silent"]
    for_s: Seconds = 120.0


class GreenShareBelow(RuleBase):
    """Hourly sum(green_kwh) / sum(facility_kwh) under `threshold` (default 0.8)."""

    kind: Literal["green_share_below"]
    scope: Literal["hub", "dc"] = "hub"
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    settle_s: Seconds = 300.0


class PueAbove(RuleBase):
    """Hourly sum(facility_kwh) / sum(it_kwh) over `threshold` (default: the hub's target)."""

    kind: Literal["pue_above"]
    scope: Literal["hub", "dc"] = "hub"
    threshold: Annotated[float, Field(ge=1)] | None = None
    settle_s: Seconds = 300.0


class _Surplus(RuleBase):
    scope: Literal["national", "hub"] = "national"
    hub: str | None = None
    precision: Precision = "fp16"
    threshold_pflops: Annotated[float, Field(ge=0)]
    for_s: Seconds = 300.0
    # the minute judged is the latest one `settle_s` before the stream clock, so that a worker
    # a little behind the fastest one has written its partitions' samples of that minute
    settle_s: Seconds = 60.0


class SurplusAbove(_Surplus):
    """National (or per-hub) idle PFLOPS over `threshold_pflops` for `for_s`."""

    kind: Literal["surplus_above"]


class SurplusBelow(_Surplus):
    """National (or per-hub) idle PFLOPS under `threshold_pflops` for `for_s`."""

    kind: Literal["surplus_below"]


class DeadletterRateAbove(RuleBase):
    """Rejected events over `per_minute` a minute, or over `share` of all, in the last `window_s`."""

    kind: Literal["deadletter_rate_above"]
    per_minute: Annotated[float, Field(ge=0)] | None = None
    share: Annotated[float, Field(ge=0, le=1)] | None = None
    window_s: Annotated[float, Field(ge=60, le=3600)] = 300.0
    min_events: Annotated[int, Field(ge=1)] = 100

    @model_validator(mode="after")
    def _one_threshold(self) -> DeadletterRateAbove:
        if self.per_minute is None and self.share is None:
            raise ValueError("set per_minute or share (or both)")
        return self


class UnpricedUsage(RuleBase):
    """Usage metered with no price for its device model; clears after `clear_after_s` without."""

    kind: Literal["unpriced_usage"]
    clear_after_s: Seconds = 3600.0


# The agent's default spool bound (agents/settings.py `SpoolSettings.max_bytes`, 256 MiB) over
# what one spooled event takes in the agent's own encoding: frame head (27 B) + key + compact
# CloudEvent JSON, 439 B on average over an hour of the first 16 DCs of the simulated national
# fleet (`agents.fleet.national_fleet(16)`: 38 312 events of registry, capacity, power, heartbeat
# and job metering, 42 % capacity, 57 % jobs), measured through the agent's own spool;
# tests/unit/test_alerts_spool.py measures it again. 256 MiB / 439 B = 611 745, rounded down.
SPOOL_CAPACITY_EVENTS = 610_000


class SpoolAtRisk(RuleBase):
    """A DC's spool overflows within `within_s` at the growth of `spool_backlog_events` over its
    heartbeats of the last `window_s` (a least-squares slope), against `capacity_events`."""

    kind: Literal["spool_at_risk"]
    within_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    capacity_events: Annotated[int, Field(ge=1)] = SPOOL_CAPACITY_EVENTS
    window_s: Annotated[float, Field(ge=60, le=3600)] = 600.0
    for_s: Seconds = 120.0


class LedgerRestated(RuleBase):
    """A closed hour's statement was restated (late data): one firing alert per restatement,
    sent by `surplus ledger close` when it issues the new version (it never resolves)."""

    kind: Literal["ledger_restated"]


Rule = Annotated[
    DcSilent | GreenShareBelow | PueAbove | SurplusAbove | SurplusBelow | DeadletterRateAbove
    | UnpricedUsage | LedgerRestated | SpoolAtRisk,
    Field(discriminator="kind"),
]

DEFAULT_NAMES = {
    "dc_silent": "DcSilent",
    "green_share_below": "GreenShareBelow",
    "pue_above": "PueAbove",
    "surplus_above": "SurplusAbove",
    "surplus_below": "SurplusBelow",
    "deadletter_rate_above": "DeadletterRateAbove",
    "unpriced_usage": "UnpricedUsage",
    "ledger_restated": "LedgerRestated",
    "spool_at_risk": "SpoolAtRisk",
}


class RulesFile(Strict):
    """The whole file: `[engine]`, `[[receiver]]`, `[[rule]]`."""

    engine: EngineSettings = Field(default_factory=EngineSettings)
    receiver: list[Receiver] = Field(min_length=1)
    rule: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> RulesFile:
        names = [r.name for r in self.receiver]
        if len(set(names)) != len(names):
            raise ValueError("two receivers share a name")
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rule):
            for name in rule.receivers:
                if name not in names:
                    raise ValueError(f"rule[{i}] names receiver {name!r}, which is not defined")
            if rule.id in seen:
                raise ValueError(
                    f"rule[{i}] has the same alertname and severity as rule[{seen[rule.id]}] "
                    f"({rule.id}); give it another `name` or `severity`"
                )
            seen[rule.id] = i
        return self

    def receiver_named(self, name: str) -> Receiver:
        for receiver in self.receiver:
            if receiver.name == name:
                return receiver
        known = ", ".join(r.name for r in self.receiver)
        raise UserError(f"no receiver named {name!r} in the rules file (known: {known})")

    def receivers_of(self, rule: RuleBase) -> tuple[str, ...]:
        return tuple(rule.receivers) or tuple(r.name for r in self.receiver)


def first_error(exc: ValidationError) -> str:
    """One line: where in the file and what is wrong."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"] if not _is_variant(p))
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _is_variant(part: object) -> bool:
    return isinstance(part, str) and part in DEFAULT_NAMES


def parse_rules(data: dict[str, object], where: str = "alert rules") -> RulesFile:
    """Validate an already parsed TOML document; resolve `secret_env` from the environment."""
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {first_error(exc)}") from None
    resolved = []
    for receiver in rules.receiver:
        if receiver.secret is None and receiver.secret_env is not None:
            value = os.environ.get(receiver.secret_env)
            if not value:
                raise UserError(
                    f"{where}: receiver {receiver.name!r}: environment variable "
                    f"{receiver.secret_env} (its secret) is not set"
                )
            receiver = receiver.model_copy(update={"secret": SecretStr(value)})
        resolved.append(receiver)
    return rules.model_copy(update={"receiver": resolved})


def load_rules(path: Path) -> RulesFile:
    """Read and validate a rules file; any problem is one UserError line naming the file."""
    where = f"alert rules {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: invalid TOML: {exc}") from None
    return parse_rules(data, where)
