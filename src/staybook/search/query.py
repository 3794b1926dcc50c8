"""What a guest asks for, validated once: place, stay, party, filters, sort and page.

Pure: no I/O, no framework. The API builds a `SearchQuery` from query parameters;
both index backends answer it; the cursor codec makes pages tamper-proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import unicodedata
import uuid
from dataclasses import dataclass, field, fields
from datetime import date

import numpy as np
import orjson

from staybook.kernel.errors import InvalidInput

SORTS = ("relevance", "price", "distance", "rating")
MAX_LIMIT = 100
MAX_RADIUS_KM = 500.0
MAX_ROOMS = 9
MAX_GUESTS = 30
MAX_TEXT_LENGTH = 200
MAX_AMENITIES = 20
EARTH_RADIUS_KM = 6371.0088

# The amenity vocabulary guests can filter on. The catalog owns amenities; until it
# publishes its vocabulary this list is the contract (docs/adr/0010-search-read-model.md).
AMENITIES = (
    "wifi",
    "parking",
    "pool",
    "gym",
    "spa",
    "restaurant",
    "bar",
    "breakfast",
    "air_conditioning",
    "heating",
    "kitchen",
    "washer",
    "pets_allowed",
    "wheelchair_accessible",
    "ev_charger",
    "airport_shuttle",
    "beach_access",
    "family_rooms",
    "non_smoking",
    "room_service",
    "front_desk_24h",
    "balcony",
    "sea_view",
    "garden",
    "hot_tub",
    "sauna",
    "workspace",
    "crib",
)
AMENITY_SET = frozenset(AMENITIES)
PROPERTY_TYPES = ("hotel", "apartment", "hostel", "guesthouse", "villa", "resort", "cabin", "bnb", "house", "room")


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """South-west and north-east corners; `west > east` means the box crosses the antimeridian."""

    south: float
    west: float
    north: float
    east: float

    def contains(self, lat: float, lon: float) -> bool:
        if not self.south <= lat <= self.north:
            return False
        if self.west <= self.east:
            return self.west <= lon <= self.east
        return lon >= self.west or lon <= self.east


@dataclass(frozen=True, slots=True)
class SearchQuery:
    check_in: date
    check_out: date
    guests: int = 2
    rooms: int = 1
    circle: Circle | None = None
    bbox: BoundingBox | None = None
    city: str | None = None  # normalised (see `fold`)
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    text: str | None = None
    currency: str = "EUR"
    price_min: int | None = None  # stay total in minor units of `currency`
    price_max: int | None = None
    amenities: tuple[str, ...] = ()
    property_type: str | None = None
    min_rating: int | None = None  # tenths of a star
    sort: str = "relevance"
    limit: int = 20
    # Whose profile orders `sort=relevance` (`u:<user id hex>`); part of the fingerprint, so a
    # personal order is cached per user and a cursor stays with its user.
    audience: str | None = None
    after: PageMark | None = field(default=None, compare=False)

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days

    def fingerprint(self) -> str:
        """A stable key of everything but the page position: the cache key and the cursor's binding."""
        # The same document `dataclasses.asdict` gives (cursors stay valid), built without its deep copy.
        plain = {name: getattr(self, name) for name in _FINGERPRINTED}
        if self.circle is not None:
            plain["circle"] = {"lat": self.circle.lat, "lon": self.circle.lon, "radius_km": self.circle.radius_km}
        if self.bbox is not None:
            box = self.bbox
            plain["bbox"] = {"south": box.south, "west": box.west, "north": box.north, "east": box.east}
        plain["amenities"] = list(self.amenities)
        if self.audience is None:
            del plain["audience"]  # anonymous searches keep the fingerprints (and cursors) they had
        return hashlib.sha256(orjson.dumps(plain, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


_FINGERPRINTED = tuple(f.name for f in fields(SearchQuery) if f.name != "after")


@dataclass(frozen=True, slots=True)
class PageMark:
    """Where the previous page ended: its last sort key and property id (keyset pagination)."""

    key: int
    property_id: uuid.UUID


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for cities, names and text search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def tokens(text: str) -> list[str]:
    folded = fold(text)
    return [t for t in "".join(c if c.isalnum() else " " for c in folded).split() if t]


def half_central_angle(lat1, lon1, lat2, lon2):
    """The haversine formula, written once: half the angle (radians) between two points seen from
    the centre of the earth; of floats, or of numpy arrays of points (broadcast). Exact across the
    antimeridian and at the poles (no planar shortcuts)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.subtract(lon2, lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.arcsin(np.minimum(1.0, np.sqrt(a)))


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (a float for two points, an array for arrays of points)."""
    return 2 * EARTH_RADIUS_KM * half_central_angle(lat1, lon1, lat2, lon2)


def circle_bounds(circle: Circle) -> list[BoundingBox]:
    """Boxes that together cover the circle; split at the antimeridian, full longitude near a pole."""
    dlat = math.degrees(circle.radius_km / EARTH_RADIUS_KM)
    south, north = circle.lat - dlat, circle.lat + dlat
    if north >= 90 or south <= -90:
        return [BoundingBox(max(south, -90.0), -180.0, min(north, 90.0), 180.0)]
    # The widest longitude span of the circle is at the latitude nearest a pole.
    widest = max(abs(south), abs(north))
    dlon = math.degrees(circle.radius_km / (EARTH_RADIUS_KM * math.cos(math.radians(widest))))
    if dlon >= 180:
        return [BoundingBox(south, -180.0, north, 180.0)]
    west, east = circle.lon - dlon, circle.lon + dlon
    if west < -180:
        return [BoundingBox(south, west + 360, north, 180.0), BoundingBox(south, -180.0, north, east)]
    if east > 180:
        return [BoundingBox(south, west, north, 180.0), BoundingBox(south, -180.0, north, east - 360)]
    return [BoundingBox(south, west, north, east)]


class CursorCodec:
    """Opaque page cursors: the page mark and the query's fingerprint, signed with HMAC-SHA256.

    A cursor only continues the query it came from; an edited or foreign one is refused.
    """

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"staybook.search.cursor|" + secret).digest()

    def encode(self, query: SearchQuery, mark: PageMark, fingerprint: str | None = None) -> str:
        """`fingerprint`: the query's, when the caller has it already."""
        body = orjson.dumps([fingerprint or query.fingerprint(), mark.key, mark.property_id.hex])
        tag = hmac.digest(self._key, body, "sha256")[:16]  # the one-shot C path of hmac.new(...).digest()
        return base64.urlsafe_b64encode(body + tag).decode().rstrip("=")

    def decode(self, query: SearchQuery, cursor: str, fingerprint: str | None = None) -> PageMark:
        invalid = InvalidInput("cursor is invalid or belongs to another query", field="query.cursor")
        if len(cursor) > 300:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise invalid from None
        body, tag = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(tag, hmac.digest(self._key, body, "sha256")[:16]):
            raise invalid
        stated, key, property_hex = orjson.loads(body)
        if stated != (fingerprint or query.fingerprint()):
            raise invalid
        return PageMark(int(key), uuid.UUID(hex=property_hex))
