from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_client import Amount, MoneyError


@pytest.mark.parametrize(
    ("text", "units", "currency", "decimals"),
    [
        ("2.50 USD", 250, "USD", 2),
        ("2.5 usd", 250, "USD", 2),
        ("0.001 USD", 1, "USD", 3),
        ("3 USD", 300, "USD", 2),
        ("7 SAT", 7, "SAT", 0),
        ("1.000001 USDC", 1000001, "USDC", 6),
        ("100 JPY", 100, "JPY", 0),
    ],
)
def test_parse(text: str, units: int, currency: str, decimals: int) -> None:
    assert Amount.parse(text) == Amount(units, currency, decimals)
    parsed = Amount.parse(text)
    assert (parsed.units, parsed.currency, parsed.decimals) == (units, currency, decimals)


@pytest.mark.parametrize(
    "text", ["-1 USD", "1e3 USD", "USD 1", "1,5 USD", "", "1.5", ".5 USD", "1. USD", "nan USD"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MoneyError):
        Amount.parse(text)


@pytest.mark.parametrize("value", [1.5, 2, None, b"1 USD"])
def test_parse_rejects_non_text(value: object) -> None:
    with pytest.raises(MoneyError):
        Amount.parse(value)  # type: ignore[arg-type]


def test_floats_never_become_money() -> None:
    with pytest.raises(MoneyError):
        Amount(1.5, "USD", 2)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Amount(True, "USD", 2)


def test_exact_arithmetic_across_decimals() -> None:
    cap = Amount.parse("2.50 USD")
    tiny = Amount.parse("0.001 USD")
    assert cap + tiny == Amount(2501, "USD", 3)
    assert str(cap - tiny) == "2.499 USD"
    assert tiny < cap and cap > tiny and cap >= cap and tiny <= tiny
    assert Amount(250, "USD", 2) == Amount(2500000, "USD", 6)
    assert hash(Amount(250, "USD", 2)) == hash(Amount(2500000, "USD", 6))


def test_mixing_currencies_is_an_error() -> None:
    with pytest.raises(MoneyError):
        Amount.parse("1 USD") + Amount.parse("1 EUR")
    with pytest.raises(MoneyError):
        _ = Amount.parse("1 USD") < Amount.parse("1 EUR")
    assert Amount.parse("1 USD") != Amount.parse("1 EUR")


def test_rescale_never_rounds() -> None:
    assert Amount(250, "USD", 2).rescale(6) == Amount(2500000, "USD", 6)
    assert Amount(2500000, "USD", 6).rescale(2).units == 250
    with pytest.raises(MoneyError):
        Amount(2500001, "USD", 6).rescale(2)


def test_str_and_repr() -> None:
    assert str(Amount(5, "USD", 2)) == "0.05 USD"
    assert str(Amount(-5, "USD", 2)) == "-0.05 USD"
    assert str(Amount(7, "SAT")) == "7 SAT"
    assert repr(Amount(250, "USD", 2)) == "Amount('2.50 USD')"


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=18))
def test_str_parse_round_trip(units: int, decimals: int) -> None:
    amount = Amount(units, "XTS", decimals)
    assert Amount.parse(str(amount)) == amount
