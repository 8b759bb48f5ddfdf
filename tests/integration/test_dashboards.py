"""Every Grafana panel's SQL, expanded the way the ClickHouse plugin does, runs against a real store.

A small deterministic fleet (6 DCs in 3 hubs: registration, capacity of 3 pools at 60 s, power,
heartbeats, jobs, poison messages) goes through the worker's real batch Handler into a database
of its own. Each dashboard's template variables are resolved by running their queries; each
panel's query is expanded (Grafana's template variables and `$__conditionalAll` on the
frontend, then the plugin's backend macros), run, and its columns checked against what the
visualisation needs. `cpn.` is replaced by the test database's name.

Expansion rules (grafana/clickhouse-datasource pkg/macros, sqlds, CHDatasource.ts):
  $__timeFilter(c)      c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)
  $__timeFilter_ms(c)   c >= fromUnixTimestamp64Milli(<ms>) AND c <= fromUnixTimestamp64Milli(<ms>)
  $__dateFilter(c)      c >= toDate('<from date>') AND c <= toDate('<to date>')
  $__timeInterval(c)    toStartOfInterval(toDateTime(c), INTERVAL <n> second), n = max(interval, 1)
  $__timeInterval_ms(c) toStartOfInterval(toDateTime64(c, 3), INTERVAL <ms> millisecond)
  $__interval_s         <n>;  $__fromTime / $__toTime  toDateTime(<s>);  _ms variants in ms
  $__conditionalAll(phrase, $var)   1=1 when $var is All or empty, else the phrase
  $var ${var} [[var]]   a multi-value list -> 'a','b' (the plugin's format), one value -> raw
  ${var:singlequote}    'a','b' (\\' escaped); also doublequote, sqlstring, csv, pipe, raw
  All (no custom all value) -> every option's value; $__from/$__to (ms), $__interval(_ms)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.clickhouse

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))

# ---------------------------------------------------------------------------------------------
# the fleet


MINUTES = 150
DCS = [  # dc_id, name, hub, province, lat, lon, pue, green share
    ("dc-bj-01", "Beijing Yizhuang", "jjj", "CN-BJ", 39.80, 116.50, 1.22, 0.35),
    ("dc-gd-01", "Shaoguan North", "gba", "CN-GD", 24.80, 113.60, 1.28, 0.85),
    ("dc-gd-02", "Guangzhou Nansha", "gba", "CN-GD", 22.80, 113.50, 1.35, 0.55),
    ("dc-he-01", "Zhangjiakou Huailai", "jjj", "CN-HE", 40.40, 115.50, 1.18, 0.90),
    ("dc-sh-01", "Qingpu Lake", "yrd", "CN-SH", 31.15, 121.10, 1.24, 0.40),
    ("dc-zj-01", "Jiashan East", "yrd", "CN-ZJ", 30.85, 120.90, 1.30, 0.82),
]
POOLS = [("gpu-a", "nvidia-h100-sxm5-80gb", 64), ("npu-b", "huawei-ascend-910b2", 128),
         ("cpu-c", "huawei-kunpeng-920-6426", 2048)]
STALE_POOL = ("dc-bj-01", "npu-b", 30)  # stops reporting 30 minutes before the end
SILENT_DC = ("dc-gd-02", 20)  # sends nothing in the last 20 minutes
TENANTS = ["uni-lab", "startup-ai", "rural-school"]
Message = tuple[datetime, str, str, bytes]  # time, topic, key, value


def fleet_messages(end: datetime) -> list[Message]:
    """Every message of the fleet over MINUTES minutes up to `end`, in time order."""
    from schemas.events import (
        Capacity,
        Heartbeat,
        Job,
        Power,
        Registration,
        SourcesKwh,
        make_event,
    )

    start = end - timedelta(minutes=MINUTES)
    out: list[Message] = []

    def add(topic: str, value: dict[str, Any] | bytes, t: datetime, key: str) -> None:
        out.append((t, topic, key, value if isinstance(value, bytes) else json.dumps(value).encode()))

    for n, (dc, name, hub, province, lat, lon, pue, green) in enumerate(DCS):
        t0 = start + timedelta(seconds=3 + n)
        reg = Registration(dc_id=dc, name=name, operator="Test Telecom", province=province, hub=hub,
                           cluster=None, lat=lat, lon=lon, racks_total=400 + 50 * n)
        add("cpn.registry", make_event("cpn.dc.v1", f"reg-{dc}", t0, reg), t0, dc)
        for i in range(MINUTES):
            t = t0 + timedelta(minutes=i)
            if dc == SILENT_DC[0] and i >= MINUTES - SILENT_DC[1]:
                break
            load = 0.45 + 0.35 * math.sin((i + 10 * n) / 25)
            for pool, model, total in POOLS:
                if (dc, pool) == STALE_POOL[:2] and i >= MINUTES - STALE_POOL[2]:
                    continue
                online = total - n % 3
                cap = Capacity(dc_id=dc, pool_id=pool, device_model=model, devices_total=total,
                               devices_online=online, devices_allocated=int(online * load),
                               busy_ratio=round(load, 3), interval_s=60)
                add("cpn.capacity", make_event("cpn.capacity.v1", f"cap-{pool}-{i}", t, cap), t, dc)
            it = round(8.0 + n + 2 * load, 3)
            facility = round(it * pue, 3)
            contract, onsite = round(facility * green * 0.6, 3), round(facility * green * 0.2, 3)
            power = Power(dc_id=dc, interval_s=60, it_energy_kwh=it, facility_energy_kwh=facility,
                          sources_kwh=SourcesKwh(grid=round(facility - contract - onsite, 3),
                                                 green_contract=contract, onsite_renewable=onsite),
                          grid_renewable_share=0.25, grid_emission_g_per_kwh=560.0)
            add("cpn.power", make_event("cpn.power.v1", f"pow-{i}", t, power), t, dc)
            beat = Heartbeat(dc_id=dc, agent_version="0.1.0", boot_id=f"boot-{dc}", uptime_s=60.0 * i,
                             spool_backlog_events=(i * (n + 1)) % 17, spool_oldest_age_s=float(i % 7))
            add("cpn.heartbeat", make_event("cpn.heartbeat.v1", f"hb-{i}", t, beat), t, dc)
        for j in range(2):
            pool, model, _ = POOLS[j]
            if j == 1 and n % 2:
                pool, model = "gpu-d", "acme-npu-9"  # not in the catalogue: in no price book, unpriced usage
            devices, steps = 8 * (j + 1), 12 if j == 0 else 20
            for seq in range(steps + 1):
                t = t0 + timedelta(minutes=5 + 5 * seq, seconds=30)
                if dc == SILENT_DC[0] and t > end - timedelta(minutes=SILENT_DC[1]):
                    break
                phase = "start" if seq == 0 else "end" if seq == steps and j == 0 else "usage"
                job = Job(dc_id=dc, job_id=f"job-{j}", tenant_id=TENANTS[(n + j) % len(TENANTS)],
                          pool_id=pool, device_model=model, devices=devices, phase=phase, seq=seq,
                          device_seconds_total=float(devices * 300 * seq),
                          energy_kwh_total=round(devices * 0.05 * seq, 3),
                          status="succeeded" if phase == "end" else None)
                add("cpn.jobs", make_event("cpn.job.v1", f"job-{j}-{seq}", t, job), t, dc)
    for k, value in enumerate(_poison(start)):
        t = start + timedelta(minutes=20 + 25 * k)
        add("cpn.capacity", value, t, "dc-sh-01")
    out.sort(key=lambda m: m[0])
    return out


def _poison(start: datetime) -> list[bytes]:
    """Messages the worker must dead-letter: undecodable, unknown type, inconsistent, schema."""
    from schemas.events import Capacity, make_event

    good = make_event("cpn.capacity.v1", "bad-1", start, Capacity(
        dc_id="dc-sh-01", pool_id="gpu-a", device_model="nvidia-h100-sxm5-80gb", devices_total=8,
        devices_online=8, devices_allocated=4, interval_s=60))
    inconsistent = dict(good, data=dict(good["data"], devices_allocated=9))  # type: ignore[arg-type]
    schema = dict(good, id="bad-2", data=dict(good["data"], busy_ratio=1.5))  # type: ignore[arg-type]
    return [b"\xff\xfe not json", json.dumps({"specversion": "1.0", "type": "cpn.nope.v1"}).encode(),
            json.dumps(inconsistent).encode(), json.dumps(schema).encode()]


def load_fleet(client: Any, database: str, end: datetime, window_min: int = 10) -> int:
    """Push the fleet through the worker's batch Handler in `window_min` batches; return the count."""
    from schemas.catalogue import load_catalogue
    from schemas.prices import PriceBook
    from streams.batch import Record
    from streams.sink import Sink
    from streams.worker import Handler

    messages = fleet_messages(end)
    offsets: dict[str, int] = {}
    now = [end]
    handler = Handler(sink=Sink(client, database), catalogue=load_catalogue(), prices=PriceBook.load(),
                      deadletter_topic="cpn.deadletter", worker_id="worker-1", metrics_interval_s=0.0,
                      clock=lambda: now[0], highwater=lambda tp: offsets.get(tp.topic, 0) + 5)
    start = end - timedelta(minutes=MINUTES)

    async def run() -> None:
        i = 0
        for w in range(MINUTES // window_min + 1):
            window_end = start + timedelta(minutes=window_min * (w + 1))
            batch = []
            while i < len(messages) and messages[i][0] < window_end:
                _, topic, key, value = messages[i]
                offsets[topic] = offsets.get(topic, -1) + 1
                batch.append(Record(topic, 0, offsets[topic], key.encode(), value))
                i += 1
            now[0] = min(window_end, end) + timedelta(seconds=2)
            if batch:
                await handler(batch)

    asyncio.run(run())
    return len(messages)


# ---------------------------------------------------------------------------------------------
# the plugin's expansion


@dataclass(frozen=True)
class Selection:
    """A template variable's current value: All, or the chosen values."""

    values: tuple[str, ...]
    all: bool = False
    multi: bool = True
    options: tuple[str, ...] = ()
    all_value: str | None = None

    @property
    def current_value_string(self) -> str:
        """JavaScript's `current.value.toString()` (what $__conditionalAll looks at)."""
        return "$__all" if self.all else ",".join(self.values)

    def interpolated(self) -> str | list[str]:
        if self.all:
            return self.all_value if self.all_value is not None else list(self.options)
        return list(self.values) if self.multi else (self.values[0] if self.values else "")


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: float = 60.0

    @property
    def from_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def to_ms(self) -> int:
        return int(self.end.timestamp() * 1000)


_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
_FORMATS: dict[str, Callable[[list[str]], str]] = {
    "singlequote": lambda vs: ",".join("'" + v.replace("'", "\\'") + "'" for v in vs),
    "doublequote": lambda vs: ",".join('"' + v.replace('"', '\\"') + '"' for v in vs),
    "sqlstring": lambda vs: ",".join("'" + v.replace("'", "''") + "'" for v in vs),
    "csv": ",".join,
    "raw": ",".join,
    "pipe": "|".join,
}


class ExpandError(ValueError):
    """A query the plugin would refuse (bad macro arguments, an unknown variable format)."""


def _args(text: str, at: int) -> tuple[list[str], int]:
    """The untrimmed arguments of the bracketed list at text[at] == '(' and the index after ')'."""
    depth, args, current = 0, [], []
    for i in range(at, len(text)):
        char = text[i]
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            args.append("".join(current))
            return args, i + 1
        if char == "," and depth == 1:
            args.append("".join(current))
            current = []
        elif depth > 1 or char != "(":
            current.append(char)
    raise ExpandError("failed to parse macro arguments (missing close bracket?)")


def conditional_all(sql: str, variables: dict[str, Selection]) -> str:
    """CHDatasource.applyConditionalAll: `$__conditionalAll(phrase, $var)`, the last one first."""
    macro = "$__conditionalAll("
    at = sql.rfind(macro)
    while at != -1:
        try:
            args, end = _args(sql, at + len(macro) - 1)
        except ExpandError:
            return sql
        if len(args) != 2:
            return sql
        phrase = args[0]
        name = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1])
        selection = variables.get(name.group(0)) if name else None
        if selection is not None and selection.current_value_string in ("", "$__all"):
            phrase = "1=1"
        sql = sql.replace(sql[at:end], phrase, 1)
        at = sql.rfind(macro)
    return sql


