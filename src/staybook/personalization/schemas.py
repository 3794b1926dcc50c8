"""Request and response models of the personalization context.

Signals are decoded with msgspec (a batch of 500 in well under a millisecond),
not pydantic: the signals endpoint is the platform's highest-volume edge. The
response models of the read routes are pydantic, for the OpenAPI contract.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from pydantic import BaseModel, Field

PropertyId = uuid.UUID
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,40}$")]


class _Signal(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, frozen=True):
    at: datetime


class SearchSignal(_Signal, tag="search"):
    city: Text | None = None
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2}$")] | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    check_in: date | None = None
    check_out: date | None = None
    guests: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    amenities: Annotated[list[Code], msgspec.Meta(max_length=30)] = []
    property_type: Code | None = None
    price_max: Annotated[int, msgspec.Meta(ge=0, le=10**12)] | None = None
    query_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ViewSignal(_Signal, tag="view"):
    property_id: PropertyId
    price: Annotated[int, msgspec.Meta(ge=0, le=10**10)] | None = None
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] | None = None


class ClickSignal(_Signal, tag="click"):
    property_id: PropertyId
    position: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    query_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class WishlistSignal(_Signal, tag="wishlist"):
    property_id: PropertyId


class ShareSignal(_Signal, tag="share"):
    property_id: PropertyId
    channel: Code | None = None


class DwellSignal(_Signal, tag="dwell"):
    property_id: PropertyId
    ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]


ClientSignal = SearchSignal | ViewSignal | ClickSignal | WishlistSignal | ShareSignal | DwellSignal
CLIENT_KINDS = ("search", "view", "click", "wishlist", "share", "dwell")


class SignalBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope of `POST /signals`; its signals are decoded one by one so one bad signal
    costs only itself."""

    signals: list[msgspec.Raw]
    batch_id: uuid.UUID | None = None
    session: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    do_not_track: bool = False


# ---------------------------------------------------------------------------- responses


class RejectedSignal(BaseModel):
    index: int
    status: int = Field(description="The status the signal would have had alone (422: invalid, 404: unknown property)")
    field: str
    message: str


class SignalsAccepted(BaseModel):
    batch_id: uuid.UUID
    accepted: int
    rejected: list[RejectedSignal] = []
    do_not_track: bool = False


class ScoredKey(BaseModel):
    key: str
    score: float


class ProfileOut(BaseModel):
    """What recommendations know of the signed-in user, scores decayed to now (1.0 = one view just now)."""

    subject: str
    cities: list[ScoredKey]
    party_sizes: list[ScoredKey]
    amenities: list[ScoredKey]
    property_types: list[ScoredKey]
    properties: list[ScoredKey]
    recently_viewed: list[str]
    recent_searches: list[str]
    nightly_price_band: int | None = Field(description="Typical nightly price, minor units; null: not known yet")


class SessionOut(BaseModel):
    session: str = Field(description="A signed session id for anonymous signals")


class Recommendation(BaseModel):
    property_id: uuid.UUID
    name: str
    city: str
    country: str
    score: float
    reason: str = Field(description="personal, similar, popular, nearest, best_rated or cheapest")
    distance_km: float | None = None
    rating_tenths: int | None = None
    total: int | None = Field(None, description="Stay total in minor units, when dates were given")
    currency: str | None = None


class RecommendationsOut(BaseModel):
    strategy: str
    model_version: str | None
    items: list[Recommendation]


Require = Literal["distance", "rating", "price"]
