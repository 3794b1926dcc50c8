"""Shared request/response building blocks: strict base model, money, pages; operators' documents
(dead letters, health)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from babel.numbers import get_currency_precision, list_currencies
from pydantic import BaseModel, ConfigDict, Field, field_validator

_CURRENCIES = frozenset(list_currencies())


def refuse_nul_characters(value: Any) -> Any:
    """A NUL character in text is refused at the edge: PostgreSQL cannot store it in a text column,
    and no name, address or note legitimately holds one. Nested models check their own fields."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            refuse_nul_characters(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul_characters(key)
            refuse_nul_characters(item)
    return value


class Schema(BaseModel):
    """Request models refuse unknown fields and NUL characters; strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return refuse_nul_characters(value)


def _not_nullable(schema: dict[str, Any]) -> None:
    """`X | None = None` in Python means "may be left out"; the JSON schema must not say "may be null"."""
    for name, prop in schema.get("properties", {}).items():
        options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
        if "anyOf" in prop and len(options) == 1:
            rest = {key: value for key, value in prop.items() if key not in ("anyOf", "default")}
            schema["properties"][name] = {**options[0], **rest}
        elif "anyOf" in prop:
            prop["anyOf"] = options
            prop.pop("default", None)


def examples(*values: dict[str, Any]) -> ConfigDict:
    """`model_config = examples({...})`: request bodies the OpenAPI document shows (and Swagger UI
    fills in), taken from the demo data so they work against `staybook demo`."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


class PartialUpdate(Schema):
    """A PATCH body: only the fields sent change, and `null` is refused (documented as not nullable)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_not_nullable)


def validate_currency(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 3 or code not in _CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point: 2 for EUR, 0 for JPY, 3 for KWD."""
    return get_currency_precision(currency)


# The largest amount anywhere (a price, a stay's total, a payment), in minor units; columns are 64-bit.
MAX_AMOUNT = 10**13


class Money(Schema):
    """An amount in the currency's minor units (cents, yen); never a float."""

    amount: int = Field(..., ge=0, le=MAX_AMOUNT, description="Amount in minor units, e.g. 12345 = 123.45 EUR")
    currency: str = Field(..., min_length=3, max_length=3, examples=["EUR"])

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str) -> str:
        return validate_currency(value)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ConsumerDeadLettersOut(BaseModel):
    consumer: str
    subject: str | None = Field(description="What it subscribes to; null: it no longer runs (no replay)")
    waiting: int = Field(description="Dead letters not replayed yet")
    replayed: int


class DeadLetterOut(BaseModel):
    id: uuid.UUID
    consumer: str
    event_id: uuid.UUID
    subject: str
    event_type: str
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    envelope: dict = Field(description="The event as the consumer received it (ids, no contact data)")


class ReplayOut(BaseModel):
    dead_letter: DeadLetterOut
    handled: bool = Field(description="False: the consumer had handled the event already (its inbox has it)")


class CheckOut(BaseModel):
    name: str
    status: str = Field(description='"ok" or "failed: <error type>"')
    milliseconds: float


class HealthOut(BaseModel):
    status: str = Field(description='"ok" when every check passed, else "degraded"')
    checks: list[CheckOut]


class LiveOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str] = Field(description='Each dependency: "ok"')