def template(sql: str, variables: dict[str, Selection], when: TimeRange) -> str:
    """Grafana's templateSrv.replace with the plugin's format function for the default format."""
    builtin = {
        "__from": str(when.from_ms), "__to": str(when.to_ms),
        "__interval_ms": str(int(when.interval_s * 1000)), "__interval": _duration(when.interval_s),
        "__range_s": str(int((when.end - when.start).total_seconds())),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name in builtin:
            return builtin[name]
        if name not in variables:
            return match.group(0)
        value = variables[name].interpolated()
        if variables[name].all and variables[name].all_value is not None:
            return str(value)
        if fmt is None:
            return "'" + "','".join(value) + "'" if isinstance(value, list) else value
        if fmt not in _FORMATS:
            raise ExpandError(f"unknown variable format {fmt!r}")
        return _FORMATS[fmt](value if isinstance(value, list) else [value])

    return _VARIABLE.sub(replace, sql)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def macros(sql: str, when: TimeRange) -> str:
    """The plugin's backend macros (pkg/macros/macros.go) through sqlds' argument parser."""
    f_s, t_s = int(when.start.timestamp()), int(when.end.timestamp())
    secs, millis = max(int(when.interval_s), 1), max(int(when.interval_s * 1000), 1)
    fdt, tdt = f"toDateTime({f_s})", f"toDateTime({t_s})"
    fms, tms = f"fromUnixTimestamp64Milli({when.from_ms})", f"fromUnixTimestamp64Milli({when.to_ms})"
    fd, td = f"toDate('{when.start:%Y-%m-%d}')", f"toDate('{when.end:%Y-%m-%d}')"

    def one(expr: Callable[[str], str]) -> Callable[[list[str]], str]:
        def apply(args: list[str]) -> str:
            if len(args) != 1:
                raise ExpandError(f"unexpected number of arguments: expected 1, received {len(args)}")
            return expr(args[0])

        return apply

    def dt_filter(args: list[str]) -> str:
        if len(args) != 2:
            raise ExpandError(f"unexpected number of arguments: expected 2, received {len(args)}")
        d, t = args
        return f"({d} >= {fd} AND {d} <= {td}) AND ({t} >= {fdt} AND {t} <= {tdt})"

    table: dict[str, Callable[[list[str]], str]] = {
        "fromTime": lambda _: fdt, "toTime": lambda _: tdt,
        "fromTime_ms": lambda _: fms, "toTime_ms": lambda _: tms,
        "timeFilter": one(lambda c: f"{c} >= {fdt} AND {c} <= {tdt}"),
        "timeFilter_ms": one(lambda c: f"{c} >= {fms} AND {c} <= {tms}"),
        "dateFilter": one(lambda c: f"{c} >= {fd} AND {c} <= {td}"),
        "dateTimeFilter": dt_filter, "dt": dt_filter,
        "timeInterval": one(lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {secs} second)"),
        "timeInterval_ms": one(
            lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {millis} millisecond)"),
        "interval_s": lambda _: str(secs),
    }
    for name, apply in table.items():
        pattern = re.compile(rf"\$__{name}\b")
        position = 0
        while match := pattern.search(sql, position):
            args, end = [], match.end()
            if sql[end:end + 1] == "(":
                args, end = _args(sql, end)
            text = apply([a.strip() for a in args])
            sql = sql[:match.start()] + text + sql[end:]
            position = match.start() + len(text)
    return sql


def expand(sql: str, variables: dict[str, Selection], when: TimeRange) -> str:
    """Frontend (conditional alls, template variables), then backend macros."""
    return macros(template(conditional_all(sql, variables), variables, when), when)


# ---------------------------------------------------------------------------------------------
# the checker


@dataclass
class Result:
    names: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


Runner = Callable[[str], Result]
_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal)")
_TIME = re.compile(r"^(Nullable\()?(DateTime|Date)")


