"""The in-process index's columns: geo grids, id maps, text and posting lists, property and
room-type columns, and the numpy helpers the index builds on (see memory.py for the layout)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from staybook.search.query import AMENITIES, EARTH_RADIUS_KM, half_central_angle

FREE_MASK = np.uint8(0x7F)
RESTRICTED = np.uint8(0x80)
AMENITY_BITS = {name: np.uint64(1 << bit) for bit, name in enumerate(AMENITIES)}
HISTOGRAM_BUCKETS = 10
AMENITY_BYTES = -(-len(AMENITIES) // 8)  # amenity bits live in the first bytes of the (little-endian) bitset
if np.little_endian is False:  # pragma: no cover (the byte view below assumes little-endian words)
    raise ImportError("staybook.search.memory needs a little-endian machine")
BYTE_BINS = (np.arange(AMENITY_BYTES, dtype=np.int64) * 256)[None, :]
BITS_OF_BYTE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)
# A stay total that could not be converted into the asked currency (no rate for the property's own).
UNPRICED = -1
EMPTY = np.zeros(0, dtype=np.int64)
NO_STAY = np.iinfo(np.int64).max
LOW = 2**64 - 1


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
        self.cells[new] = np.append(self.cells.get(new, EMPTY), slot)

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
    low = np.fromiter((n & LOW for n in numbers), dtype=np.uint64, count=len(numbers))
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
            self.spans = grow(self.spans, max(rows, self.spans.shape[0] * 2), 0)

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
        base = self.members[self.offsets[row] : self.offsets[row + 1]] if row is not None else EMPTY
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
    """Great-circle distance from one point to arrays of points, in whole metres (int64)."""
    return np.rint(2 * EARTH_RADIUS_KM * 1000 * half_central_angle(lat, lon, lats, lons)).astype(np.int64)


def grow(array: np.ndarray, rows: int, fill) -> np.ndarray:
    grown = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


def one_edit(a: str, b: str) -> bool:
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


def uuids(high: np.ndarray, low: np.ndarray) -> list[uuid.UUID]:
    return [_uuid_from_int((h << 64) | lo) for h, lo in zip(high.tolist(), low.tolist(), strict=True)]


def histogram(totals: np.ndarray) -> list[dict[str, int]]:
    """Ten equal integer-width buckets between the cheapest and dearest stay; empty buckets dropped."""
    if totals.size == 0:
        return []
    low, high = int(totals.min()), int(totals.max())
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BUCKETS))
    counts = np.bincount(((totals - low) // width).astype(np.int64), minlength=HISTOGRAM_BUCKETS)
    return [
        {"min": low + i * width, "max": low + (i + 1) * width - 1, "count": int(c)} for i, c in enumerate(counts) if c
    ]


def spread(codes: np.ndarray, items_of_code: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """For rows carrying `codes`, the pairs (item, row) for every item of each row's code."""
    lengths = np.fromiter(map(len, items_of_code), dtype=np.int64, count=len(items_of_code))
    flat = np.fromiter((i for items in items_of_code for i in items), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    per_row = lengths[codes]
    rows = np.repeat(np.arange(codes.size, dtype=np.int64), per_row)
    first = np.repeat(starts[codes], per_row)
    within = np.arange(rows.size, dtype=np.int64) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    return flat[first + within], rows
