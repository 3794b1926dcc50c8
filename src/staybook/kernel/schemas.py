"""Shared request/response building blocks: strict base model, money, pages."""

from __future__ import annotations

from typing import Generic, TypeVar

from babel.numbers import get_currency_precision, list_currencies
from pydantic import BaseModel, ConfigDict, Field, field_validator

_CURRENCIES = frozenset(list_currencies())


class Schema(BaseModel):
    """Request models refuse unknown fields; strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def validate_currency(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 3 or code not in _CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point: 2 for EUR, 0 for JPY, 3 for KWD."""
    return get_currency_precision(currency)


class Money(Schema):
    """An amount in the currency's minor units (cents, yen); never a float."""

    amount: int = Field(..., ge=0, le=10**13, description="Amount in minor units, e.g. 12345 = 123.45 EUR")
    currency: str = Field(..., min_length=3, max_length=3, examples=["EUR"])

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str) -> str:
        return validate_currency(value)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