def panel_interval(panel: dict[str, Any], when: TimeRange) -> float:
    """Grafana's interval: range / ~1000 points, rounded up to a step, at least the panel's minimum."""
    raw = (when.end - when.start).total_seconds() / 1000
    steps = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 21600, 43200, 86400]
    auto = next((s for s in steps if s >= raw), steps[-1])
    minimum = panel.get("interval")
    if minimum:
        number, unit = re.fullmatch(r"(\d+)([smhd])", minimum).groups()  # type: ignore[union-attr]
        auto = max(auto, int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
    return float(auto)


def resolve_variables(dashboard: dict[str, Any], run: Runner, when: TimeRange, *, pick: str) -> dict[str, Selection]:
    """Run each query variable in order; `pick` = "all" (All, or the first for single-value) or "first"."""
    chosen: dict[str, Selection] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        sql = variable["query"]["rawSql"] if isinstance(variable["query"], dict) else variable["query"]
        result = run(expand(sql, chosen, when))
        options = tuple(str(row[0]) for row in result.rows)
        if not options:
            raise AssertionError(f"variable ${variable['name']}: its query returned no values")
        multi = bool(variable.get("multi"))
        if pick == "all" and variable.get("includeAll"):
            chosen[variable["name"]] = Selection((), all=True, multi=multi, options=options,
                                                 all_value=variable.get("allValue") or None)
        else:
            chosen[variable["name"]] = Selection(options[:1], multi=multi, options=options)
    return chosen


def required_fields(panel: dict[str, Any]) -> set[str]:
    """Field names the panel's options and overrides refer to."""
    names = {o["matcher"]["options"] for o in panel.get("fieldConfig", {}).get("overrides", [])
             if o.get("matcher", {}).get("id") == "byName"}
    for layer in panel.get("options", {}).get("layers", []):
        location = layer.get("location", {})
        names |= {location[k] for k in ("latitude", "longitude") if location.get(k)}
        style = layer.get("config", {}).get("style", {})
        names |= {style[k]["field"] for k in ("size", "color", "text") if style.get(k, {}).get("field")}
    names |= {s["displayName"] for s in panel.get("options", {}).get("sortBy", [])}
    return names


def check_result(panel: dict[str, Any], result: Result, *, require_rows: bool) -> list[str]:
    """What is wrong with a panel's result for its visualisation (empty: nothing)."""
    kind, title = panel["type"], panel.get("title", "?")
    problems = []
    numeric = [n for n, t in zip(result.names, result.types, strict=True) if _NUMERIC.match(t.replace("LowCardinality(", ""))]
    times = [n for n, t in zip(result.names, result.types, strict=True) if _TIME.match(t)]
    if require_rows and not result.rows:
        problems.append(f"{title}: no rows")
    if kind in ("timeseries", "trend") and not times:
        problems.append(f"{title}: a {kind} needs a time column, got {result.names}")
    if kind in ("timeseries", "trend", "stat", "gauge", "bargauge", "piechart", "barchart") and not numeric:
        problems.append(f"{title}: a {kind} needs a numeric column, got {dict(zip(result.names, result.types, strict=True))}")
    if kind == "geomap":
        for layer in panel.get("options", {}).get("layers", []):
            location = layer.get("location", {})
            for key in ("latitude", "longitude"):
                if location.get(key) not in numeric:
                    problems.append(f"{title}: the geomap's {key} field {location.get(key)!r} is not a numeric column")
    missing = required_fields(panel) - set(result.names)
    if missing:
        problems.append(f"{title}: fields {sorted(missing)} used by the panel are not in the result {result.names}")
    return problems


def check_dashboard(dashboard: dict[str, Any], run: Runner, when: TimeRange, *, pick: str = "all") -> list[str]:
    """Expand and run every panel query; return the problems (empty: every panel works)."""
    variables = resolve_variables(dashboard, run, when, pick=pick)
    problems: list[str] = []
    for panel in dashboard["panels"]:
        ranged = TimeRange(when.start, when.end, panel_interval(panel, when))
        for target in panel.get("targets", []):
            try:
                result = run(expand(target["rawSql"], variables, ranged))
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                problems.append(f"{panel.get('title')}: query fails: {first[:300]}")
                continue
            problems += check_result(panel, result, require_rows=pick == "all")
    return problems


# ---------------------------------------------------------------------------------------------
# fixtures


@dataclass
class Fleet:
    client: Any
    database: str
    when: TimeRange
    queries: list[str] = field(default_factory=list)

    def run(self, sql: str) -> Result:
        sql = re.sub(r"\bcpn\.", f"{self.database}.", sql)
        self.queries.append(sql)
        result = self.client.query(sql)
        return Result(list(result.column_names), [t.name for t in result.column_types],
                      list(result.result_rows))


@pytest.fixture(scope="module")
def fleet(clickhouse_client: Any) -> Iterator[Fleet]:
    """A migrated database of its own holding the fleet, shared by this module's tests."""
    from surplus.store import migrate

    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database)
    now = datetime.now(UTC)
    end = now.replace(second=0, microsecond=0)
    load_fleet(clickhouse_client, database, end)
    from surplus.dispatch.service import refresh

    assert refresh(clickhouse_client, database)[1] > 0  # the forecast and the sellable panel's table
    # the range ends after the refresh: on a loaded machine a minute may pass while loading, and
    # the sellable panel's made_at (the latest snapshot minute at refresh) must fall inside it
    yield Fleet(clickhouse_client, database, TimeRange(end - timedelta(hours=3), datetime.now(UTC)))
    with contextlib.suppress(Exception):
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database}")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# ---------------------------------------------------------------------------------------------
# tests


