"""The price book (SPEC §4): effective dates, tenant overrides, Decimal money, file validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from schemas.prices import (
    DEFAULT_PRICE_BOOK,
    ENV_VAR,
    PriceBook,
    PriceBookError,
    shanghai_date,
)

CST = timezone(timedelta(hours=8))

BOOK = """
[[price]]
device_model = "gpu-a"
cny_per_device_hour = "10.00"
effective_from = 2024-01-01

[[price]]
device_model = "gpu-a"
cny_per_device_hour = "8.00"
effective_from = 2025-04-01

[[price]]
device_model = "gpu-a"
tenant_id = "school"
cny_per_device_hour = "6.00"
effective_from = 2024-06-01

[[price]]
device_model = "gpu-b"
tenant_id = "school"
cny_per_device_hour = "3.00"
effective_from = 2024-01-01
"""


@pytest.fixture
def book() -> PriceBook:
    return PriceBook.parse(BOOK)


def _entry(price: str = '"1.00"', extra: str = "", when: str = "2024-01-01") -> str:
    return (
        f'[[price]]\ndevice_model = "gpu-a"\ncny_per_device_hour = {price}\n'
        f"effective_from = {when}\n{extra}"
    )


# --- lookups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2023, 12, 31), None),  # the day before the first price
        (date(2024, 1, 1), Decimal("10.00")),  # its first day
        (date(2024, 1, 2), Decimal("10.00")),  # the day after
        (date(2025, 3, 31), Decimal("10.00")),  # the day before the later price
        (date(2025, 4, 1), Decimal("8.00")),  # the later price's first day
        (date(2025, 4, 2), Decimal("8.00")),
    ],
)
def test_general_price_follows_effective_dates(
    book: PriceBook, on: date, expected: Decimal | None
) -> None:
    assert book.price("gpu-a", "someone", on) == expected


def test_tenant_override_beats_the_model_price(book: PriceBook) -> None:
    assert book.price("gpu-a", "school", date(2025, 6, 1)) == Decimal("6.00")
    assert book.price("gpu-a", "other", date(2025, 6, 1)) == Decimal("8.00")


def test_tenant_override_effective_later_than_the_model_price(book: PriceBook) -> None:
    assert book.price("gpu-a", "school", date(2024, 5, 31)) == Decimal("10.00")
    assert book.price("gpu-a", "school", date(2024, 6, 1)) == Decimal("6.00")


def test_tenant_only_price_does_not_apply_to_other_tenants(book: PriceBook) -> None:
    assert book.price("gpu-b", "school", date(2024, 1, 1)) == Decimal("3.00")
    assert book.price("gpu-b", "other", date(2024, 1, 1)) is None


def test_unpriced_model_is_zero_and_flagged(book: PriceBook) -> None:
    amount, priced = book.amount(
        "biren-br100", "school", Decimal(3600), datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert (amount, priced) == (Decimal("0.0000"), False)
    assert isinstance(amount, Decimal)
    assert str(amount) == "0.0000"


def test_before_the_first_price_is_unpriced(book: PriceBook) -> None:
    end = datetime(2023, 12, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    assert book.amount("gpu-a", "other", Decimal(3600), end) == (Decimal("0.0000"), False)


# --- amounts ----------------------------------------------------------------------------------


def test_amount_is_device_hours_times_price(book: PriceBook) -> None:
    amount, priced = book.amount("gpu-a", "other", Decimal(5400), datetime(2024, 2, 1, tzinfo=UTC))
    assert priced is True
    assert isinstance(amount, Decimal)
    assert not isinstance(amount, float)
    assert str(amount) == "15.0000"


def test_amount_of_a_non_terminating_fraction(book: PriceBook) -> None:
    # 1 s at 10 CNY/h = 0.002777... -> 0.0028
    amount, _ = book.amount("gpu-a", "other", Decimal(1), datetime(2024, 2, 1, tzinfo=UTC))
    assert amount == Decimal("0.0028")


@pytest.mark.parametrize(
    ("price", "seconds", "expected", "half_up"),
    [
        ("0.9", "1.8", "0.0004", "0.0005"),  # 0.00045: the 5th place is exactly 5, 4 is even
        ("1.1", "1.8", "0.0006", "0.0006"),  # 0.00055: rounds up to the even 6
        ("2.00005", "3600", "2.0000", "2.0001"),
        ("2.00015", "3600", "2.0002", "2.0002"),
    ],
)
def test_rounding_is_half_even_at_the_fourth_place(
    price: str, seconds: str, expected: str, half_up: str
) -> None:
    book = PriceBook.parse(_entry(f'"{price}"'))
    amount, priced = book.amount("gpu-a", "t", Decimal(seconds), datetime(2024, 6, 1, tzinfo=UTC))
    assert priced
    assert str(amount) == expected
    exact = Decimal(seconds) * Decimal(price) / 3600
    assert str(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)) == half_up


def test_the_date_is_the_asia_shanghai_date_of_period_end(book: PriceBook) -> None:
    end = datetime(2025, 3, 31, 16, 30, tzinfo=UTC)  # 2025-04-01 00:30 in Shanghai
    assert shanghai_date(end) == date(2025, 4, 1)
    assert book.amount("gpu-a", "other", Decimal(3600), end) == (Decimal("8.0000"), True)
    before = datetime(2025, 3, 31, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    assert book.amount("gpu-a", "other", Decimal(3600), before) == (Decimal("10.0000"), True)
    local = datetime(2025, 4, 1, 0, 0, tzinfo=CST)
    assert book.amount("gpu-a", "other", Decimal(3600), local) == (Decimal("8.0000"), True)


def test_naive_period_end_is_refused(book: PriceBook) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        book.amount("gpu-a", "other", Decimal(1), datetime(2025, 1, 1))


@pytest.mark.parametrize("seconds", [1.5, Decimal("NaN"), Decimal("Infinity")])
def test_device_seconds_must_be_a_finite_decimal(book: PriceBook, seconds: object) -> None:
    with pytest.raises(ValueError, match="device_seconds"):
        book.amount("gpu-a", "other", seconds, datetime(2025, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


@given(
    seconds=st.decimals(min_value=0, max_value=10**9, places=3),
    price=st.decimals(min_value=0, max_value=1000, places=5),
)
def test_amount_is_the_exact_product_rounded_once(seconds: Decimal, price: Decimal) -> None:
    book = PriceBook.parse(_entry(f'"{price}"'))
    amount, priced = book.amount("gpu-a", "t", seconds, datetime(2024, 6, 1, tzinfo=UTC))
    assert priced
    assert isinstance(amount, Decimal)
    assert amount.as_tuple().exponent == -4
    assert abs(amount - seconds * price / 3600) <= Decimal("0.00005")


# --- file validation --------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["9.5", "10", "1e3"])
def test_a_float_or_integer_price_is_rejected(price: str) -> None:
    with pytest.raises(PriceBookError, match=r"#1 \(gpu-a\).*decimal string") as info:
        PriceBook.parse(_entry(price))
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_entry('"-1.00"'), "negative"),
        (_entry('"abc"'), "not a decimal"),
        (_entry('"1E+3"'), "plain decimal"),
        (_entry('"NaN"'), "plain decimal"),
        (_entry(extra='currency = "CNY"\n'), "unknown keys"),
        ('[[price]]\ndevice_model = "gpu-a"\neffective_from = 2024-01-01\n', "missing keys"),
        (_entry(when='"2024-01-01"'), "TOML date"),
        (_entry(when="2024-01-01T00:00:00"), "TOML date"),
        (_entry(when="2024-02-30"), "not valid TOML"),
        (_entry(extra='tenant_id = "Bad Tenant"\n'), "tenant_id"),
        (_entry().replace('"gpu-a"', '"GPU A"'), "device_model"),
        ('version = "1"\n' + _entry(), "unknown top-level"),
        (_entry() + "\n" + _entry('"2.00"'), "two prices"),
    ],
)
def test_bad_files_are_rejected_with_one_line(text: str, match: str) -> None:
    with pytest.raises(PriceBookError, match=match) as info:
        PriceBook.parse(text)
    assert "\n" not in str(info.value)


def test_an_empty_book_prices_nothing() -> None:
    book = PriceBook.parse("")
    assert len(book) == 0
    assert book.price("gpu-a", "t", date(2025, 1, 1)) is None


# --- loading ----------------------------------------------------------------------------------


def test_env_var_names_the_book(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(BOOK, encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    book = PriceBook.load()
    assert book.price("gpu-a", "school", date(2025, 1, 1)) == Decimal("6.00")
    explicit = tmp_path / "other.toml"
    explicit.write_text(_entry('"2.00"'), encoding="utf-8")
    assert PriceBook.load(explicit).price("gpu-a", "school", date(2025, 1, 1)) == Decimal("2.00")


def test_without_env_var_the_shipped_book_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    book = PriceBook.load()
    assert book.entries == PriceBook.load(DEFAULT_PRICE_BOOK).entries
    assert len(book) > 0


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PriceBookError, match="cannot read"):
        PriceBook.load(tmp_path / "nope.toml")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_entry("9.5"), encoding="utf-8")
    with pytest.raises(PriceBookError, match=str(path)):
        PriceBook.load(path)


# --- the shipped default book -----------------------------------------------------------------


def test_default_book_prices_catalogue_models_only() -> None:
    book = PriceBook.load(DEFAULT_PRICE_BOOK)
    catalogue = load_catalogue()
    for entry in book.entries:
        assert entry.device_model in catalogue, entry.device_model
        assert isinstance(entry.cny_per_device_hour, Decimal)
        assert entry.cny_per_device_hour > 0
    models = {entry.device_model for entry in book.entries}
    assert {"nvidia-h100-sxm5-80gb", "huawei-ascend-910b2", "huawei-kunpeng-920-6426"} <= models
    assert any(entry.tenant_id for entry in book.entries)
    assert any(entry.effective_from > date(2024, 1, 1) for entry in book.entries)


def test_default_book_values() -> None:
    book = PriceBook.load(DEFAULT_PRICE_BOOK)
    assert book.price("nvidia-a800-sxm4-80gb", "any", date(2025, 6, 30)) == Decimal("9.50")
    assert book.price("nvidia-a800-sxm4-80gb", "any", date(2025, 7, 1)) == Decimal("5.15")
    assert book.price("nvidia-h20-96gb", "any", date(2025, 1, 1)) == Decimal("7.50")
    assert book.price("nvidia-rtx-4090", "any", date(2025, 1, 1)) == Decimal("1.24")
    assert book.price("huawei-ascend-910b2", "rural-school", date(2025, 6, 30)) == Decimal("6.00")
    assert book.price("huawei-ascend-910b2", "rural-school", date(2025, 7, 1)) == Decimal("4.20")
    end = datetime(2025, 1, 1, tzinfo=UTC)
    assert book.amount("acme-npu-9", "any", Decimal(3600), end) == (Decimal("0.0000"), False)


def test_the_default_book_prices_every_catalogue_model() -> None:
    """Issue #16: every model of the catalogue has a price on every day from 2024-01-01 (the old
    book left 17 accelerators unpriced, a third of the demo's accelerator hours at 0 CNY)."""
    book = PriceBook.load(DEFAULT_PRICE_BOOK)
    catalogue = load_catalogue()
    unpriced = sorted(m for m in catalogue.devices
                      for day in (date(2024, 1, 1), date(2026, 12, 3))
                      if book.price(m, "any-tenant", day) is None)
    assert unpriced == []


def test_the_estimated_prices_follow_their_stated_rule() -> None:
    """The models with no price source: 5.15 CNY (the sourced A800 listing) per 312 dense FP16
    TFLOPS, times the model's dense FP16 peak, half-even to the fen; each marked [estimate]."""
    from decimal import ROUND_HALF_EVEN

    text = DEFAULT_PRICE_BOOK.read_text()
    book = PriceBook.load(DEFAULT_PRICE_BOOK)
    catalogue = load_catalogue()
    estimated = {e.device_model for e in book.entries if f'"{e.device_model}"' in
                 text[text.index("# --- Estimates"):text.index("# --- CPUs")]}
    assert len(estimated) == 17 and "biren-br100" in estimated
    for model in estimated:
        fp16 = catalogue.devices[model].fp16
        assert fp16 is not None
        rule = (Decimal("5.15") * Decimal(repr(fp16)) / 312).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        assert book.price(model, "any", date(2026, 12, 3)) == rule, model
        assert f"= {rule} [estimate]" in text, model
    assert book.price("nvidia-h800-sxm5-80gb", "any", date(2026, 12, 3)) == Decimal("16.33")
    assert book.price("cambricon-mlu590", "any", date(2026, 12, 3)) == Decimal("5.18")
