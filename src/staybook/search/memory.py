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

import uuid
from collections.abc import Iterable
from datetime import date

import numpy as np

from staybook.search.columns import (
    AMENITY_BITS,
    FREE_MASK,
    LOW,
    Codes,
    GeoGrid,
    IdMap,
    Postings,
    PropertyColumns,
    RoomTypeColumns,
    TextColumn,
    grow,
    spread,
)
from staybook.search.index import (
    NightState,
    PropertyRecord,
    RoomTypeRecord,
)
from staybook.search.memory_queries import IndexQueries
from staybook.search.query import (
    fold,
    tokens,
)
from staybook.search.rates import CurrencyRates


class MemoryIndex(IndexQueries):
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

    def _property_slot(self, property_id: uuid.UUID) -> int:
        slot = self._ids.get(property_id)
        if slot is not None:
            return slot
        slot = self._count
        if slot == self._lat.shape[0]:
            rows = max(slot * 2, 16)
            self._lat, self._lon = grow(self._lat, rows, 0.0), grow(self._lon, rows, 0.0)
            self._rating, self._type = grow(self._rating, rows, -1), grow(self._type, rows, 0)
            self._amenities, self._currency = grow(self._amenities, rows, 0), grow(self._currency, rows, 0)
            self._city, self._country = grow(self._city, rows, 0), grow(self._country, rows, 0)
            self._live, self._cells = grow(self._live, rows, False), grow(self._cells, rows, -1)
            self._recorded, self._stale = grow(self._recorded, rows, False), grow(self._stale, rows, False)
            self._id_high, self._id_low = grow(self._id_high, rows, 0), grow(self._id_low, rows, 0)
            self._room_types_of = grow(self._room_types_of, rows, -1)
        self._names.reserve(slot + 1)
        self._count += 1
        self._ids.add(property_id, slot)
        self._id_high[slot] = np.uint64(property_id.int >> 64)
        self._id_low[slot] = np.uint64(property_id.int & LOW)
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
            self._owner, self._max_guests = grow(self._owner, rows, 0), grow(self._max_guests, rows, 0)
            self._room_type_live, self._room_name = (
                grow(self._room_type_live, rows, False),
                grow(self._room_name, rows, 0),
            )
            self._rt_high, self._rt_low = grow(self._rt_high, rows, 0), grow(self._rt_low, rows, 0)
            self.units, self.price_codes = grow(self.units, rows, 0), grow(self.price_codes, rows, 0)
        self._room_count += 1
        self._room_ids.add(room_type_id, slot)
        self._rt_high[slot] = np.uint64(room_type_id.int >> 64)
        self._rt_low[slot] = np.uint64(room_type_id.int & LOW)
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
            spread(name_code, [[vocabulary.setdefault(w, len(vocabulary)) for w in tokens(n)] for n in name_of]),
            spread(
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
        city_words, city_slots = spread(np.asarray(properties.city, dtype=np.int64), per_city)
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