def test_the_dashboards_are_there() -> None:
    assert {p.stem for p in DASHBOARDS} >= {
        "national-surplus", "green-energy", "data-center", "accounting", "pipeline-health"}


def test_the_fleet_reaches_every_relation(fleet: Fleet) -> None:
    counts = {name: fleet.run(f"SELECT count() FROM cpn.{name}").rows[0][0] for name in (
        "datacenters", "dc_surplus_minute", "hub_surplus_minute", "national_surplus_minute",
        "dc_green_hourly", "hub_green_hourly", "national_green_hourly", "ledger",
        "tenant_usage_daily", "agent_freshness", "deadletter", "pipeline_metrics")}
    assert all(counts.values()), counts
    reasons = {r[0] for r in fleet.run("SELECT DISTINCT reason FROM cpn.deadletter").rows}
    assert reasons == {"undecodable", "unknown_type", "inconsistent", "schema"}
    stale = fleet.run("SELECT max(pools_stale) FROM cpn.hub_surplus_minute").rows[0][0]
    assert stale >= 3  # the silent DC's pools


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_returns_what_its_visualisation_needs(fleet: Fleet, path: Path) -> None:
    problems = check_dashboard(_load(path), fleet.run, fleet.when, pick="all")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_runs_with_single_values_selected(fleet: Fleet, path: Path) -> None:
    """The first value of each variable: exercises `${var:singlequote}` lists instead of 1=1."""
    before = len(fleet.queries)
    problems = check_dashboard(_load(path), fleet.run, fleet.when, pick="first")
    assert not problems, "\n".join(problems)
    expanded = "\n".join(fleet.queries[before:])
    assert "$" not in expanded.replace("$__all", "")
    if "${hub:singlequote}" in path.read_text(encoding="utf-8"):
        assert "IN ('gba')" in expanded


