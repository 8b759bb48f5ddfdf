"""The price book (SPEC §4): CNY per device-hour by model, tenant and date. Pure but for `load`.

A TOML file of `[[price]]` entries with `device_model`, `cny_per_device_hour` (a decimal
*string*: money is Decimal end to end, never a float), `effective_from` (a TOML date) and
optionally `tenant_id`. A ledger entry takes the tenant's own price if one is effective, else
the model's general price; each is the latest whose `effective_from` is on or before the
Asia/Shanghai date of the entry's `period_end`. A model with no price is metered at 0 and
reported as unpriced.
"""

from __future__ import annotations

import os
import re
import tomllib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_PRICE_BOOK = Path(__file__).with_name("prices.toml")
ENV_VAR = "SURPLUS_PRICE_BOOK"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
SECONDS_PER_HOUR = Decimal(3600)
FOUR_PLACES = Decimal("0.0001")  # amounts are kept to 4 decimal places
ZERO_AMOUNT = Decimal("0.0000")
REQUIRED_KEYS = frozenset({"device_model", "cny_per_device_hour", "effective_from"})
ALLOWED_KEYS = REQUIRED_KEYS | {"tenant_id"}


def _shanghai() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:  # no tz database: China has kept UTC+8 without DST since 1991
        return timezone(timedelta(hours=8), "Asia/Shanghai")


SHANGHAI = _shanghai()


class PriceBookError(ValueError):
    """A price book that cannot be used; the message is one line saying what and where."""


@dataclass(frozen=True, slots=True)
class Price:
    device_model: str
    cny_per_device_hour: Decimal
    effective_from: date
    tenant_id: str | None = None


def shanghai_date(moment: datetime) -> date:
    """The Asia/Shanghai calendar date of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"period_end must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(SHANGHAI).date()


class PriceBook:
    """Immutable lookups over a list of prices; build it with `load`, `parse` or the constructor."""

    __slots__ = ("_index", "entries")

    def __init__(self, entries: Iterable[Price]) -> None:
        self.entries: tuple[Price, ...] = tuple(entries)
        series: dict[tuple[str, str | None], dict[date, Decimal]] = {}
        for entry in self.entries:
            key = (entry.device_model, entry.tenant_id)
            by_date = series.setdefault(key, {})
            if entry.effective_from in by_date:
                who = f"tenant {entry.tenant_id!r}" if entry.tenant_id else "all tenants"
                raise PriceBookError(
                    f"two prices for {entry.device_model!r} ({who}) effective from "
                    f"{entry.effective_from.isoformat()}"
                )
            by_date[entry.effective_from] = entry.cny_per_device_hour
        # per (model, tenant or None): effective dates ascending, and the prices in that order
        self._index: dict[tuple[str, str | None], tuple[list[date], list[Decimal]]] = {}
        for key, by_date in series.items():
            days = sorted(by_date)
            self._index[key] = (days, [by_date[day] for day in days])

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def load(cls, path: Path | str | None = None) -> PriceBook:
        """Read a price book: `path`, else $SURPLUS_PRICE_BOOK, else the shipped default."""
        if path is None:
            path = os.environ.get(ENV_VAR) or DEFAULT_PRICE_BOOK
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceBookError(
                f"price book {path}: cannot read it ({exc.strerror or exc}); "
                f"check {ENV_VAR} or the path given"
            ) from exc
        return cls.parse(text, origin=str(path))

    @classmethod
    def parse(cls, text: str, origin: str = "<text>") -> PriceBook:
        """Parse price-book TOML; raises PriceBookError naming the bad entry."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceBookError(f"price book {origin}: not valid TOML: {exc}") from exc
        unknown = sorted(set(raw) - {"price"})
        if unknown:
            raise PriceBookError(
                f"price book {origin}: unknown top-level keys {unknown}; only [[price]] tables"
            )
        items = raw.get("price", [])
        if not isinstance(items, list):
            raise PriceBookError(f"price book {origin}: 'price' must be [[price]] tables")
        return cls(_entry(item, origin, number) for number, item in enumerate(items, start=1))

    def price(self, device_model: str, tenant_id: str, on: date) -> Decimal | None:
        """CNY per device-hour on a date: the tenant's own price, else the model's; None if none."""
        own = self._latest((device_model, tenant_id), on)
        return own if own is not None else self._latest((device_model, None), on)

    def amount(
        self,
        device_model: str,
        tenant_id: str,
        device_seconds: Decimal,
        period_end: datetime,
    ) -> tuple[Decimal, bool]:
        """(amount_cny to 4 places, half-even; priced?) for usage ending at `period_end`."""
        if not isinstance(device_seconds, Decimal) or not device_seconds.is_finite():
            raise ValueError(f"device_seconds must be a finite Decimal, got {device_seconds!r}")
        unit_price = self.price(device_model, tenant_id, shanghai_date(period_end))
        if unit_price is None:
            return ZERO_AMOUNT, False
        with localcontext() as ctx:
            ctx.prec = 60  # wide enough that only the final quantize rounds
            exact = device_seconds * unit_price / SECONDS_PER_HOUR
            return exact.quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN), True

    def _latest(self, key: tuple[str, str | None], on: date) -> Decimal | None:
        series = self._index.get(key)
        if series is None:
            return None
        dates, prices = series
        position = bisect_right(dates, on)
        return prices[position - 1] if position else None


def _entry(item: object, origin: str, number: int) -> Price:
    where = f"price book {origin}: [[price]] #{number}"
    if not isinstance(item, Mapping):
        raise PriceBookError(f"{where}: must be a table")
    model = item.get("device_model")
    if isinstance(model, str):
        where += f" ({model})"
    unknown = sorted(set(item) - ALLOWED_KEYS)
    if unknown:
        raise PriceBookError(f"{where}: unknown keys {unknown}; allowed {sorted(ALLOWED_KEYS)}")
    missing = sorted(REQUIRED_KEYS - set(item))
    if missing:
        raise PriceBookError(f"{where}: missing keys {missing}")
    if not isinstance(model, str) or not ID_PATTERN.fullmatch(model):
        raise PriceBookError(f"{where}: device_model must match {ID_PATTERN.pattern}")
    tenant = item.get("tenant_id")
    if tenant is not None and (not isinstance(tenant, str) or not ID_PATTERN.fullmatch(tenant)):
        raise PriceBookError(f"{where}: tenant_id must match {ID_PATTERN.pattern}")
    return Price(
        device_model=model,
        cny_per_device_hour=_money(item["cny_per_device_hour"], where),
        effective_from=_day(item["effective_from"], where),
        tenant_id=tenant,
    )


def _money(value: object, where: str) -> Decimal:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise PriceBookError(
            f'{where}: cny_per_device_hour must be a decimal string such as "9.50", '
            f"not the {type(value).__name__} {value!r} (money is never a float)"
        )
    if not isinstance(value, str):
        raise PriceBookError(f'{where}: cny_per_device_hour must be a decimal string like "9.50"')
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise PriceBookError(f"{where}: cny_per_device_hour {value!r} is not a decimal") from exc
    if amount.is_finite() and amount < 0:
        raise PriceBookError(f"{where}: cny_per_device_hour {value!r} is negative")
    if not PLAIN_DECIMAL.fullmatch(value):
        raise PriceBookError(
            f'{where}: cny_per_device_hour {value!r} must be a plain decimal such as "9.50"'
        )
    return amount


def _day(value: object, where: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise PriceBookError(
            f"{where}: effective_from must be a TOML date such as 2024-01-01 (unquoted), "
            f"got {value!r}"
        )
    return value
