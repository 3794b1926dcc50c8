"""Response models of the search context (the OpenAPI contract; requests are query parameters)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from staybook.kernel.schemas import Money


class Location(BaseModel):
    lat: float
    lon: float


class RoomTypeSummary(BaseModel):
    room_type_id: uuid.UUID
    name: str
    max_guests: int


class SearchItem(BaseModel):
    property_id: uuid.UUID
    name: str
    city: str
    country: str
    location: Location
    distance_km: float | None = None
    rating: float | None = None
    thumbnail_url: str | None = None
    room_type: RoomTypeSummary
    total: Money  # in the property's currency
    total_in_currency: Money  # in the requested currency
    nightly_prices: list[Money]  # per room, property currency


class PriceBucket(BaseModel):
    min: int
    max: int
    count: int


class Facets(BaseModel):
    amenities: dict[str, int]
    price_histogram: list[PriceBucket]


class SearchResponse(BaseModel):
    items: list[SearchItem]
    next_cursor: str | None = None
    total: int
    currency: str
    facets: Facets


class Suggestion(BaseModel):
    kind: Literal["city", "property"]
    label: str
    city: str
    country: str
    property_id: uuid.UUID | None = None


class SuggestResponse(BaseModel):
    items: list[Suggestion]


class RebuildReport(BaseModel):
    properties: int
    room_types: int
    room_nights: int
    seconds: float