@pytest.mark.parametrize("breakage", ["column", "variable", "macro", "shape"])
def test_the_checker_catches_a_broken_panel(fleet: Fleet, breakage: str) -> None:
    dashboard = _load(REPO / "deploy" / "grafana" / "dashboards" / "national-surplus.json")
    broken = copy.deepcopy(dashboard)
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    target = panel["targets"][0]
    if breakage == "column":
        target["rawSql"] = target["rawSql"].replace("idle_pflops_fp16", "idle_pflops_fp8", 1)
    elif breakage == "variable":
        target["rawSql"] = target["rawSql"].replace("$__timeFilter(ts)", "$__timeFilter(ts) AND hub = $hubb")
    elif breakage == "macro":
        target["rawSql"] = target["rawSql"].replace("$__timeInterval(ts)", "$__timeInterval(ts, 60)")
    else:
        target["rawSql"] = "SELECT 'x' AS label, 1 AS value"
    assert not check_dashboard(dashboard, fleet.run, fleet.when)
    problems = check_dashboard(broken, fleet.run, fleet.when)
    assert problems
    assert all(p.startswith(panel["title"]) for p in problems), problems


# --- the expander's own rules (no store needed) -----------------------------------------------

WHEN = TimeRange(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 6, 4, 5, tzinfo=UTC), 60)


