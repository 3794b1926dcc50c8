"""The search read model's vocabulary: what goes in (records), what comes out (pages), and the seams.

`SearchIndex` is the protocol both backends implement (`memory.MemoryIndex`,
`typesense.TypesenseIndex`); `Ranker` is where personalisation plugs into
`sort=relevance` (an `AudienceRanker` orders a signed-in user's results by their
profile), and `SearchObserver`s hear of every search served.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np

from staybook.search.query import SearchQuery


@dataclass(frozen=True, slots=True)
class PropertyRecord:
    property_id: uuid.UUID
    name: str
    city: str
    country: str
    latitude: float
    longitude: float
    currency: str
    description: str = ""
    amenities: tuple[str, ...] = ()
    property_type: str = "hotel"
    rating_tenths: int | None = None
    thumbnail_url: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class RoomTypeRecord:
    room_type_id: uuid.UUID
    property_id: uuid.UUID
    name: str
    max_guests: int
    active: bool = True


@dataclass(frozen=True, slots=True)
class NightState:
    """One room type on one night, as inventory.changed and the room_nights table describe it."""

    night: date
    available: int
    price: int
    closed: bool = False
    closed_to_arrival: bool = False
    min_stay: int = 1


@dataclass(frozen=True, slots=True)
class Matches:
    """Every property that answers a query (before paging), as columns a ranker can score."""

    totals: np.ndarray  # int64 stay total in the requested currency, minor units
    ratings: np.ndarray  # int16 tenths, -1 when unrated
    distances_m: np.ndarray | None  # int64 metres from the circle's centre, for circle queries
    # The matches' property ids as the two uint64 halves of the UUID (for rankers that know items).
    id_high: np.ndarray | None = None
    id_low: np.ndarray | None = None


class Ranker(Protocol):
    """Orders matches for `sort=relevance`: an int64 key per match, smallest first.

    Keys must be deterministic for one query and index state (cursor stability).
    """

    def keys(self, query: SearchQuery, matches: Matches) -> np.ndarray: ...


class AudienceRanker(Ranker, Protocol):
    """A ranker that can order results for one audience (a signed-in user: `u:<user id hex>`)."""

    async def for_audience(self, audience: str) -> Ranker: ...


# Called with the raw query string of every search served, cached or not. It must only take
# note (an append): it runs on the search hot path.
SearchObserver = Callable[[bytes], None]


class RatingRanker:
    """The default relevance: best rated first, cheaper first among equals, unrated last."""

    def keys(self, query: SearchQuery, matches: Matches) -> np.ndarray:
        return rating_keys(matches)


def rating_keys(matches: Matches) -> np.ndarray:
    capped = np.minimum(matches.totals.astype(np.int64), 2**40 - 1)
    return -(matches.ratings.astype(np.int64) + 1) * 2**40 + capped


@dataclass(slots=True)
class SearchHit:
    property_id: uuid.UUID
    name: str
    city: str
    country: str
    latitude: float
    longitude: float
    distance_km: float | None
    rating_tenths: int | None
    thumbnail_url: str | None
    room_type_id: uuid.UUID
    room_type_name: str
    max_guests: int
    currency: str  # the property's
    total: int  # stay total in the property's currency
    nightly_prices: list[int]  # per unit, property currency
    total_in_currency: int  # stay total in the requested currency
    sort_key: int


@dataclass(slots=True)
class SearchPage:
    hits: list[SearchHit]
    total: int
    amenity_counts: dict[str, int]
    price_histogram: list[dict[str, int]]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # "city" or "property"
    label: str
    city: str
    country: str
    property_id: uuid.UUID | None = None


class SearchIndex(Protocol):
    """A read model that answers searches; fed by catalog and inventory events."""

    backend: str

    def property_count(self) -> int: ...

    async def search(self, query: SearchQuery, ranker: Ranker) -> SearchPage: ...

    async def suggest(self, prefix: str, limit: int) -> list[Suggestion]: ...

    async def put_properties(self, records: Iterable[PropertyRecord]) -> None: ...

    async def remove_property(self, property_id: uuid.UUID) -> None: ...

    async def put_room_types(self, records: Iterable[RoomTypeRecord]) -> None: ...

    async def remove_room_type(self, room_type_id: uuid.UUID) -> None: ...

    async def put_nights(self, room_type_id: uuid.UUID, property_id: uuid.UUID, nights: Iterable[NightState]) -> None:
        """Idempotent: a night's state replaces what the index had for it."""

    async def publish(self, *, rebuild: bool) -> None:
        """Makes a freshly loaded index servable (Typesense: import documents, switch the alias)."""

    async def check_ready(self) -> None:
        """Raises while the index cannot answer every document it should."""

    async def close(self) -> None: ...
