"""The web forms: what a page's form posts, validated once, then handed to another context's
request model. Field names are the form's; unknown fields (the CSRF token) are ignored here."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.datastructures import FormData

from staybook.inventory.schemas import MAX_CALENDAR_RANGE_DAYS
from staybook.kernel.errors import InvalidInput
from staybook.kernel.schemas import minor_unit_digits, refuse_nul_characters

MAX_PRICE_MINOR = 10**11


class Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return refuse_nul_characters(value)


F = TypeVar("F", bound=Form)


def parse_form(model: type[F], form: FormData, *, lists: tuple[str, ...] = ()) -> F:
    """The form as `model`; a refused field becomes InvalidInput naming the form field."""
    raw: dict[str, object] = {key: value for key, value in form.items() if isinstance(value, str) and value != ""}
    for name in lists:
        raw[name] = [value for value in form.getlist(name) if isinstance(value, str) and value]
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        errors = [
            {"field": ".".join(str(part) for part in e["loc"]) or "form", "message": e["msg"]}
            for e in error.errors(include_url=False, include_context=False)
        ]
        raise InvalidInput("Some fields are not valid.", errors=errors) from None


def to_minor_units(text: str, currency: str, field: str) -> int:
    """'120.50' (or '120,50') in `currency` -> 12050; refuses more decimals than the currency has."""
    digits = minor_unit_digits(currency)
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise InvalidInput(f"{text[:20]!r} is not an amount", field=field) from None
    minor = value.scaleb(digits)
    if not value.is_finite() or minor != minor.to_integral_value() or minor < 0 or minor > MAX_PRICE_MINOR:
        raise InvalidInput(f"an amount in {currency} with at most {digits} decimals", field=field)
    return int(minor)


class LoginForm(Form):
    email: str = Field(..., min_length=1, max_length=254)
    password: str = Field(..., min_length=1, max_length=1024)
    next: str = Field("/", max_length=500)


class RegisterForm(Form):
    email: str = Field(..., min_length=3, max_length=254)
    password: str = Field(..., min_length=1, max_length=1024)
    name: str = Field(..., min_length=1, max_length=200)
    role: str = Field("guest", pattern="^(guest|host)$")


class CodeForm(Form):
    code: str = Field(..., min_length=6, max_length=20)


class CheckoutForm(Form):
    room_type_id: uuid.UUID
    check_in: date
    check_out: date
    guests: int = Field(..., ge=1, le=50)
    name: str = Field(..., min_length=1, max_length=200)
    email: str = Field(..., max_length=254)
    phone: str | None = Field(None, max_length=32)
    idempotency_key: str = Field(..., min_length=8, max_length=100)


class PaymentForm(Form):
    payment_method: str = Field(..., min_length=3, max_length=100)
    idempotency_key: str = Field(..., min_length=8, max_length=100)


class CancelForm(Form):
    reason: str | None = Field(None, max_length=500)
    idempotency_key: str = Field(..., min_length=8, max_length=100)


class ProfileForm(Form):
    name: str = Field(..., min_length=1, max_length=200)
    locale: str = Field("en", max_length=35)
    timezone: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=32)


class PasswordForm(Form):
    current_password: str = Field(..., min_length=1, max_length=1024)
    new_password: str = Field(..., min_length=1, max_length=1024)


class PropertyForm(Form):
    name: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    property_type: str = "hotel"
    address: str = Field(..., min_length=1, max_length=300)
    city: str = Field(..., min_length=1, max_length=120)
    country: str = Field(..., min_length=2, max_length=2)
    latitude: float = Field(..., ge=-90, le=90)
    longitude: float = Field(..., ge=-180, le=180)
    timezone: str = Field(..., max_length=64)
    currency: str = Field(..., min_length=3, max_length=3)
    amenities: list[str] = Field(default_factory=list, max_length=40)
    check_in_time: str = "15:00"
    check_out_time: str = "11:00"
    cancellation_policy: str = "moderate"


class RoomTypeForm(Form):
    name: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    max_guests: int = Field(..., ge=1, le=50)
    beds: int = Field(1, ge=0, le=50)
    units: int = Field(..., ge=0, le=10_000)
    base_price: str = Field(..., max_length=20)


class CalendarForm(Form):
    start: date
    end: date = Field(..., description="Last night, inclusive (as the grid selects it)")
    price: str | None = Field(None, max_length=20)
    units: int | None = Field(None, ge=0, le=10_000)
    availability: str = Field("keep", pattern="^(keep|open|closed)$")
    min_stay: int | None = Field(None, ge=1, le=365)
    arrival: str = Field("keep", pattern="^(keep|allowed|closed)$")
    weekend_percent: int | None = Field(None, ge=-100, le=1000)
    season_percent: int | None = Field(None, ge=-100, le=1000)
    season_start: str | None = Field(None, pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
    season_end: str | None = Field(None, pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")

    @model_validator(mode="after")
    def _range(self) -> CalendarForm:
        # Checked here, before end + 1 day is computed (9999-12-31 would overflow) or any night touched.
        if self.end < self.start:
            raise ValueError("The last night must not be before the first")
        if (self.end - self.start).days >= MAX_CALENDAR_RANGE_DAYS:
            raise ValueError(f"A calendar change covers at most {MAX_CALENDAR_RANGE_DAYS} nights")
        if self.end == date.max:
            raise ValueError("The last night is beyond the calendar")
        return self


class RoleForm(Form):
    role: str = Field(..., pattern="^(guest|host|admin)$")


class PreferencesForm(Form):
    enabled: list[str] = Field(default_factory=list, max_length=100)