def test_macros_expand_like_the_plugin() -> None:
    f, t = int(WHEN.start.timestamp()), int(WHEN.end.timestamp())
    sql = ("SELECT $__timeInterval(ts) AS time, $__interval_s AS s FROM x WHERE $__timeFilter(ts) "
           "AND d >= toDate($__fromTime) AND $__timeFilter_ms(t2) AND e < $__toTime AND $__dateFilter(day)")
    assert macros(sql, WHEN) == (
        f"SELECT toStartOfInterval(toDateTime(ts), INTERVAL 60 second) AS time, 60 AS s FROM x "
        f"WHERE ts >= toDateTime({f}) AND ts <= toDateTime({t}) AND d >= toDate(toDateTime({f})) "
        f"AND t2 >= fromUnixTimestamp64Milli({f}000) AND t2 <= fromUnixTimestamp64Milli({t}000) "
        f"AND e < toDateTime({t}) AND day >= toDate('2026-01-02') AND day <= toDate('2026-01-02')")
    assert macros("$__timeInterval(toStartOfHour(hour))", TimeRange(WHEN.start, WHEN.end, 0.2)) == (
        "toStartOfInterval(toDateTime(toStartOfHour(hour)), INTERVAL 1 second)")
    with pytest.raises(ExpandError):
        macros("$__timeFilter(a, b)", WHEN)
    with pytest.raises(ExpandError):
        macros("$__timeFilter(a", WHEN)


