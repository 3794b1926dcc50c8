"""What personalisation knows of each property: place, type, amenities, rating, text.

Loaded from the catalog's listings when a process starts and kept current from
catalog events, in every process (signals are checked against it, the
aggregator and the model join it). About 300 bytes per property.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from staybook.search.query import fold


@dataclass(frozen=True, slots=True)
class PropertyFact:
    property_id: uuid.UUID
    name: str
    city: str
    country: str
    latitude: float
    longitude: float
    property_type: str
    amenities: tuple[str, ...]
    rating_tenths: int | None
    description: str
    active: bool

    @property
    def city_key(self) -> str:
        return city_key(self.city)

    @property
    def text(self) -> str:
        return f"{self.name} {self.property_type} {self.city} {self.description}"


@functools.lru_cache(maxsize=65_536)  # read per candidate on every recommendation; cities repeat
def city_key(city: str) -> str:
    """Cities are matched as search matches them: without case, accents or extra blanks."""
    return fold(city)


class PropertyFacts:
    def __init__(self, facts: Iterable[PropertyFact] = ()) -> None:
        self._by_id: dict[uuid.UUID, PropertyFact] = {}
        self._by_hex: dict[str, PropertyFact] = {}  # signals and Redis keys name stays by hex id
        self._by_city: dict[str, set[uuid.UUID]] = {}
        self.version = 0  # bumped on every change: content vectors are rebuilt when it moved
        self.put(facts)

    def __len__(self) -> int:
        return len(self._by_id)

    def exists(self, property_id: uuid.UUID) -> bool:
        return property_id in self._by_id

    def get(self, property_id: uuid.UUID) -> PropertyFact | None:
        return self._by_id.get(property_id)

    def get_hex(self, property_hex: str) -> PropertyFact | None:
        return self._by_hex.get(property_hex)

    def all(self) -> list[PropertyFact]:
        return list(self._by_id.values())

    def in_city(self, city: str) -> list[PropertyFact]:
        return [self._by_id[i] for i in self._by_city.get(city_key(city), ())]

    def put(self, facts: Iterable[PropertyFact]) -> None:
        for fact in facts:
            previous = self._by_id.get(fact.property_id)
            if previous is not None:
                self._by_city.get(previous.city_key, set()).discard(fact.property_id)
            self._by_id[fact.property_id] = fact
            self._by_hex[fact.property_id.hex] = fact
            self._by_city.setdefault(fact.city_key, set()).add(fact.property_id)
            self.version += 1

    def remove(self, property_id: uuid.UUID) -> None:
        fact = self._by_id.pop(property_id, None)
        self._by_hex.pop(property_id.hex, None)
        if fact is not None:
            self._by_city.get(fact.city_key, set()).discard(property_id)
            self.version += 1
