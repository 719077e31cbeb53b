"""Money: Decimal amounts in an ISO 4217 currency, never float.

Currency codes and their minor units come from Babel's CLDR data (a maintained table rather
than one kept by hand). Every line of a bill is rounded on its own to the currency's minor unit,
half-even (banker's rounding: no upward drift over many lines); totals are sums of rounded lines.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

_CURRENCIES = frozenset(list_currencies())


class MoneyInvalid(ValueError):
    """A value that is not a decimal amount (a float, a boolean, text, NaN)."""


def currency_valid(code: object) -> bool:
    return isinstance(code, str) and len(code) == 3 and code.isupper() and code in _CURRENCIES


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of the currency: 0.01 EUR, 1 JPY, 0.001 KWD."""
    return Decimal(1).scaleb(-get_currency_precision(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded to the currency's minor unit, half-even."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN)


def decimal_of(value: object, *, places: int = 6) -> Decimal:
    """A finite Decimal from a decimal string, an int or a Decimal. Floats are refused: a JSON
    number like 0.1 has already lost its exact value, so money must travel as a string."""
    if isinstance(value, bool | float):
        raise MoneyInvalid('must be a decimal string such as "0.25", not a JSON number with a fraction')
    if isinstance(value, int | Decimal):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyInvalid(f"{value!r} is not a decimal number") from None
    else:
        raise MoneyInvalid("must be a decimal string")
    if not result.is_finite():
        raise MoneyInvalid("must be a finite decimal")
    if result.as_tuple().exponent < -places:
        raise MoneyInvalid(f"at most {places} decimal places")
    return result
