"""The in-process search index: numpy columns, a coarse geo grid, per-night availability matrices.

Layout (one row per property "slot", one row per room-type slot, one column per day), with no
Python object per property or room type once the index is compacted:

- property columns: latitude, longitude, rating, type, amenity bitset (uint64), currency, city
  and country codes, live flag, and the property id split in two uint64s (the id itself and a
  stable tie-break for sorting); names in one UTF-8 buffer with offsets;
- ids -> slots: a sorted 16-byte key array (`IdMap`), plus a dict for ids seen since the last
  compaction;
- two geo grids (0.1 degree, ~11 km, for city-sized places; 1 degree for wide boxes):
  cell -> array of property slots, so a city radius reads a few cells, never the whole table;
- text words and city keys -> sorted slot arrays in one CSR block (`Postings`), plus sets for
  keys touched since the last compaction;
- `units[room_type, day]` (uint8): free units clamped to 127 (a closed night is 0), with
  the top bit set when the check-in night has a restriction (closed to arrival, min stay > 1)
  kept in a small dict — those are rare, so the matrix stays one byte per room-night;
- `price_codes[room_type, day]` (uint16): an index into a palette of distinct prices. Real
  calendars reuse few distinct amounts, so a 4-byte price costs 2 bytes; the matrix widens
  to uint32 if the palette ever outgrows 65,535 amounts.

At 1M properties x 2.5 room types x 367 days the matrices are ~2.6 GB (3 bytes per room-night)
and everything else ~0.2 GB; `memory_report()` lists the bytes per structure.
"""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import islice

import numpy as np

from staybook.search.index import (
    Matches,
    NightState,
    PropertyRecord,
    Ranker,
    RoomTypeRecord,
    SearchHit,
    SearchPage,
    Suggestion,
    rating_keys,
)
from staybook.search.query import (
    AMENITIES,
    EARTH_RADIUS_KM,
    BoundingBox,
    Circle,
    SearchQuery,
    circle_bounds,
    fold,
    tokens,
)
from staybook.search.rates import CurrencyRates

FREE_MASK = np.uint8(0x7F)
RESTRICTED = np.uint8(0x80)
AMENITY_BITS = {name: np.uint64(1 << bit) for bit, name in enumerate(AMENITIES)}
HISTOGRAM_BUCKETS = 10
_AMENITY_BYTES = -(-len(AMENITIES) // 8)  # amenity bits live in the first bytes of the (little-endian) bitset
if np.little_endian is False:  # pragma: no cover (the byte view below assumes little-endian words)
    raise ImportError("staybook.search.memory needs a little-endian machine")
_BYTE_BINS = (np.arange(_AMENITY_BYTES, dtype=np.int64) * 256)[None, :]
_BITS_OF_BYTE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)
# A stay total that could not be converted into the asked currency (no rate for the property's own).
UNPRICED = -1
_EMPTY = np.zeros(0, dtype=np.int64)
_NO_STAY = np.iinfo(np.int64).max
_LOW = 2**64 - 1


class GeoGrid:
    """Property slots bucketed by latitude/longitude cell, so a place query reads a few cells."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees
        self.rows, self.columns = round(180 / degrees), round(360 / degrees)
        self.cells: dict[int, np.ndarray] = {}

    def key(self, lat, lon):
        row = np.clip(((np.asarray(lat) + 90.0) / self.degrees).astype(np.int64), 0, self.rows - 1)
        column = np.clip(((np.asarray(lon) + 180.0) / self.degrees).astype(np.int64), 0, self.columns - 1)
        return row * self.columns + column

    def move(self, slot: int, old: int, new: int) -> None:
        if old >= 0:
            members = self.cells[old]
            self.cells[old] = members[members != slot]
        self.cells[new] = np.append(self.cells.get(new, _EMPTY), slot)

    def fill(self, keys: np.ndarray) -> None:
        """Buckets slots 0..len(keys)-1 in one sort (bulk loads)."""
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], order.size]
        order = order.astype(np.int64)
        for key, start, end in zip(sorted_keys[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            self.cells[key] = order[start:end]

    def _row(self, lat: float) -> int:
        # `key` for one point in plain floats (numpy calls on two-element arrays cost more than the lookups).
        return min(max(int((lat + 90.0) / self.degrees), 0), self.rows - 1)

    def _column(self, lon: float) -> int:
        return min(max(int((lon + 180.0) / self.degrees), 0), self.columns - 1)

    def slots_in(self, south: float, west: float, north: float, east: float) -> list[np.ndarray]:
        """Slots in every cell touching the box (west <= east); a superset of the box's slots."""
        row0, row1 = self._row(south), self._row(north)
        column0, column1 = self._column(west), self._column(east)
        found = []
        for row in range(row0, row1 + 1):
            base = row * self.columns
            for column in range(column0, column1 + 1):
                members = self.cells.get(base + column)
                if members is not None and members.size:
                    found.append(members)
        return found

    def nbytes(self) -> int:
        return sum(cell.nbytes for cell in self.cells.values())