def test_variables_and_conditional_all_expand_like_grafana() -> None:
    all_hubs = Selection((), all=True, options=("gba", "jjj"))
    two = Selection(("gba", "o'k"))
    one = Selection(("dc-1",), multi=False, options=("dc-1", "dc-2"))
    sql = "$__conditionalAll(hub IN (${hub:singlequote}), $hub) AND dc = ${dc:singlequote} AND d = '$dc'"
    assert expand(sql, {"hub": all_hubs, "dc": one}, WHEN) == "1=1 AND dc = 'dc-1' AND d = 'dc-1'"
    assert expand(sql, {"hub": two, "dc": one}, WHEN) == (
        "hub IN ('gba','o\\'k') AND dc = 'dc-1' AND d = 'dc-1'")
    assert template("x IN ($hub) OR [[hub]] OR ${hub:csv} OR ${hub:sqlstring}", {"hub": two}, WHEN) == (
        "x IN ('gba','o'k') OR 'gba','o'k' OR gba,o'k OR 'gba','o''k'")
    assert template("x IN (${hub:singlequote})", {"hub": all_hubs}, WHEN) == "x IN ('gba','jjj')"
    custom = Selection((), all=True, options=("a",), all_value=".*")
    assert template("x = '${hub:singlequote}'", {"hub": custom}, WHEN) == "x = '.*'"
    assert template("$__from $__to $__interval $__interval_s $unknown", {}, WHEN) == (
        f"{WHEN.from_ms} {WHEN.to_ms} 1m $__interval_s $unknown")
    nested = "$__conditionalAll(a IN (SELECT x FROM t WHERE h IN (${hub:singlequote})), $hub)"
    assert expand(nested, {"hub": two}, WHEN) == "a IN (SELECT x FROM t WHERE h IN ('gba','o\\'k'))"
    with pytest.raises(ExpandError):
        template("${hub:nonsense}", {"hub": two}, WHEN)


@pytest.mark.parametrize(("stem", "title"), [
    ("national-surplus", "National idle and online FP16 PFLOPS (all hubs)"), ("data-center", "Idle PFLOPS")])
def test_long_ranges_read_the_hourly_relations_with_the_same_figures(fleet: Fleet, stem: str, title: str) -> None:
    """Over two days a panel reads the hourly relation (SPEC §5), whose exact means over the
    minutes give the same hourly points as the minute relation does for a short range."""
    dashboard = _load(REPO / "deploy" / "grafana" / "dashboards" / f"{stem}.json")
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    sql = panel["targets"][0]["rawSql"]
    assert "_surplus_hourly" in sql and "_surplus_minute" in sql
    # both ranges hold every minute of the fleet, also those its last samples stand for ahead
    end = fleet.when.end + timedelta(minutes=10)
    short = TimeRange(fleet.when.start, end, interval_s=3600)
    long = TimeRange(end - timedelta(days=3), end, interval_s=3600)
    chosen = resolve_variables(dashboard, fleet.run, short, pick="first")
    minute_rows = fleet.run(expand(sql, chosen, short)).rows
    hourly_rows = fleet.run(expand(sql, chosen, long)).rows
    assert minute_rows and len(hourly_rows) == len(minute_rows)
    for a, b in zip(minute_rows, hourly_rows, strict=True):
        assert a[0] == b[0]
        assert list(b[1:]) == pytest.approx(list(a[1:]), rel=1e-9)
    # the long range's points all come from the hourly relation: emptied, nothing is left
    relation = re.search(r"FROM (cpn\.\w+_surplus_hourly)", sql)
    assert relation is not None
    emptied = sql.replace(relation.group(0), f"FROM (SELECT * FROM {relation.group(1)} WHERE 0)")
    assert fleet.run(expand(emptied, chosen, long)).rows == []
    assert fleet.run(expand(emptied, chosen, short)).rows == minute_rows
