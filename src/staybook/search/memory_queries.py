"""The in-process index's reads: candidates by place, text and availability, the answer page
(filters, sort, facets, conversion) and suggestions; mixed into `MemoryIndex`, which holds the columns."""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from collections.abc import Iterable
from datetime import date
from itertools import islice

import numpy as np

from staybook.search.columns import (
    AMENITY_BITS,
    AMENITY_BYTES,
    BITS_OF_BYTE,
    BYTE_BINS,
    EMPTY,
    FREE_MASK,
    NO_STAY,
    RESTRICTED,
    UNPRICED,
    haversine_m,
    histogram,
    one_edit,
    uuids,
)
from staybook.search.index import (
    Matches,
    Ranker,
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


class IndexQueries:
    """Reads over `MemoryIndex`'s columns (the attributes are set by `MemoryIndex.__init__`)."""

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
            slots = np.unique(np.concatenate(postings)) if postings else EMPTY
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
            return EMPTY
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
            elif len(word) >= 5 and abs(len(candidate) - len(word)) <= 1 and one_edit(word, candidate):
                near.append(candidate)
        return near

    def available_room_types(self, query: SearchQuery, slots: np.ndarray):
        """For each candidate property, the cheapest room type that fits the stay: (owner index, room type
        slot, stay total in the property's currency) — one row per property that has one."""
        day0 = self._day(query.check_in)
        day1 = day0 + query.nights
        if slots.size == 0 or day0 < 0 or day1 > self.horizon_days:
            return EMPTY, EMPTY, EMPTY
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
            return EMPTY, EMPTY, EMPTY
        # Cheapest per property: totals laid back on the grid (no stay = the largest int64), then the
        # first column at each row's minimum, i.e. the lowest room type slot among equal totals.
        totals = np.full(room_types.size, NO_STAY, dtype=np.int64)
        totals[at] = self._palette[self.price_codes[rows, day0:day1]].sum(axis=1) * rooms
        best = np.full(grid.shape, NO_STAY, dtype=np.int64)
        best[valid] = totals
        column = best.argmin(axis=1)
        lowest = best[np.arange(slots.size), column]
        owner = np.flatnonzero(lowest != NO_STAY)
        column = column[owner]
        return owner, grid[owner, column].astype(np.int64), lowest[owner]

    def converted(self, slots: np.ndarray, totals: np.ndarray, currency: str) -> np.ndarray:
        """Stay totals (property currencies) in the requested currency, exact integer floor.

        A property priced in a currency the rates table lacks cannot be priced in another one:
        its total is UNPRICED (totals are never negative), and `answer` leaves it out.
        """
        codes = self._currency[slots]
        present = np.flatnonzero(np.bincount(codes)) if codes.size else EMPTY
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
            price_histogram=histogram(in_currency),
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
                uuids(self._id_high[slots], self._id_low[slots]),
                names,
                [cities[c] for c in self._city[slots].tolist()],
                [countries[c] for c in self._country[slots].tolist()],
                self._lat[slots].tolist(),
                self._lon[slots].tolist(),
                [None] * count if distances is None else (distances / 1000).tolist(),
                [None if r < 0 else r for r in self._rating[slots].tolist()],
                [thumbnails.get(slot) for slot in slots.tolist()] if thumbnails else [None] * count,
                uuids(self._rt_high[room_types], self._rt_low[room_types]),
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
        raw = self._amenities[slots].view(np.uint8).reshape(-1, 8)[:, :AMENITY_BYTES]
        per_byte = np.bincount((raw + BYTE_BINS).ravel(), minlength=256 * AMENITY_BYTES)
        counts = (per_byte.reshape(AMENITY_BYTES, 256) @ BITS_OF_BYTE).ravel().tolist()
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
