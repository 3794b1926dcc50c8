"""Request and response models of the inventory context."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from staybook.inventory.events import NightSnapshot
from staybook.inventory.pricing import DateRangePrice, PricingRule, SeasonalRule, WeekdayRule
from staybook.kernel.schemas import Money, Schema, examples

MAX_CALENDAR_RANGE_DAYS = 1100
_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
Percent = Annotated[int, Field(ge=-100, le=1000)]


class WeekdayRuleIn(Schema):
    kind: Literal["weekday"]
    percent: Percent
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [4, 5], description="0 = Monday night ... 6 = Sunday night"
    )

    def rule(self) -> PricingRule:
        return WeekdayRule(percent=self.percent, weekdays=frozenset(self.weekdays))


class DateRangePriceIn(Schema):
    kind: Literal["date_range"]
    start: date
    end: date = Field(..., description="Exclusive")
    amount: int = Field(..., ge=0, le=10**11)

    @model_validator(mode="after")
    def _ordered(self) -> DateRangePriceIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def rule(self) -> PricingRule:
        return DateRangePrice(start=self.start, end=self.end, amount=self.amount)


class SeasonalRuleIn(Schema):
    kind: Literal["seasonal"]
    percent: Percent
    start: str = Field(..., examples=["06-15"], description="MM-DD, inclusive")
    end: str = Field(..., examples=["09-01"], description="MM-DD, exclusive; may wrap over New Year")

    @field_validator("start", "end")
    @classmethod
    def _month_day(cls, value: str) -> str:
        if not _MONTH_DAY.fullmatch(value):
            raise ValueError(f"{value!r} is not a MM-DD month and day")
        return value

    def rule(self) -> PricingRule:
        def parts(value: str) -> tuple[int, int]:
            month, day = value.split("-")
            return int(month), int(day)

        return SeasonalRule(percent=self.percent, start=parts(self.start), end=parts(self.end))


RuleIn = Annotated[WeekdayRuleIn | DateRangePriceIn | SeasonalRuleIn, Field(discriminator="kind")]


class CalendarUpdate(Schema):
    """Sets the given fields on every night in [from, to). With `rules`, each night's price is
    `price` (or the room type's base price) after the rules, applied in order."""

    model_config = examples(
        {"from": "2027-03-01", "to": "2027-04-01", "price": {"amount": 11000, "currency": "EUR"}, "min_stay": 2},
        {"from": "2027-12-23", "to": "2027-12-27", "closed": True},
    )

    from_: date = Field(..., alias="from")
    to: date = Field(..., description="Exclusive")
    price: Money | None = None
    units: int | None = Field(None, ge=0, le=10_000)
    closed: bool | None = None
    min_stay: int | None = Field(None, ge=1, le=365)
    closed_to_arrival: bool | None = None
    rules: list[RuleIn] | None = Field(None, max_length=50)

    @model_validator(mode="after")
    def _range(self) -> CalendarUpdate:
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        if (self.to - self.from_).days > MAX_CALENDAR_RANGE_DAYS:
            raise ValueError(f"A calendar update covers at most {MAX_CALENDAR_RANGE_DAYS} nights")
        return self


class Calendar(BaseModel):
    room_type_id: uuid.UUID
    currency: str
    nights: list[NightSnapshot]


class IcalImportResult(BaseModel):
    room_type_id: uuid.UUID
    events: int
    closed_nights: int
    skipped_nights: int


class CalendarFeedOut(BaseModel):
    """The signed iCal export URL to paste into a channel manager (Airbnb, Booking.com)."""

    room_type_id: uuid.UUID
    url: str = Field(description="Fetches calendar.ics without a bearer token; keep it secret, rotate it if leaked")
    version: int


class NightlyPriceOut(BaseModel):
    night: date
    price: Money


class RoomTypeOffer(BaseModel):
    room_type_id: uuid.UUID
    name: str
    max_guests: int
    available_units: int
    nightly_prices: list[NightlyPriceOut]
    total: Money
    bookable: bool
    reasons: list[str] = Field(description="Why it is not bookable for this stay (empty when it is)")


class Availability(BaseModel):
    """The answer of GET /properties/{id}/availability (built as JSON bytes on the hot path, documented here)."""

    property_id: uuid.UUID
    timezone: str
    check_in: date
    check_out: date
    guests: int
    room_types: list[RoomTypeOffer]
