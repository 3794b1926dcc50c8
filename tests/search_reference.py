"""A plain-Python answer to search queries, written from the rules, not from the index code.

Both index backends must return the same result sets as this reference on small data.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from staybook.search.index import NightState, PropertyRecord, RoomTypeRecord
from staybook.search.query import AMENITIES, SearchQuery, fold, haversine_km
from staybook.search.rates import CurrencyRates

CITIES = [
    ("Berlin", "DE", 52.52, 13.405),
    ("Paris", "FR", 48.8566, 2.3522),
    ("Suva", "FJ", -18.1416, 178.4419),
    ("Taveuni", "FJ", -16.85, 179.99),
    ("Longyearbyen", "SJ", 78.2232, 15.6267),
]
ORIGIN = date(2030, 1, 1)
HORIZON = 40


@dataclass
class Dataset:
    properties: list[PropertyRecord] = field(default_factory=list)
    room_types: list[RoomTypeRecord] = field(default_factory=list)
    nights: dict[uuid.UUID, list[NightState]] = field(default_factory=dict)


def make_dataset(seed: int, size: int = 40) -> Dataset:
    rng = random.Random(seed)
    data = Dataset()
    for n in range(size):
        city, country, lat, lon = rng.choice(CITIES)
        lon = lon + rng.uniform(-0.1, 0.1)
        lon = lon - 360 if lon > 180 else lon
        record = PropertyRecord(
            property_id=uuid.UUID(int=rng.getrandbits(128)),
            name=f"{rng.choice(['Grand', 'Little', 'Blue'])} {rng.choice(['Hotel', 'Inn', 'Lodge'])} {n}",
            city=city,
            country=country,
            latitude=lat + rng.uniform(-0.1, 0.1),
            longitude=lon,
            currency=rng.choice(["EUR", "EUR", "USD", "JPY"]),
            amenities=tuple(rng.sample(AMENITIES[:6], rng.randint(0, 3))),
            property_type=rng.choice(["hotel", "apartment"]),
            rating_tenths=rng.choice([None, 30, 41, 45, 45, 50]),
            active=rng.random() > 0.1,
        )
        data.properties.append(record)
        for _ in range(rng.randint(1, 3)):
            room_type = RoomTypeRecord(
                uuid.UUID(int=rng.getrandbits(128)),
                record.property_id,
                rng.choice(["Single", "Double", "Suite"]),
                rng.randint(1, 4),
                active=rng.random() > 0.1,
            )
            data.room_types.append(room_type)
            data.nights[room_type.room_type_id] = [
                NightState(
                    night=ORIGIN + timedelta(days=d),
                    available=rng.choice([0, 1, 1, 2, 3, 150]),
                    price=rng.choice([5000, 7500, 9900, 12000]) * (100 if record.currency == "JPY" else 1),
                    closed=rng.random() < 0.05,
                    closed_to_arrival=rng.random() < 0.05,
                    min_stay=rng.choice([1, 1, 1, 2, 3]),
                )
                for d in range(HORIZON)
                if rng.random() > 0.03
            ]
    return data


def reference_answer(data: Dataset, query: SearchQuery, rates: CurrencyRates) -> dict[uuid.UUID, tuple[uuid.UUID, int]]:
    """property id -> (cheapest fitting room type, stay total in the requested currency)."""
    answer = {}
    for prop in data.properties:
        if not prop.active or not _place_matches(prop, query):
            continue
        if query.property_type and prop.property_type != query.property_type:
            continue
        if query.min_rating is not None and (prop.rating_tenths is None or prop.rating_tenths < query.min_rating):
            continue
        if not set(query.amenities) <= set(prop.amenities):
            continue
        best = None
        for room_type in data.room_types:
            if room_type.property_id != prop.property_id or not room_type.active:
                continue
            if room_type.max_guests * query.rooms < query.guests:
                continue
            by_night = {n.night: n for n in data.nights[room_type.room_type_id]}
            stay = [by_night.get(query.check_in + timedelta(days=i)) for i in range(query.nights)]
            if any(n is None or n.closed or n.available < query.rooms for n in stay):
                continue
            first = stay[0]
            if first.closed_to_arrival or first.min_stay > query.nights:
                continue
            total = sum(n.price for n in stay) * query.rooms
            if best is None or (total, _slot_order(data, room_type)) < (best[1], _slot_order(data, best[0])):
                best = (room_type, total)
        if best is None:
            continue
        converted = rates.convert(best[1], prop.currency, query.currency)
        if query.price_min is not None and converted < query.price_min:
            continue
        if query.price_max is not None and converted > query.price_max:
            continue
        answer[prop.property_id] = (best[0].room_type_id, converted)
    return answer


def _slot_order(data: Dataset, room_type: RoomTypeRecord) -> int:
    return data.room_types.index(room_type)


def _place_matches(prop: PropertyRecord, query: SearchQuery) -> bool:
    if query.circle is not None:
        c = query.circle
        return round(haversine_km(c.lat, c.lon, prop.latitude, prop.longitude) * 1000) <= int(c.radius_km * 1000)
    if query.bbox is not None:
        return query.bbox.contains(prop.latitude, prop.longitude)
    if query.city is not None:
        return fold(prop.city) == query.city and (query.country is None or prop.country == query.country)
    return True
