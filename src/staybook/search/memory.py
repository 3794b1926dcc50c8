"""The in-process search index: numpy columns, a coarse geo grid, per-night availability matrices.

Layout (one row per property "slot", one row per room-type slot, one column per day):

- property columns: latitude, longitude, rating, type, amenity bitset (uint64), currency,
  live flag, and the property id split in two uint64s (a stable tie-break for sorting);
- two geo grids (0.1 degree, ~11 km, for city-sized places; 1 degree for wide boxes):
  cell -> array of property slots, so a city radius reads a few cells, never the whole table;
- `units[room_type, day]` (uint8): free units clamped to 127 (a closed night is 0), with
  the top bit set when the check-in night has a restriction (closed to arrival, min stay > 1)
  kept in a small dict — those are rare, so the matrix stays one byte per room-night;
- `price_codes[room_type, day]` (uint16): an index into a palette of distinct prices. Real
  calendars reuse few distinct amounts, so a 4-byte price costs 2 bytes; the matrix widens
  to uint32 if the palette ever outgrows 65,535 amounts.

At 1M properties x 2.5 room types x 366 days that is ~2.7 GB (3 bytes per room-night).
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

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
_EMPTY = np.zeros(0, dtype=np.int64)


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
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
        for start, end in zip(starts, np.r_[starts[1:], order.size], strict=True):
            self.cells[int(keys[order[start]])] = order[start:end].astype(np.int64)

    def slots_in(self, south: float, west: float, north: float, east: float) -> list[np.ndarray]:
        """Slots in every cell touching the box (west <= east); a superset of the box's slots."""
        row0, row1 = (int(v) for v in self.key(np.array([south, north]), np.array([west, west])) // self.columns)
        column0, column1 = (int(v) for v in self.key(np.array([south, south]), np.array([west, east])) % self.columns)
        found = []
        for row in range(row0, row1 + 1):
            base = row * self.columns
            for column in range(column0, column1 + 1):
                members = self.cells.get(base + column)
                if members is not None and members.size:
                    found.append(members)
        return found


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
    """The embedded default backend; also the availability read model behind the Typesense backend."""

    backend = "memory"

    def __init__(self, origin: date, horizon_days: int, rates: CurrencyRates, capacity: int = 1024) -> None:
        self.origin = origin
        self.horizon_days = horizon_days
        self.rates = rates
        self._currencies: list[str] = []
        self._currency_codes: dict[str, int] = {}
        # Properties.
        self._property_slots: dict[uuid.UUID, int] = {}
        self._property_ids: list[uuid.UUID] = []
        self._names: list[str] = []
        self._cities: list[str] = []
        self._countries: list[str] = []
        self._thumbnails: list[str | None] = []
        self._lat = np.zeros(capacity, dtype=np.float64)
        self._lon = np.zeros(capacity, dtype=np.float64)
        self._rating = np.full(capacity, -1, dtype=np.int16)
        self._type = np.zeros(capacity, dtype=np.int16)
        self._amenities = np.zeros(capacity, dtype=np.uint64)
        self._currency = np.zeros(capacity, dtype=np.int16)
        self._live = np.zeros(capacity, dtype=bool)
        self._id_high = np.zeros(capacity, dtype=np.uint64)
        self._id_low = np.zeros(capacity, dtype=np.uint64)
        self._cells = np.full((capacity, 2), -1, dtype=np.int64)  # key in the fine and the coarse grid
        self._room_types_of = np.full((capacity, 4), -1, dtype=np.int32)
        self._types: dict[str, int] = {}
        # Fine cells (~11 km) for city-sized places; coarse ones (~111 km) keep wide boxes to few lookups.
        self._grids = (GeoGrid(0.1), GeoGrid(1.0))
        self._by_city: dict[str, set[int]] = defaultdict(set)  # "country|city" and "|city"
        self._postings: dict[str, set[int]] = defaultdict(set)
        # Sorted-array views of the sets above, built on first read and dropped when a set changes.
        self._arrays: dict[str, np.ndarray] = {}
        self._suggestions: list[tuple[str, str, int]] = []  # (folded label, kind, slot), sorted lazily
        self._suggestions_sorted = True
        # Room types and their nights.
        self._room_type_slots: dict[uuid.UUID, int] = {}
        self._room_type_ids: list[uuid.UUID] = []
        self._room_type_names: list[str] = []
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
        return int(self._live[: len(self._property_ids)].sum())

    def _currency_code(self, currency: str) -> int:
        code = self._currency_codes.get(currency)
        if code is None:
            code = self._currency_codes[currency] = len(self._currencies)
            self._currencies.append(currency)
        return code

    def _property_slot(self, property_id: uuid.UUID) -> int:
        slot = self._property_slots.get(property_id)
        if slot is not None:
            return slot
        slot = len(self._property_ids)
        if slot == self._lat.shape[0]:
            rows = slot * 2
            self._lat, self._lon = _grow(self._lat, rows, 0.0), _grow(self._lon, rows, 0.0)
            self._rating, self._type = _grow(self._rating, rows, -1), _grow(self._type, rows, 0)
            self._amenities, self._currency = _grow(self._amenities, rows, 0), _grow(self._currency, rows, 0)
            self._live, self._cells = _grow(self._live, rows, False), _grow(self._cells, rows, -1)
            self._id_high, self._id_low = _grow(self._id_high, rows, 0), _grow(self._id_low, rows, 0)
            self._room_types_of = _grow(self._room_types_of, rows, -1)
        self._property_slots[property_id] = slot
        self._property_ids.append(property_id)
        self._names.append("")
        self._cities.append("")
        self._countries.append("")
        self._thumbnails.append(None)
        self._id_high[slot] = np.uint64(property_id.int >> 64)
        self._id_low[slot] = np.uint64(property_id.int & (2**64 - 1))
        return slot

    def _unindex_text(self, slot: int) -> None:
        for key in (f"{self._countries[slot]}|{fold(self._cities[slot])}", f"|{fold(self._cities[slot])}"):
            self._by_city[key].discard(slot)
            self._arrays.pop("city:" + key, None)
        for token in set(tokens(self._names[slot]) + tokens(self._cities[slot])):
            self._postings[token].discard(slot)
            self._arrays.pop("word:" + token, None)

    def _place(self, slot: int, lat: float, lon: float) -> None:
        for level, grid in enumerate(self._grids):
            old, new = int(self._cells[slot, level]), int(grid.key(lat, lon))
            if old != new:
                grid.move(slot, old, new)
                self._cells[slot, level] = new

    async def put_properties(self, records: Iterable[PropertyRecord]) -> None:
        for record in records:
            self.put_property(record)

    def put_property(self, record: PropertyRecord, *, place: bool = True) -> None:
        slot = self._property_slot(record.property_id)
        if self._names[slot]:
            self._unindex_text(slot)
        self._names[slot], self._cities[slot] = record.name, record.city
        self._countries[slot], self._thumbnails[slot] = record.country.upper(), record.thumbnail_url
        self._lat[slot], self._lon[slot] = record.latitude, record.longitude
        self._rating[slot] = -1 if record.rating_tenths is None else record.rating_tenths
        self._type[slot] = self._types.setdefault(record.property_type, len(self._types))
        bits = np.uint64(0)
        for amenity in record.amenities:
            bits |= AMENITY_BITS.get(amenity, np.uint64(0))
        self._amenities[slot] = bits
        self._currency[slot] = self._currency_code(record.currency)
        self._live[slot] = record.active
        if place:
            self._place(slot, record.latitude, record.longitude)
        city = fold(record.city)
        for key in (f"{self._countries[slot]}|{city}", f"|{city}"):
            self._by_city[key].add(slot)
            self._arrays.pop("city:" + key, None)
        for token in set(tokens(record.name) + tokens(record.city) + tokens(record.description)[:50]):
            self._postings[token].add(slot)
            self._arrays.pop("word:" + token, None)
        self._suggestions.append((fold(record.name), "property", slot))
        if len(self._by_city[f"|{city}"]) == 1:
            self._suggestions.append((city, "city", slot))
        self._suggestions_sorted = False

    async def remove_property(self, property_id: uuid.UUID) -> None:
        slot = self._property_slots.get(property_id)
        if slot is not None:
            self._live[slot] = False

    def _room_type_slot(self, room_type_id: uuid.UUID, property_id: uuid.UUID) -> int:
        slot = self._room_type_slots.get(room_type_id)
        if slot is not None:
            return slot
        slot = len(self._room_type_ids)
        if slot == self._owner.shape[0]:
            rows = slot * 2
            self._owner, self._max_guests = _grow(self._owner, rows, 0), _grow(self._max_guests, rows, 0)
            self._room_type_live = _grow(self._room_type_live, rows, False)
            self.units, self.price_codes = _grow(self.units, rows, 0), _grow(self.price_codes, rows, 0)
        self._room_type_slots[room_type_id] = slot
        self._room_type_ids.append(room_type_id)
        self._room_type_names.append("")
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
        self._room_type_names[slot] = record.name
        self._max_guests[slot] = record.max_guests
        self._room_type_live[slot] = record.active

    async def remove_room_type(self, room_type_id: uuid.UUID) -> None:
        slot = self._room_type_slots.get(room_type_id)
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

    async def publish(self, *, rebuild: bool) -> None:
        return None

    async def check_ready(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def bulk_load(
        self,
        properties: list[PropertyRecord],
        room_types: list[RoomTypeRecord],
        units: np.ndarray,
        price_codes: np.ndarray,
        palette: np.ndarray,
    ) -> None:
        """Loads an empty index in one go: rows of `units`/`price_codes` follow `room_types`, days
        start at `origin`, codes index `palette` (code 0 = not on sale). Builders of large
        indexes (snapshots, the benchmark) use it; the per-record path costs ~30 µs a property."""
        if self._property_ids:
            raise ValueError("bulk_load needs an empty index")
        capacity = max(len(properties), 1)
        self._lat, self._lon = np.zeros(capacity), np.zeros(capacity)
        self._rating = np.full(capacity, -1, dtype=np.int16)
        self._type, self._currency = np.zeros(capacity, dtype=np.int16), np.zeros(capacity, dtype=np.int16)
        self._amenities = np.zeros(capacity, dtype=np.uint64)
        self._live, self._cells = np.zeros(capacity, dtype=bool), np.full((capacity, 2), -1, dtype=np.int64)
        self._id_high, self._id_low = np.zeros(capacity, dtype=np.uint64), np.zeros(capacity, dtype=np.uint64)
        self._room_types_of = np.full((capacity, 4), -1, dtype=np.int32)
        self._palette = np.asarray(palette, dtype=np.int64)
        self._palette_codes = {int(v): c for c, v in enumerate(self._palette)}
        for record in properties:
            self.put_property(record, place=False)
        # The grid in one sort instead of a million appends.
        for level, grid in enumerate(self._grids):
            keys = grid.key(self._lat[: len(properties)], self._lon[: len(properties)])
            self._cells[: len(properties), level] = keys
            grid.fill(keys)
        count = max(len(room_types), 1)
        self._owner, self._max_guests = np.zeros(count, dtype=np.int32), np.zeros(count, dtype=np.int16)
        self._room_type_live = np.zeros(count, dtype=bool)
        self.units, self.price_codes = units, price_codes
        for record in room_types:
            self.put_room_type(record)

    # ------------------------------------------------------------------ reads

    def _day(self, night: date) -> int:
        return (night - self.origin).days

    def candidates(self, query: SearchQuery) -> tuple[np.ndarray, np.ndarray | None]:
        """Property slots that satisfy the place, text and property filters; distances for circles."""
        count = len(self._property_ids)
        distances = None
        if query.circle is not None:
            slots, distances = self.within_circle(
                self._in_boxes(circle_bounds(query.circle), exact=False), query.circle
            )
        elif query.bbox is not None:
            slots = self._in_boxes([query.bbox], exact=True)
        elif query.city is not None:
            slots = self._sorted("city:", self._by_city, f"{query.country or ''}|{query.city}")
        elif query.text is not None:
            # Text alone: start from the first word's postings, not from every property.
            words = tokens(query.text)
            postings = self._word_postings(words[0], last=len(words) == 1) if words else []
            slots = np.unique(np.concatenate(postings)) if postings else _EMPTY
        else:
            slots = np.arange(count, dtype=np.int64)
        if query.text is not None:
            keep = self.text_mask(slots, query.text)
            slots = slots[keep]
            distances = None if distances is None else distances[keep]
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
        return slots[keep], (None if distances is None else distances[keep])

    def within_circle(self, slots: np.ndarray, circle: Circle) -> tuple[np.ndarray, np.ndarray]:
        """The slots inside the circle (exact great-circle distance) and their distances in metres."""
        distances = haversine_m(circle.lat, circle.lon, self._lat[slots], self._lon[slots])
        inside = distances <= int(circle.radius_km * 1000)
        return slots[inside], distances[inside]

    def live_slots(self, property_ids: Iterable[str]) -> np.ndarray:
        """Slots of the live properties among these ids (unknown ids are skipped)."""
        known = self._property_slots
        slots = np.unique(np.fromiter((known.get(uuid.UUID(i), -1) for i in property_ids), dtype=np.int64))
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

    def _sorted(self, prefix: str, sets: dict[str, set[int]], key: str) -> np.ndarray:
        found = self._arrays.get(prefix + key)
        if found is None:
            members = sets.get(key, ())
            found = np.sort(np.fromiter(members, dtype=np.int64, count=len(members)))
            self._arrays[prefix + key] = found
        return found

    def _word_postings(self, word: str, *, last: bool) -> list[np.ndarray]:
        variants = [word] if word in self._postings else self._vocabulary_near(word, prefix=last)
        return [p for p in (self._sorted("word:", self._postings, v) for v in variants) if p.size]

    def text_mask(self, slots: np.ndarray, text: str) -> np.ndarray:
        """Which slots match every word of `text` (name, city, description): exactly, as a prefix
        (the last word, while typing) or one typo away (words of five letters or more)."""
        words = tokens(text)[:8]
        mask = np.full(slots.size, bool(words))
        for position, word in enumerate(words):
            hit = np.zeros(slots.size, dtype=bool)
            for posting in self._word_postings(word, last=position == len(words) - 1):
                at = np.minimum(np.searchsorted(posting, slots), posting.size - 1)
                hit |= posting[at] == slots
            mask &= hit
        return mask

    def _vocabulary_near(self, word: str, *, prefix: bool) -> list[str]:
        near = []
        if len(word) < 2:
            return near
        for candidate in list(self._postings)[:200_000]:
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
        grid = self._room_types_of[slots]
        owner, column = np.nonzero(grid >= 0)
        room_types = grid[owner, column].astype(np.int64)
        fits = self._room_type_live[room_types] & (
            self._max_guests[room_types].astype(np.int64) * query.rooms >= query.guests
        )
        owner, room_types = owner[fits], room_types[fits]
        nights = self.units[room_types, day0:day1]
        free = (nights & FREE_MASK).min(axis=1) >= query.rooms
        owner, room_types, nights = owner[free], room_types[free], nights[free]
        restricted = (nights[:, 0] & RESTRICTED) != 0
        if restricted.any():
            allowed = np.ones(room_types.size, dtype=bool)
            for index in np.flatnonzero(restricted):
                rule = self._arrival_rules.get((int(room_types[index]), day0), 1)
                allowed[index] = rule != 0 and rule <= query.nights
            owner, room_types = owner[allowed], room_types[allowed]
        prices = self._palette[self.price_codes[room_types, day0:day1]]
        totals = prices.sum(axis=1) * query.rooms
        # Cheapest per property: sort by (owner, total, room type slot) and keep each owner's first.
        order = np.lexsort((room_types, totals, owner))
        owner, room_types, totals = owner[order], room_types[order], totals[order]
        first = np.ones(owner.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        return owner[first], room_types[first], totals[first]

    def converted(self, slots: np.ndarray, totals: np.ndarray, currency: str) -> np.ndarray:
        """Stay totals (property currencies) in the requested currency, exact integer floor."""
        result = np.zeros(totals.size, dtype=np.int64)
        codes = self._currency[slots]
        for code in np.unique(codes):
            source = self._currencies[int(code)]
            rows = codes == code
            if source == currency:
                result[rows] = totals[rows]
            else:
                result[rows] = self.rates.conversion(source, currency).apply_many(totals[rows])
        return result

    async def search(self, query: SearchQuery, ranker: Ranker) -> SearchPage:
        slots, distances = self.candidates(query)
        return self.answer(query, ranker, slots, distances)

    def answer(self, query: SearchQuery, ranker: Ranker, slots: np.ndarray, distances: np.ndarray | None) -> SearchPage:
        """Availability, price, facets, ordering and the page, for candidate property slots."""
        owner, room_types, totals = self.available_room_types(query, slots)
        slots = slots[owner]
        distances = None if distances is None else distances[owner]
        in_currency = self.converted(slots, totals, query.currency)
        keep = np.ones(slots.size, dtype=bool)
        if query.price_min is not None:
            keep &= in_currency >= query.price_min
        if query.price_max is not None:
            keep &= in_currency <= query.price_max
        slots, room_types, totals, in_currency = slots[keep], room_types[keep], totals[keep], in_currency[keep]
        distances = None if distances is None else distances[keep]
        matches = Matches(in_currency, self._rating[slots], distances)
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
        order = page_rows[np.lexsort((low[page_rows], high[page_rows], keys[page_rows]))]
        chosen = order[: query.limit]
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
            has_more=order.size > query.limit,
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
        lat, lon = self._lat[slots].tolist(), self._lon[slots].tolist()
        ratings, currencies = self._rating[slots].tolist(), self._currency[slots].tolist()
        guests = self._max_guests[room_types].tolist()
        far = [None] * len(slots) if distances is None else [d / 1000 for d in distances.tolist()]
        hits = []
        for n, (slot, room_type) in enumerate(zip(slots.tolist(), room_types.tolist(), strict=True)):
            hits.append(
                SearchHit(
                    property_id=self._property_ids[slot],
                    name=self._names[slot],
                    city=self._cities[slot],
                    country=self._countries[slot],
                    latitude=lat[n],
                    longitude=lon[n],
                    distance_km=far[n],
                    rating_tenths=None if ratings[n] < 0 else ratings[n],
                    thumbnail_url=self._thumbnails[slot],
                    room_type_id=self._room_type_ids[room_type],
                    room_type_name=self._room_type_names[room_type],
                    max_guests=guests[n],
                    currency=self._currencies[currencies[n]],
                    total=int(totals[n]),
                    nightly_prices=nightly[n],
                    total_in_currency=int(in_currency[n]),
                    sort_key=int(keys[n]),
                )
            )
        return hits

    def _amenity_counts(self, slots: np.ndarray) -> dict[str, int]:
        # All 64 bit counts in one pass: view each uint64 as 8 bytes and unpack the bits.
        bits = np.unpackbits(self._amenities[slots].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
        counts = bits.sum(axis=0, dtype=np.int64).tolist()
        return {name: counts[bit] for bit, name in enumerate(AMENITIES) if counts[bit]}

    async def suggest(self, prefix: str, limit: int) -> list[Suggestion]:
        """Cities and property names starting with `prefix` (folded), cities first, live properties only."""
        if not self._suggestions_sorted:
            self._suggestions.sort()
            self._suggestions_sorted = True
        folded = fold(prefix)
        if not folded:
            return []
        cities: dict[tuple[str, str], Suggestion] = {}
        properties: list[Suggestion] = []
        start = bisect_left(self._suggestions, (folded, "", -1))
        for label, kind, slot in self._suggestions[start : start + 2000]:
            if not label.startswith(folded):
                break
            city, country = self._cities[slot], self._countries[slot]
            if kind == "city":
                cities.setdefault((fold(city), country), Suggestion("city", city, city, country))
            elif len(properties) < limit and self._live[slot]:
                properties.append(Suggestion("property", self._names[slot], city, country, self._property_ids[slot]))
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
