"""Currency conversion for price filters and display: a rates table, exact integer/Decimal arithmetic.

A stay total in a property's currency is converted into the guest's currency as an
exact fraction of integers (`Conversion`), so filtering, sorting and histograms of
thousands of totals stay integer numpy arithmetic and never touch floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import numpy as np

from staybook.kernel.errors import InvalidInput
from staybook.kernel.schemas import minor_unit_digits

# Units of each currency per 1 EUR (reference rates; operators override via settings.search.rates).
DEFAULT_RATES: dict[str, str] = {
    "EUR": "1",
    "USD": "1.0850",
    "GBP": "0.8550",
    "CHF": "0.9550",
    "JPY": "162.50",
    "CNY": "7.8500",
    "AUD": "1.6500",
    "CAD": "1.4800",
    "NZD": "1.8000",
    "SEK": "11.40",
    "NOK": "11.70",
    "DKK": "7.4600",
    "PLN": "4.3200",
    "CZK": "25.20",
    "HUF": "395.0",
    "TRY": "35.00",
    "INR": "90.50",
    "IDR": "17100",
    "THB": "38.50",
    "SGD": "1.4600",
    "HKD": "8.4700",
    "KRW": "1480",
    "MXN": "19.80",
    "BRL": "5.9000",
    "ARS": "1050",
    "ZAR": "19.90",
    "AED": "3.9800",
    "ILS": "4.0500",
    "EGP": "52.50",
    "MAD": "10.80",
    "KWD": "0.3330",
    "RUB": "100.0",
    "VND": "27500",
    "PHP": "63.00",
    "MYR": "4.8500",
    "CLP": "1030",
    "COP": "4500",
    "PEN": "4.0500",
}


@dataclass(frozen=True, slots=True)
class Conversion:
    """`target_minor = floor(source_minor * numerator / denominator)`."""

    numerator: int
    denominator: int

    def apply(self, amount: int) -> int:
        return amount * self.numerator // self.denominator

    def apply_many(self, amounts: np.ndarray) -> np.ndarray:
        """Vectorised `apply`; falls back to Python integers where int64 could overflow."""
        if amounts.size == 0:
            return amounts.astype(np.int64)
        if int(amounts.max()) * self.numerator < 2**62:
            return amounts.astype(np.int64) * self.numerator // self.denominator
        return np.array([int(a) * self.numerator // self.denominator for a in amounts.tolist()], dtype=object)


class CurrencyRates:
    """The rates table. Unknown currencies are refused as input errors."""

    def __init__(self, rates: dict[str, str] | None = None) -> None:
        self.rates = {code.upper(): Decimal(value) for code, value in (rates or DEFAULT_RATES).items()}
        self._digits = {code: minor_unit_digits(code) for code in self.rates}
        self._conversions: dict[tuple[str, str], Conversion] = {}

    def check(self, currency: str, field: str = "query.currency") -> str:
        code = currency.strip().upper()
        if code not in self.rates:
            raise InvalidInput(f"unknown or unsupported currency {currency[:10]!r}", field=field)
        return code

    def conversion(self, source: str, target: str) -> Conversion:
        key = (source, target)
        found = self._conversions.get(key)
        if found is None:
            if source not in self.rates:
                raise KeyError(source)
            ratio = (
                Fraction(self.rates[target])
                / Fraction(self.rates[source])
                * Fraction(10) ** (self._digits[target] - self._digits[source])
            )
            found = Conversion(ratio.numerator, ratio.denominator)
            self._conversions[key] = found
        return found

    def convert(self, amount: int, source: str, target: str) -> int:
        """Minor units of `source` to minor units of `target`, rounded down."""
        if source == target:
            return amount
        return self.conversion(source, target).apply(amount)