def _keys_of(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """128-bit ids as 16-byte big-endian strings: numpy sorts and searches them in id order."""
    pairs = np.empty((high.size, 2), dtype=">u8")
    pairs[:, 0], pairs[:, 1] = high, low
    return pairs.view("S16").ravel()


def _split(ids: Sequence[uuid.UUID]) -> tuple[np.ndarray, np.ndarray]:
    numbers = [i.int for i in ids]
    high = np.fromiter((n >> 64 for n in numbers), dtype=np.uint64, count=len(numbers))
    low = np.fromiter((n & _LOW for n in numbers), dtype=np.uint64, count=len(numbers))
    return high, low


class IdMap:
    """uuid -> slot: a sorted array of 16-byte keys (20 bytes an id), and a dict for ids added since
    the last compaction."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype="S16")
        self._slots = np.zeros(0, dtype=np.int32)
        self._recent: dict[uuid.UUID, int] = {}

    def get(self, key: uuid.UUID) -> int | None:
        slot = self._recent.get(key)
        if slot is not None or not self._keys.size:
            return slot
        found = self.many([key])
        return None if found[0] < 0 else int(found[0])

    def add(self, key: uuid.UUID, slot: int) -> None:
        self._recent[key] = slot

    def many(self, keys: Sequence[uuid.UUID]) -> np.ndarray:
        """Slots of these ids, -1 for unknown ones (one searchsorted for the lot)."""
        found = np.full(len(keys), -1, dtype=np.int64)
        if self._keys.size and keys:
            probe = _keys_of(*_split(keys))
            at = np.minimum(np.searchsorted(self._keys, probe), self._keys.size - 1)
            hit = self._keys[at] == probe
            found[hit] = self._slots[at[hit]]
        if self._recent:
            for n, key in enumerate(keys):
                slot = self._recent.get(key)
                if slot is not None:
                    found[n] = slot
        return found

    def compact(self, high: np.ndarray, low: np.ndarray) -> None:
        """Rebuilds the sorted keys from the id columns (slot i has id (high[i], low[i]))."""
        keys = _keys_of(high, low)
        order = np.argsort(keys, kind="stable")
        self._keys, self._slots = keys[order], order.astype(np.int32)
        self._recent = {}

    def nbytes(self) -> int:
        return self._keys.nbytes + self._slots.nbytes + len(self._recent) * 200


class TextColumn:
    """Strings of one column in one UTF-8 buffer with per-slot offsets (no str object per slot)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.spans = np.zeros((0, 2), dtype=np.int64)

    def reserve(self, rows: int) -> None:
        if rows > self.spans.shape[0]:
            self.spans = _grow(self.spans, max(rows, self.spans.shape[0] * 2), 0)

    def set(self, slot: int, value: str) -> None:
        raw = value.encode()
        start = len(self.data)
        self.data += raw
        self.spans[slot] = (start, start + len(raw))

    def fill(self, values: list[str]) -> None:
        encoded = [v.encode() for v in values]
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self.data = bytearray(b"".join(encoded))
        self.spans = np.empty((len(values), 2), dtype=np.int64)
        self.spans[:, 1] = ends
        self.spans[:, 0] = ends - np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))

    def at(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def __getitem__(self, slot: int) -> str:
        start, end = self.spans[slot].tolist()
        return self.data[start:end].decode()

    def nbytes(self) -> int:
        return len(self.data) + self.spans.nbytes


class Codes:
    """A small vocabulary of strings (cities, countries, currencies, room type names) as int codes."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        return code


class Postings:
    """key -> sorted property slots: a compact CSR block (keys, offsets, members) built in bulk,
    plus sets for the keys touched since. Slots marked stale have left the CSR block: their
    current keys are in the sets."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.offsets = np.zeros(1, dtype=np.int64)
        self.members = np.zeros(0, dtype=np.int32)
        self._rows: list[str] = []
        self.recent: dict[str, set[int]] = {}
        self._merged: dict[str, np.ndarray] = {}

    def add(self, key: str, slot: int) -> None:
        self.recent.setdefault(key, set()).add(slot)
        self._merged.pop(key, None)

    def discard(self, key: str, slot: int) -> None:
        members = self.recent.get(key)
        if members is not None:
            members.discard(slot)
            self._merged.pop(key, None)

    def forget_merged(self) -> None:
        self._merged.clear()

    def __contains__(self, key: str) -> bool:
        return key in self.vocabulary or bool(self.recent.get(key))

    def keys(self) -> Iterable[str]:
        yield from self.vocabulary
        yield from (key for key in self.recent if key not in self.vocabulary)

    def get(self, key: str, stale: np.ndarray | None) -> np.ndarray:
        row = self.vocabulary.get(key)
        base = self.members[self.offsets[row] : self.offsets[row + 1]] if row is not None else _EMPTY
        extra = self.recent.get(key)
        if not extra and stale is None:
            return base
        merged = self._merged.get(key)
        if merged is None:
            if stale is not None and base.size:
                base = base[~stale[base]]
            if extra:
                base = np.union1d(base, np.fromiter(extra, dtype=np.int64, count=len(extra)))
            merged = self._merged[key] = base
        return merged

    def build(self, keys: list[str], key_ids: np.ndarray, members: np.ndarray) -> None:
        """Replaces everything with the pairs (keys[key_ids[i]], members[i]); duplicates allowed."""
        pairs = np.unique((key_ids.astype(np.int64) << 32) | members.astype(np.int64))
        used = pairs >> 32
        self.members = (pairs & 0xFFFFFFFF).astype(np.int32)
        counts = np.bincount(used, minlength=len(keys))
        self.offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.vocabulary = {key: n for n, key in enumerate(keys) if counts[n]}
        self._rows = keys
        self.recent, self._merged = {}, {}

    def compact(self, stale: np.ndarray | None) -> None:
        """Folds the sets into the CSR block (stale slots' old entries dropped)."""
        if not self.recent and stale is None:
            return
        keys = list(self._rows)
        key_ids = [np.repeat(np.arange(len(keys), dtype=np.int64), np.diff(self.offsets))]
        members = [self.members.astype(np.int64)]
        if stale is not None and members[0].size:
            keep = ~stale[members[0]]
            key_ids[0], members[0] = key_ids[0][keep], members[0][keep]
        index = {key: n for n, key in enumerate(keys)}
        for key, slots in self.recent.items():
            if slots:
                n = index.setdefault(key, len(keys))
                if n == len(keys):
                    keys.append(key)
                key_ids.append(np.full(len(slots), n, dtype=np.int64))
                members.append(np.fromiter(slots, dtype=np.int64, count=len(slots)))
        self.build(keys, np.concatenate(key_ids), np.concatenate(members))

    def nbytes(self) -> int:
        recent = sum(len(s) for s in self.recent.values()) * 60
        return self.members.nbytes + self.offsets.nbytes + len(self.vocabulary) * 100 + recent


@dataclass(frozen=True, slots=True)
class PropertyColumns:
    """Properties as columns, for bulk loads: row i becomes slot i. Codes index the lists."""

    id_high: np.ndarray  # uint64
    id_low: np.ndarray  # uint64
    names: list[str]
    city: np.ndarray  # int, into city_names
    city_names: list[str]
    city_countries: list[str]  # ISO country of each city name entry
    latitude: np.ndarray
    longitude: np.ndarray
    currency: np.ndarray  # int, into currencies
    currencies: list[str]
    amenity_bits: np.ndarray  # uint64, bit n = AMENITIES[n]
    property_type: np.ndarray  # int, into property_types
    property_types: list[str]
    rating_tenths: np.ndarray  # int, -1 = unrated


@dataclass(frozen=True, slots=True)
class RoomTypeColumns:
    """Room types as columns: row i becomes room type slot i; owner is a property row."""

    id_high: np.ndarray
    id_low: np.ndarray
    owner: np.ndarray  # int
    max_guests: np.ndarray  # int
    name: np.ndarray  # int, into names
    names: list[str]


def haversine_m(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Vectorised great-circle distance in whole metres (int64)."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.rint(2 * EARTH_RADIUS_KM * 1000 * np.arcsin(np.minimum(1.0, np.sqrt(a)))).astype(np.int64)


def _grow(array: np.ndarray, rows: int, fill) -> np.ndarray:
    grown = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


class MemoryIndex:
    """The embedded default backend; also the availability read model behind the Typesense backend.

    Writes (events, the per-record load) go to small overlays; `compact()` (called by `publish`
    after a load) folds them into the compact arrays. Reads see both.
    """

    backend = "memory"

    def __init__(self, origin: date, horizon_days: int, rates: CurrencyRates, capacity: int = 1024) -> None:
        self.origin = origin
        self.horizon_days = horizon_days
        self.rates = rates
        self._currencies = Codes()
        self._city_names = Codes()  # as written by the catalog
        self._countries = Codes()
        self._room_names = Codes()
        self._types: dict[str, int] = {}
        # Properties.
        self._count = 0
        self._ids = IdMap()
        self._names = TextColumn()
        self._names.reserve(capacity)
        self._thumbnails: dict[int, str] = {}
        self._lat = np.zeros(capacity, dtype=np.float64)
        self._lon = np.zeros(capacity, dtype=np.float64)
        self._rating = np.full(capacity, -1, dtype=np.int16)
        self._type = np.zeros(capacity, dtype=np.int16)
        self._amenities = np.zeros(capacity, dtype=np.uint64)
        self._currency = np.zeros(capacity, dtype=np.int16)
        self._city = np.zeros(capacity, dtype=np.int32)
        self._country = np.zeros(capacity, dtype=np.int16)
        self._live = np.zeros(capacity, dtype=bool)
        self._recorded = np.zeros(capacity, dtype=bool)  # False: a placeholder for early inventory
        self._stale = np.zeros(capacity, dtype=bool)  # text changed since the last compaction
        self._stale_count = 0
        self._compacted = 0  # slots below this are in the compact text structures
        self._id_high = np.zeros(capacity, dtype=np.uint64)
        self._id_low = np.zeros(capacity, dtype=np.uint64)
        self._cells = np.full((capacity, 2), -1, dtype=np.int64)  # key in the fine and the coarse grid
        self._room_types_of = np.full((capacity, 4), -1, dtype=np.int32)
        # Fine cells (~11 km) for city-sized places; coarse ones (~111 km) keep wide boxes to few lookups.
        self._grids = (GeoGrid(0.1), GeoGrid(1.0))
        self._by_city = Postings()  # "country|city" and "|city", folded
        self._words = Postings()
        # Suggestions: compact part (slots in folded-name order, with the name's span at that time),
        # then names written since, and one entry per city.
        self._suggest_slots = np.zeros(0, dtype=np.int32)
        self._suggest_spans = np.zeros((0, 2), dtype=np.int64)
        self._recent_suggestions: list[tuple[str, int]] = []
        self._city_suggestions: dict[str, int] = {}
        self._suggestions_sorted: list[tuple[str, str, int]] | None = None
        # Room types and their nights.
        self._room_count = 0
        self._room_ids = IdMap()
        self._rt_high = np.zeros(capacity, dtype=np.uint64)
        self._rt_low = np.zeros(capacity, dtype=np.uint64)
        self._room_name = np.zeros(capacity, dtype=np.int32)
        self._owner = np.zeros(capacity, dtype=np.int32)
        self._max_guests = np.zeros(capacity, dtype=np.int16)
        self._room_type_live = np.zeros(capacity, dtype=bool)
        self.units = np.zeros((capacity, horizon_days), dtype=np.uint8)
        self.price_codes = np.zeros((capacity, horizon_days), dtype=np.uint16)
        self._palette = np.zeros(1, dtype=np.int64)  # code 0 = no price (night not on sale)
        self._palette_codes: dict[int, int] = {0: 0}
        self._arrival_rules: dict[tuple[int, int], int] = {}  # (room type slot, day) -> min stay; 0 = closed

    # ------------------------------------------------------------------ writes

    def property_count(self) -> int:
        return int(self._live[: self._count].sum())

    def property_slot(self, property_id: uuid.UUID) -> int | None:
        return self._ids.get(property_id)

    def room_type_slot(self, room_type_id: uuid.UUID) -> int | None:
        return self._room_ids.get(room_type_id)

    def _property_slot(self, property_id: uuid.UUID) -> int:
        slot = self._ids.get(property_id)
        if slot is not None:
            return slot
        slot = self._count
        if slot == self._lat.shape[0]:
            rows = max(slot * 2, 16)
            self._lat, self._lon = _grow(self._lat, rows, 0.0), _grow(self._lon, rows, 0.0)
            self._rating, self._type = _grow(self._rating, rows, -1), _grow(self._type, rows, 0)
            self._amenities, self._currency = _grow(self._amenities, rows, 0), _grow(self._currency, rows, 0)
            self._city, self._country = _grow(self._city, rows, 0), _grow(self._country, rows, 0)
            self._live, self._cells = _grow(self._live, rows, False), _grow(self._cells, rows, -1)
            self._recorded, self._stale = _grow(self._recorded, rows, False), _grow(self._stale, rows, False)
            self._id_high, self._id_low = _grow(self._id_high, rows, 0), _grow(self._id_low, rows, 0)
            self._room_types_of = _grow(self._room_types_of, rows, -1)
        self._names.reserve(slot + 1)
        self._count += 1
        self._ids.add(property_id, slot)
        self._id_high[slot] = np.uint64(property_id.int >> 64)
        self._id_low[slot] = np.uint64(property_id.int & _LOW)
        return slot

    def _text_keys(self, slot: int) -> tuple[list[str], list[str]]:
        city = fold(self._city_names.values[self._city[slot]])
        country = self._countries.values[self._country[slot]]
        words = set(tokens(self._names[slot]) + tokens(self._city_names.values[self._city[slot]]))
        return [f"{country}|{city}", f"|{city}"], list(words)

    def _unindex_text(self, slot: int) -> None:
        if slot < self._compacted and not self._stale[slot]:
            # Its old keys live in the compact structures: leave them there, unread.
            self._stale[slot] = True
            self._stale_count += 1
            self._by_city.forget_merged()
            self._words.forget_merged()
            return
        cities, words = self._text_keys(slot)
        for key in cities:
            self._by_city.discard(key, slot)
        for word in words:
            self._words.discard(word, slot)

    def _place(self, slot: int, lat: float, lon: float) -> None:
        for level, grid in enumerate(self._grids):
            old, new = int(self._cells[slot, level]), int(grid.key(lat, lon))
            if old != new:
                grid.move(slot, old, new)
                self._cells[slot, level] = new

    async def put_properties(self, records: Iterable[PropertyRecord]) -> None:
        for record in records:
            self.put_property(record)

    def put_property(self, record: PropertyRecord) -> None:
        slot = self._property_slot(record.property_id)
        if self._recorded[slot]:
            self._unindex_text(slot)
        self._recorded[slot] = True
        self._names.set(slot, record.name)
        self._city[slot] = self._city_names.code(record.city)
        self._country[slot] = self._countries.code(record.country.upper())
        if record.thumbnail_url:
            self._thumbnails[slot] = record.thumbnail_url
        else:
            self._thumbnails.pop(slot, None)
        self._lat[slot], self._lon[slot] = record.latitude, record.longitude
        self._rating[slot] = -1 if record.rating_tenths is None else record.rating_tenths
        self._type[slot] = self._types.setdefault(record.property_type, len(self._types))
        bits = np.uint64(0)
        for amenity in record.amenities:
            bits |= AMENITY_BITS.get(amenity, np.uint64(0))
        self._amenities[slot] = bits
        self._currency[slot] = self._currencies.code(record.currency)
        self._live[slot] = record.active
        self._place(slot, record.latitude, record.longitude)
        cities, words = self._text_keys(slot)
        for key in cities:
            self._by_city.add(key, slot)
        for word in set(words + tokens(record.description)[:50]):
            self._words.add(word, slot)
        self._recent_suggestions.append((fold(record.name), slot))
        self._city_suggestions.setdefault(fold(record.city), slot)
        self._suggestions_sorted = None

    async def remove_property(self, property_id: uuid.UUID) -> None:
        slot = self._ids.get(property_id)
        if slot is not None:
            self._live[slot] = False

    def _room_type_slot(self, room_type_id: uuid.UUID, property_id: uuid.UUID) -> int:
        slot = self._room_ids.get(room_type_id)
        if slot is not None:
            return slot
        slot = self._room_count
        if slot == self._owner.shape[0]:
            rows = max(slot * 2, 16)
            self._owner, self._max_guests = _grow(self._owner, rows, 0), _grow(self._max_guests, rows, 0)
            self._room_type_live, self._room_name = (
                _grow(self._room_type_live, rows, False),
                _grow(self._room_name, rows, 0),
            )
            self._rt_high, self._rt_low = _grow(self._rt_high, rows, 0), _grow(self._rt_low, rows, 0)
            self.units, self.price_codes = _grow(self.units, rows, 0), _grow(self.price_codes, rows, 0)
        self._room_count += 1
        self._room_ids.add(room_type_id, slot)
        self._rt_high[slot] = np.uint64(room_type_id.int >> 64)
        self._rt_low[slot] = np.uint64(room_type_id.int & _LOW)
        # Inventory may arrive before the property: a placeholder slot stays dead until its record comes.
        owner = self._property_slot(property_id)
        self._owner[slot] = owner
        row = self._room_types_of[owner]
        free = np.flatnonzero(row < 0)
        if free.size == 0:
            self._room_types_of = np.concatenate([self._room_types_of, np.full_like(self._room_types_of, -1)], axis=1)
            free = np.flatnonzero(self._room_types_of[owner] < 0)
        self._room_types_of[owner, free[0]] = slot
        return slot

    async def put_room_types(self, records: Iterable[RoomTypeRecord]) -> None:
        for record in records:
            self.put_room_type(record)

    def put_room_type(self, record: RoomTypeRecord) -> None:
        slot = self._room_type_slot(record.room_type_id, record.property_id)
        self._room_name[slot] = self._room_names.code(record.name)
        self._max_guests[slot] = record.max_guests
        self._room_type_live[slot] = record.active

    async def remove_room_type(self, room_type_id: uuid.UUID) -> None:
        slot = self._room_ids.get(room_type_id)
        if slot is not None:
            self._room_type_live[slot] = False

    def price_code(self, amount: int) -> int:
        code = self._palette_codes.get(amount)
        if code is None:
            code = self._palette_codes[amount] = len(self._palette)
            self._palette = np.append(self._palette, np.int64(amount))
            if code > np.iinfo(self.price_codes.dtype).max:
                self.price_codes = self.price_codes.astype(np.uint32)
        return code

    async def put_nights(self, room_type_id: uuid.UUID, property_id: uuid.UUID, nights: Iterable[NightState]) -> None:
        self.put_night_states(room_type_id, property_id, nights)

    def put_night_states(self, room_type_id: uuid.UUID, property_id: uuid.UUID, nights: Iterable[NightState]) -> None:
        slot = self._room_type_slot(room_type_id, property_id)
        for state in nights:
            day = (state.night - self.origin).days
            if not 0 <= day < self.horizon_days:
                continue
            free = 0 if state.closed else min(max(state.available, 0), 127)
            self._arrival_rules.pop((slot, day), None)
            if state.closed_to_arrival or state.min_stay > 1:
                self._arrival_rules[(slot, day)] = 0 if state.closed_to_arrival else state.min_stay
                free |= 0x80
            self.units[slot, day] = free
            self.price_codes[slot, day] = self.price_code(state.price)

    def free_units(self, room_type_id: uuid.UUID, night: date) -> int | None:
        """Free units the index holds for one room type and night (None when unknown)."""
        slot = self._room_ids.get(room_type_id)
        if slot is None:
            return None
        return int(self.units[slot, (night - self.origin).days] & FREE_MASK)

    async def publish(self, *, rebuild: bool) -> None:
        self.compact()

    async def check_ready(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def compact(self) -> None:
        """Folds the write overlays into the compact arrays: ids into sorted keys, text and city keys
        into CSR blocks, suggestions into one slot order. Idempotent; seconds at 1M properties."""
        count = self._count
        self._ids.compact(self._id_high[:count], self._id_low[:count])
        self._room_ids.compact(self._rt_high[: self._room_count], self._rt_low[: self._room_count])
        stale = self._stale if self._stale_count else None
        self._by_city.compact(stale)
        self._words.compact(stale)
        recorded = np.flatnonzero(self._recorded[:count])
        spans = self._names.spans[recorded]
        data = self._names.data
        folded = [fold(data[start:end].decode()) for start, end in spans.tolist()]
        order = sorted(range(len(folded)), key=folded.__getitem__)
        del folded
        self._suggest_slots = recorded[order].astype(np.int32)
        self._suggest_spans = spans[order]
        self._recent_suggestions, self._suggestions_sorted = [], None
        self._stale[:] = False
        self._stale_count = 0
        self._compacted = count

    def bulk_load(
        self,
        properties: PropertyColumns,
        room_types: RoomTypeColumns,
        units: np.ndarray,
        price_codes: np.ndarray,
        palette: np.ndarray,
    ) -> None:
        """Loads an empty index from columns in one go, already compact: no Python object per
        property or room type. Rows of `units`/`price_codes` follow `room_types`, days start at
        `origin`, codes index `palette` (code 0 = not on sale). Builders of large indexes (the
        benchmark, snapshots) use it. Give rows in location order: a city's room-nights then sit
        together in the matrices and a city-sized query reads a few contiguous stretches (at 1M,
        1.5x the queries/s of random order, which is memory-latency bound)."""
        if self._count or self._room_count:
            raise ValueError("bulk_load needs an empty index")
        count = properties.id_high.size
        self._count = count
        self._id_high = np.ascontiguousarray(properties.id_high, dtype=np.uint64)
        self._id_low = np.ascontiguousarray(properties.id_low, dtype=np.uint64)
        self._ids.compact(self._id_high, self._id_low)
        self._names.fill(properties.names)
        self._lat = np.asarray(properties.latitude, dtype=np.float64)
        self._lon = np.asarray(properties.longitude, dtype=np.float64)
        self._rating = np.asarray(properties.rating_tenths, dtype=np.int16)
        type_codes = np.array([self._types.setdefault(t, len(self._types)) for t in properties.property_types])
        self._type = type_codes[properties.property_type].astype(np.int16)
        self._amenities = np.asarray(properties.amenity_bits, dtype=np.uint64)
        currency_codes = np.array([self._currencies.code(c) for c in properties.currencies])
        self._currency = currency_codes[properties.currency].astype(np.int16)
        city_codes = np.array([self._city_names.code(c) for c in properties.city_names])
        country_codes = np.array([self._countries.code(c.upper()) for c in properties.city_countries])
        self._city = city_codes[properties.city].astype(np.int32)
        self._country = country_codes[properties.city].astype(np.int16)
        self._live = np.ones(count, dtype=bool)
        self._recorded = np.ones(count, dtype=bool)
        self._stale = np.zeros(count, dtype=bool)
        self._cells = np.full((count, 2), -1, dtype=np.int64)
        for level, grid in enumerate(self._grids):
            keys = grid.key(self._lat, self._lon)
            self._cells[:, level] = keys
            grid.fill(keys)
        slots = np.arange(count, dtype=np.int64)
        # Text: words of each distinct name and city, spread to the slots that carry them.
        name_of: dict[str, int] = {}
        name_code = np.fromiter((name_of.setdefault(n, len(name_of)) for n in properties.names), np.int64, count)
        vocabulary: dict[str, int] = {}
        word_pairs = [
            _spread(name_code, [[vocabulary.setdefault(w, len(vocabulary)) for w in tokens(n)] for n in name_of]),
            _spread(
                np.asarray(properties.city, dtype=np.int64),
                [[vocabulary.setdefault(w, len(vocabulary)) for w in tokens(c)] for c in properties.city_names],
            ),
        ]
        self._words.build(
            list(vocabulary),
            np.concatenate([w for w, _ in word_pairs]),
            np.concatenate([s for _, s in word_pairs]),
        )
        city_keys: dict[str, int] = {}
        per_city = [
            [
                city_keys.setdefault(f"{country.upper()}|{fold(city)}", len(city_keys)),
                city_keys.setdefault(f"|{fold(city)}", len(city_keys)),
            ]
            for city, country in zip(properties.city_names, properties.city_countries, strict=True)
        ]
        city_words, city_slots = _spread(np.asarray(properties.city, dtype=np.int64), per_city)
        self._by_city.build(list(city_keys), city_words, city_slots)
        # Suggestions: distinct names ranked once, slots ordered by their name's rank.
        folded_names = [fold(n) for n in name_of]
        ranks = np.empty(len(folded_names), dtype=np.int64)
        ranks[sorted(range(len(folded_names)), key=folded_names.__getitem__)] = np.arange(len(folded_names))
        order = np.argsort(ranks[name_code], kind="stable")
        self._suggest_slots = order.astype(np.int32)
        self._suggest_spans = self._names.spans[order]
        used = np.unique(np.asarray(properties.city))
        first = np.zeros(len(properties.city_names), dtype=np.int64)
        first[np.asarray(properties.city)[::-1]] = slots[::-1]
        for code in used.tolist():
            self._city_suggestions.setdefault(fold(properties.city_names[code]), int(first[code]))
        self._room_types_of = np.full((count, 4), -1, dtype=np.int32)
        # Room types, with each property's room types in row order.
        rooms = room_types.id_high.size
        self._room_count = rooms
        self._rt_high = np.ascontiguousarray(room_types.id_high, dtype=np.uint64)
        self._rt_low = np.ascontiguousarray(room_types.id_low, dtype=np.uint64)
        self._room_ids.compact(self._rt_high, self._rt_low)
        owner = np.asarray(room_types.owner, dtype=np.int64)
        self._owner = owner.astype(np.int32)
        self._max_guests = np.asarray(room_types.max_guests, dtype=np.int16)
        self._room_type_live = np.ones(rooms, dtype=bool)
        name_codes = np.array([self._room_names.code(n) for n in room_types.names])
        self._room_name = name_codes[room_types.name].astype(np.int32)
        order = np.argsort(owner, kind="stable")
        starts = np.searchsorted(owner[order], owner[order], side="left")
        column = np.arange(rooms) - starts
        width = max(4, int(column.max()) + 1 if rooms else 4)
        self._room_types_of = np.full((count, width), -1, dtype=np.int32)
        self._room_types_of[owner[order], column] = order.astype(np.int32)
        self.units, self.price_codes = units, price_codes
        self._palette = np.asarray(palette, dtype=np.int64)
        self._palette_codes = {int(v): c for c, v in enumerate(self._palette.tolist())}
        self._compacted = count

    def memory_report(self) -> dict[str, int]:
        """Bytes held per structure (numpy buffers exactly; dict overlays estimated)."""
        count, rooms = self._count, self._room_count
        columns = (
            self._lat, self._lon, self._rating, self._type, self._amenities, self._currency, self._city,
            self._country, self._live, self._recorded, self._stale, self._id_high, self._id_low, self._cells,
        )  # fmt: skip
        room_columns = (
            self._rt_high,
            self._rt_low,
            self._room_name,
            self._owner,
            self._max_guests,
            self._room_type_live,
        )
        return {
            "properties": count,
            "room_types": rooms,
            "units_matrix": int(self.units.nbytes),
            "price_code_matrix": int(self.price_codes.nbytes),
            "property_columns": sum(int(c.nbytes) for c in columns) + int(self._room_types_of.nbytes),
            "room_type_columns": sum(int(c.nbytes) for c in room_columns),
            "names": self._names.nbytes(),
            "id_maps": self._ids.nbytes() + self._room_ids.nbytes(),
            "geo_grids": sum(grid.nbytes() for grid in self._grids),
            "text_postings": self._words.nbytes(),
            "city_postings": self._by_city.nbytes(),
            "suggestions": int(self._suggest_slots.nbytes + self._suggest_spans.nbytes),
        }

    # ------------------------------------------------------------------ reads

    def _day(self, night: date) -> int:
        return (night - self.origin).days

    def candidates(self, query: SearchQuery) -> tuple[np.ndarray, np.ndarray | None]:
        """Property slots that satisfy the place, text and property filters; distances for circles."""
        count = self._count
        distances = None
        if query.circle is not None:
            slots, distances = self.within_circle(
                self._in_boxes(circle_bounds(query.circle), exact=False), query.circle
            )
        elif query.bbox is not None:
            slots = self._in_boxes([query.bbox], exact=True)
        elif query.city is not None:
            slots = self._by_city.get(f"{query.country or ''}|{query.city}", self._stale_view())
        elif query.text is not None:
            # Text alone: start from the first word's postings (typos included), not from every property.
            words = tokens(query.text)
            postings = self._word_postings(words[0], last=len(words) == 1, typos=True) if words else []
            slots = np.unique(np.concatenate(postings)) if postings else _EMPTY
        else:
            slots = np.arange(count, dtype=np.int64)
        keep = self._live[slots]
        if query.property_type is not None:
            keep &= self._type[slots] == self._types.get(query.property_type, -1)
        if query.min_rating is not None:
            keep &= self._rating[slots] >= query.min_rating
        if query.amenities:
            mask = np.uint64(0)
            for amenity in query.amenities:
                mask |= AMENITY_BITS[amenity]
            keep &= (self._amenities[slots] & mask) == mask
        slots, distances = slots[keep], (None if distances is None else distances[keep])
        if query.text is not None:
            # Words as written first; when nothing matches them, near spellings too (as Typesense
            # falls back to typos when exact matches are fewer than one).
            keep = self.text_mask(slots, query.text)
            if not keep.any():
                keep = self.text_mask(slots, query.text, typos=True)
            slots, distances = slots[keep], (None if distances is None else distances[keep])
        return slots, distances

    def within_circle(self, slots: np.ndarray, circle: Circle) -> tuple[np.ndarray, np.ndarray]:
        """The slots inside the circle (exact great-circle distance) and their distances in metres."""
        # A point d metres away is at most d/R radians of latitude away: slots outside the circle's
        # latitude band (widened by ~1 m, for the rounding to whole metres) skip the haversine.
        lat = self._lat[slots]
        band = math.degrees((circle.radius_km * 1000 + 1) / (EARTH_RADIUS_KM * 1000)) + 1e-9
        near = np.abs(lat - circle.lat) <= band
        slots, lat = slots[near], lat[near]
        distances = haversine_m(circle.lat, circle.lon, lat, self._lon[slots])
        inside = distances <= int(circle.radius_km * 1000)
        return slots[inside], distances[inside]

    def live_slots(self, property_ids: Iterable[str]) -> np.ndarray:
        """Slots of the live properties among these ids (unknown ids are skipped)."""
        slots = np.unique(self._ids.many([uuid.UUID(i) for i in property_ids]))
        slots = slots[slots >= 0]
        return slots[self._live[slots]]

    def _in_boxes(self, boxes: list[BoundingBox], *, exact: bool) -> np.ndarray:
        parts = []
        for box in boxes:
            spans = [(box.west, box.east)] if box.west <= box.east else [(box.west, 180.0), (-180.0, box.east)]
            for west, east in spans:
                wide = (box.north - box.south) > 1.0 or (east - west) > 1.0
                parts += self._grids[1 if wide else 0].slots_in(box.south, west, box.north, east)
        if not parts:
            return _EMPTY
        # Cells are disjoint and the boxes of one circle do not overlap: no de-duplication needed.
        slots = np.concatenate(parts)
        if exact:
            box = boxes[0]
            lat, lon = self._lat[slots], self._lon[slots]
            inside = (lat >= box.south) & (lat <= box.north)
            if box.west <= box.east:
                inside &= (lon >= box.west) & (lon <= box.east)
            else:
                inside &= (lon >= box.west) | (lon <= box.east)
            slots = slots[inside]
        return slots

    def _stale_view(self) -> np.ndarray | None:
        return self._stale if self._stale_count else None

    def _word_postings(self, word: str, *, last: bool, typos: bool = False) -> list[np.ndarray]:
        known = word in self._words
        variants = [word] if known else []
        if typos or not known:
            variants += self._vocabulary_near(word, prefix=last)
        stale = self._stale_view()
        return [p for p in (self._words.get(v, stale) for v in variants) if p.size]

    def text_mask(self, slots: np.ndarray, text: str, *, typos: bool = False) -> np.ndarray:
        """Which slots match every word of `text` (name, city, description): exactly, as a prefix
        (the last word, while typing) or one typo away (words of five letters or more)."""
        words = tokens(text)[:8]
        mask = np.full(slots.size, bool(words))
        for position, word in enumerate(words):
            hit = np.zeros(slots.size, dtype=bool)
            for posting in self._word_postings(word, last=position == len(words) - 1, typos=typos):
                at = np.minimum(np.searchsorted(posting, slots), posting.size - 1)
                hit |= posting[at] == slots
            mask &= hit
        return mask

    def _vocabulary_near(self, word: str, *, prefix: bool) -> list[str]:
        near = []
        if len(word) < 2:
            return near
        for candidate in islice(self._words.keys(), 200_000):
            if prefix and candidate.startswith(word):
                near.append(candidate)
            elif len(word) >= 5 and abs(len(candidate) - len(word)) <= 1 and _one_edit(word, candidate):
                near.append(candidate)
        return near

    def available_room_types(self, query: SearchQuery, slots: np.ndarray):
        """For each candidate property, the cheapest room type that fits the stay: (owner index, room type
        slot, stay total in the property's currency) — one row per property that has one."""
        day0 = self._day(query.check_in)
        day1 = day0 + query.nights
        if slots.size == 0 or day0 < 0 or day1 > self.horizon_days:
            return _EMPTY, _EMPTY, _EMPTY
        rooms = query.rooms
        # Room types of the candidates, one row per property (-1 = no room type in that column);
        # `grid[valid]` lists them property by property, each property's in room type slot order.
        grid = self._room_types_of[slots]
        valid = grid >= 0
        room_types = grid[valid]
        # max_guests * rooms >= guests, without widening max_guests to multiply it.
        fits = self._room_type_live[room_types]
        fits &= self._max_guests[room_types] >= -(-query.guests // rooms)
        at = np.flatnonzero(fits)  # positions in `room_types` still in the running
        rows = room_types[at]
        nights = self.units[rows, day0:day1]
        free = (nights & FREE_MASK).min(axis=1) >= rooms
        restricted = free & ((nights[:, 0] & RESTRICTED) != 0)
        if restricted.any():
            for index in np.flatnonzero(restricted):
                rule = self._arrival_rules.get((int(rows[index]), day0), 1)
                free[index] = rule != 0 and rule <= query.nights
        at, rows = at[free], rows[free]
        if at.size == 0:
            return _EMPTY, _EMPTY, _EMPTY
        # Cheapest per property: totals laid back on the grid (no stay = the largest int64), then the
        # first column at each row's minimum, i.e. the lowest room type slot among equal totals.
        totals = np.full(room_types.size, _NO_STAY, dtype=np.int64)
        totals[at] = self._palette[self.price_codes[rows, day0:day1]].sum(axis=1) * rooms
        best = np.full(grid.shape, _NO_STAY, dtype=np.int64)
        best[valid] = totals
        column = best.argmin(axis=1)
        lowest = best[np.arange(slots.size), column]
        owner = np.flatnonzero(lowest != _NO_STAY)
        column = column[owner]
        return owner, grid[owner, column].astype(np.int64), lowest[owner]

    def converted(self, slots: np.ndarray, totals: np.ndarray, currency: str) -> np.ndarray:
        """Stay totals (property currencies) in the requested currency, exact integer floor.

        A property priced in a currency the rates table lacks cannot be priced in another one:
        its total is UNPRICED (totals are never negative), and `answer` leaves it out.
        """
        codes = self._currency[slots]
        present = np.flatnonzero(np.bincount(codes)) if codes.size else _EMPTY
        if present.size == 1:  # the common case: a city's properties share a currency
            return self._converted_from(self._currencies.values[int(present[0])], totals, currency)
        result = np.zeros(totals.size, dtype=np.int64)
        for code in present.tolist():
            rows = codes == code
            result[rows] = self._converted_from(self._currencies.values[code], totals[rows], currency)
        return result

    def _converted_from(self, source: str, totals: np.ndarray, currency: str) -> np.ndarray:
        if source == currency:
            return totals
        if source not in self.rates.rates:
            return np.full(totals.size, UNPRICED, dtype=np.int64)
        return self.rates.conversion(source, currency).apply_many(totals).astype(np.int64)

    async def search(self, query: SearchQuery, ranker: Ranker) -> SearchPage:
        slots, distances = self.candidates(query)
        return self.answer(query, ranker, slots, distances)

    def answer(self, query: SearchQuery, ranker: Ranker, slots: np.ndarray, distances: np.ndarray | None) -> SearchPage:
        """Availability, price, facets, ordering and the page, for candidate property slots."""
        owner, room_types, totals = self.available_room_types(query, slots)
        slots = slots[owner]
        distances = None if distances is None else distances[owner]
        in_currency = self.converted(slots, totals, query.currency)
        keep = in_currency != UNPRICED
        if query.price_min is not None:
            keep &= in_currency >= query.price_min
        if query.price_max is not None:
            keep &= in_currency <= query.price_max
        slots, room_types, totals, in_currency = slots[keep], room_types[keep], totals[keep], in_currency[keep]
        distances = None if distances is None else distances[keep]
        matches = Matches(in_currency, self._rating[slots], distances, self._id_high[slots], self._id_low[slots])
        keys = self._sort_keys(query, ranker, matches)
        high, low = self._id_high[slots], self._id_low[slots]
        if query.after is not None:
            mark = query.after.property_id.int
            mark_high, mark_low = np.uint64(mark >> 64), np.uint64(mark & (2**64 - 1))
            later = (keys > query.after.key) | (
                (keys == query.after.key) & ((high > mark_high) | ((high == mark_high) & (low > mark_low)))
            )
            page_rows = np.flatnonzero(later)
        else:
            page_rows = np.arange(slots.size)
        if page_rows.size > 2 * query.limit:
            # Top-k: only rows whose key is within the page's last key (ties included) get sorted.
            page_keys = keys[page_rows]
            last = np.partition(page_keys, query.limit - 1)[query.limit - 1]
            shortlist = page_rows[page_keys <= last]
        else:
            shortlist = page_rows
        chosen = shortlist[np.lexsort((low[shortlist], high[shortlist], keys[shortlist]))][: query.limit]
        hits = self._hits(
            query,
            slots[chosen],
            room_types[chosen],
            totals[chosen],
            in_currency[chosen],
            None if distances is None else distances[chosen],
            keys[chosen],
        )
        return SearchPage(
            hits=hits,
            total=int(slots.size),
            amenity_counts=self._amenity_counts(slots),
            price_histogram=_histogram(in_currency),
            has_more=page_rows.size > query.limit,
        )

    def _sort_keys(self, query: SearchQuery, ranker: Ranker, matches: Matches) -> np.ndarray:
        if query.sort == "price":
            return matches.totals.astype(np.int64)
        if query.sort == "distance" and matches.distances_m is not None:
            return matches.distances_m.astype(np.int64)
        if query.sort == "rating":
            return rating_keys(matches)
        return np.asarray(ranker.keys(query, matches), dtype=np.int64)

    def _hits(self, query: SearchQuery, slots, room_types, totals, in_currency, distances, keys) -> list[SearchHit]:
        """The page's hits, gathered column by column (one numpy call per field, not per hit)."""
        day0 = self._day(query.check_in)
        nightly = self._palette[self.price_codes[room_types, day0 : day0 + query.nights]].tolist()
        data, cities, countries = self._names.data, self._city_names.values, self._countries.values
        names = [data[start:end].decode() for start, end in self._names.spans[slots].tolist()]
        room_names, currencies = self._room_names.values, self._currencies.values
        thumbnails = self._thumbnails
        count = len(slots)
        return list(
            map(
                SearchHit,
                _uuids(self._id_high[slots], self._id_low[slots]),
                names,
                [cities[c] for c in self._city[slots].tolist()],
                [countries[c] for c in self._country[slots].tolist()],
                self._lat[slots].tolist(),
                self._lon[slots].tolist(),
                [None] * count if distances is None else (distances / 1000).tolist(),
                [None if r < 0 else r for r in self._rating[slots].tolist()],
                [thumbnails.get(slot) for slot in slots.tolist()] if thumbnails else [None] * count,
                _uuids(self._rt_high[room_types], self._rt_low[room_types]),
                [room_names[c] for c in self._room_name[room_types].tolist()],
                self._max_guests[room_types].tolist(),
                [currencies[c] for c in self._currency[slots].tolist()],
                totals.tolist(),
                nightly,
                in_currency.tolist(),
                keys.tolist(),
            )
        )

    def _amenity_counts(self, slots: np.ndarray) -> dict[str, int]:
        # How many slots carry each amenity bit, in one bincount: each uint64 is 8 bytes; byte b of a
        # slot counts once in bin 256 * b + value, and a byte value's bits are looked up in a table.
        raw = self._amenities[slots].view(np.uint8).reshape(-1, 8)[:, :_AMENITY_BYTES]
        per_byte = np.bincount((raw + _BYTE_BINS).ravel(), minlength=256 * _AMENITY_BYTES)
        counts = (per_byte.reshape(_AMENITY_BYTES, 256) @ _BITS_OF_BYTE).ravel().tolist()
        return {name: counts[bit] for bit, name in enumerate(AMENITIES) if counts[bit]}

    def _property_id(self, slot: int) -> uuid.UUID:
        return uuid.UUID(int=(int(self._id_high[slot]) << 64) | int(self._id_low[slot]))

    def _sorted_suggestions(self) -> list[tuple[str, str, int]]:
        """Cities and names written since the last compaction, in label order (small)."""
        if self._suggestions_sorted is None:
            entries = [(label, "city", slot) for label, slot in self._city_suggestions.items()]
            entries += [(label, "property", slot) for label, slot in self._recent_suggestions]
            self._suggestions_sorted = sorted(entries)
        return self._suggestions_sorted

    async def suggest(self, prefix: str, limit: int) -> list[Suggestion]:
        """Cities and property names starting with `prefix` (folded), cities first, live properties only."""
        folded = fold(prefix)
        if not folded:
            return []
        cities: dict[tuple[str, str], Suggestion] = {}
        named: list[tuple[str, int]] = []
        entries = self._sorted_suggestions()
        start = bisect_left(entries, (folded, "", -1))
        for label, kind, slot in entries[start : start + 2000]:
            if not label.startswith(folded):
                break
            city, country = self._city_names.values[self._city[slot]], self._countries.values[self._country[slot]]
            if kind == "city":
                cities.setdefault((fold(city), country), Suggestion("city", city, city, country))
            elif len(named) < limit and self._live[slot]:
                named.append((label, slot))
        # The compact part: slots in folded-name order, each with the name it had when compacted.
        spans, data = self._suggest_spans, self._names.data
        at = bisect_left(range(spans.shape[0]), folded, key=lambda n: fold(data[spans[n, 0] : spans[n, 1]].decode()))
        taken = 0
        for n in range(at, min(at + 2000, spans.shape[0])):
            label = fold(data[spans[n, 0] : spans[n, 1]].decode())
            if not label.startswith(folded) or taken >= limit:
                break
            slot = int(self._suggest_slots[n])
            if self._live[slot] and not self._stale[slot]:
                named.append((label, slot))
                taken += 1
        properties = [
            Suggestion(
                "property",
                self._names[slot],
                self._city_names.values[self._city[slot]],
                self._countries.values[self._country[slot]],
                self._property_id(slot),
            )
            for _, slot in sorted(named)[:limit]
        ]
        return (list(cities.values()) + properties)[:limit]


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or adjacent swap."""
    if a == b:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
        )
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _uuid_from_int(value: int) -> uuid.UUID:
    """`uuid.UUID(int=value)` for a value known to be in range, without the constructor's argument
    checks (a third of its cost; a page has two ids per hit). Sets the same two slots it sets."""
    made = _new_object(_UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
    return made


_new_object, _set_slot, _UUID, _UNKNOWN_SAFETY = object.__new__, object.__setattr__, uuid.UUID, uuid.SafeUUID.unknown
_probe = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")
if _uuid_from_int(_probe.int) != _probe or str(_uuid_from_int(_probe.int)) != str(_probe):  # pragma: no cover
    _uuid_from_int = lambda value: uuid.UUID(int=value)  # noqa: E731 (another UUID implementation)


def _uuids(high: np.ndarray, low: np.ndarray) -> list[uuid.UUID]:
    return [_uuid_from_int((h << 64) | lo) for h, lo in zip(high.tolist(), low.tolist(), strict=True)]


def _histogram(totals: np.ndarray) -> list[dict[str, int]]:
    """Ten equal integer-width buckets between the cheapest and dearest stay; empty buckets dropped."""
    if totals.size == 0:
        return []
    low, high = int(totals.min()), int(totals.max())
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BUCKETS))
    counts = np.bincount(((totals - low) // width).astype(np.int64), minlength=HISTOGRAM_BUCKETS)
    return [
        {"min": low + i * width, "max": low + (i + 1) * width - 1, "count": int(c)} for i, c in enumerate(counts) if c
    ]


def _spread(codes: np.ndarray, items_of_code: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """For rows carrying `codes`, the pairs (item, row) for every item of each row's code."""
    lengths = np.fromiter(map(len, items_of_code), dtype=np.int64, count=len(items_of_code))
    flat = np.fromiter((i for items in items_of_code for i in items), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    per_row = lengths[codes]
    rows = np.repeat(np.arange(codes.size, dtype=np.int64), per_row)
    first = np.repeat(starts[codes], per_row)
    within = np.arange(rows.size, dtype=np.int64) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    return flat[first + within], rows
