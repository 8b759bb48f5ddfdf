"""A tenant's monthly invoice from the ledger: lines per DC and device model with device-hours,
unit price(s) and amounts. `build` is pure; `invoice` reads ClickHouse (I/O).

The month is the Asia/Shanghai month of each entry's `period_end`, as `cpn.tenant_usage_daily`'s
`day` is its Asia/Shanghai date, so an invoice's total equals that relation's `amount_cny` summed
over the tenant's days of the month, to the fen (both are sums of the same Decimal(18, 4)
entry amounts). Unit prices are the price book's (SPEC §4) for the tenant, model and day of the
usage; a model with no price shows its device-hours as unpriced, at 0 CNY.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from schemas.prices import PriceBook

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

HOURS = Decimal("0.000001")
SQL = """
SELECT dc_id, device_model, toDate(period_end, 'Asia/Shanghai') AS day, priced,
       sum(device_seconds) AS seconds, sum(amount_cny) AS amount
FROM {db}.ledger_entries FINAL
WHERE tenant_id = {tenant:String} AND day >= {lo:Date} AND day < {hi:Date}
GROUP BY dc_id, device_model, day, priced
"""
DAILY_SQL = """
SELECT sum(amount_cny) FROM {db}.tenant_usage_daily
WHERE tenant_id = {tenant:String} AND day >= {lo:Date} AND day < {hi:Date}
"""


@dataclass
class Line:
    dc_id: str
    device_model: str
    device_seconds: Decimal = Decimal(0)
    unpriced_seconds: Decimal = Decimal(0)
    amount_cny: Decimal = Decimal("0.0000")
    unit_prices: set[Decimal] = field(default_factory=set)

    def as_strings(self) -> dict[str, Any]:
        return {"dc_id": self.dc_id, "device_model": self.device_model,
                "device_hours": _hours(self.device_seconds),
                "unit_prices_cny_per_device_hour": [str(p) for p in sorted(self.unit_prices)],
                "unpriced_device_hours": _hours(self.unpriced_seconds),
                "amount_cny": str(self.amount_cny)}


@dataclass(frozen=True, slots=True)
class Invoice:
    tenant_id: str
    month: str  # YYYY-MM
    lines: list[Line]
    usage_daily_amount_cny: Decimal | None = None  # the check against cpn.tenant_usage_daily

    @property
    def total_amount_cny(self) -> Decimal:
        return sum((line.amount_cny for line in self.lines), Decimal("0.0000"))

    @property
    def total_device_seconds(self) -> Decimal:
        return sum((line.device_seconds for line in self.lines), Decimal(0))

    def as_dict(self) -> dict[str, Any]:
        check = self.usage_daily_amount_cny
        return {"tenant_id": self.tenant_id, "month": self.month, "currency": "CNY",
                "lines": [line.as_strings() for line in self.lines],
                "total_device_hours": _hours(self.total_device_seconds),
                "total_amount_cny": str(self.total_amount_cny),
                "tenant_usage_daily_amount_cny": None if check is None else str(check)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["dc_id", "device_model", "device_hours", "unit_price_cny_per_device_hour",
                         "unpriced_device_hours", "amount_cny"])
        for line in self.lines:
            s = line.as_strings()
            writer.writerow([s["dc_id"], s["device_model"], s["device_hours"],
                             ";".join(s["unit_prices_cny_per_device_hour"]),
                             s["unpriced_device_hours"], s["amount_cny"]])
        writer.writerow(["total", "", _hours(self.total_device_seconds), "", "",
                         str(self.total_amount_cny)])
        return out.getvalue()


def _hours(seconds: Decimal) -> str:
    return format((seconds / 3600).quantize(HOURS, rounding=ROUND_HALF_EVEN), "f")


def month_bounds(month: str) -> tuple[date, date]:
    """[first day, first day of the next month) of `YYYY-MM`; ValueError if it is not one."""
    if len(month) != 7 or month[4] != "-":
        raise ValueError(f"{month!r} is not a month (YYYY-MM)")
    first = date(int(month[:4]), int(month[5:]), 1)
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, after


def build(tenant_id: str, month: str, rows: Iterable[Sequence[Any]], prices: PriceBook) -> Invoice:
    """Lines from (dc_id, device_model, day, priced, seconds, amount) rows, priced per day."""
    lines: dict[tuple[str, str], Line] = {}
    for dc_id, model, day, priced, seconds, amount in rows:
        line = lines.setdefault((dc_id, model), Line(dc_id, model))
        exact_seconds = Decimal(repr(float(seconds)))
        line.device_seconds += exact_seconds
        line.amount_cny += Decimal(amount)
        if priced:
            unit = prices.price(model, tenant_id, day)
            if unit is not None:
                line.unit_prices.add(unit)
        else:
            line.unpriced_seconds += exact_seconds
    return Invoice(tenant_id, month, [lines[k] for k in sorted(lines)])


def invoice(client: Client, database: str, tenant_id: str, month: str, prices: PriceBook) -> Invoice:
    """The tenant's invoice for `month`, with tenant_usage_daily's total for the same month."""
    lo, hi = month_bounds(month)
    params = {"tenant": tenant_id, "lo": lo, "hi": hi}
    rows = client.query(SQL.replace("{db}", database), parameters=params).result_rows
    built = build(tenant_id, month, rows, prices)
    daily = client.query(DAILY_SQL.replace("{db}", database), parameters=params).result_rows
    total = Decimal(daily[0][0]) if daily and daily[0][0] is not None else Decimal("0.0000")
    return Invoice(built.tenant_id, built.month, built.lines, total)
