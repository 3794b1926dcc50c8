"""What the pages show, assembled from the other contexts' services (never their models).

Pure helpers (calendar grids, refund previews, the search query of a results URL) are kept apart
from the calls, so the rules are unit-tested without I/O.
"""

from __future__ import annotations

import calendar
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from staybook.booking import policy
from staybook.booking import service as booking
from staybook.catalog import facts as catalog_facts
from staybook.catalog import service as catalog
from staybook.catalog.schemas import PhotoOut, PropertyOut
from staybook.inventory import service as inventory
from staybook.inventory.events import NightSnapshot
from staybook.kernel.dates import stay_fields_in
from staybook.kernel.errors import InvalidInput
from staybook.kernel.idempotency import IdempotencyStore, answer_once, fingerprint
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import Principal
from staybook.search import service as search
from staybook.search.api import SearchParams, search_query
from staybook.search.service import SearchDeps
from staybook.web.schemas import to_minor_units

# The results page's own parameters beside the search API's: prices in major units of the currency.
RESULT_PARAMS = ("city", "check_in", "check_out", "guests", "min_price", "max_price", "amenities",
                 "property_type", "min_rating", "sort", "cursor", "currency")  # fmt: skip
SORT_CHOICES = ("relevance", "price", "-price", "rating")
DEFAULT_STAY_OFFSET_DAYS = 30
DEFAULT_STAY_NIGHTS = 3


def default_stay(today: date) -> tuple[date, date]:
    check_in = today + timedelta(days=DEFAULT_STAY_OFFSET_DAYS)
    return check_in, check_in + timedelta(days=DEFAULT_STAY_NIGHTS)


def search_params(query: QueryParams, default_currency: str, limit: int) -> SearchParams:
    """The search API's parameters for a results URL (which keeps prices in major units)."""
    currency = (query.get("currency") or default_currency).upper()[:3]
    raw: dict[str, Any] = {"limit": limit, "currency": currency}
    for name in ("city", "check_in", "check_out", "guests", "property_type", "min_rating", "sort", "cursor"):
        value = query.get(name)
        if value:
            raw[name] = value
    for name, target in (("min_price", "price_min"), ("max_price", "price_max")):
        value = query.get(name)
        if value:
            raw[target] = to_minor_units(value, currency, f"query.{name}")
    amenities = [value for value in query.getlist("amenities") if value]
    if amenities:
        raw["amenities"] = amenities
    try:
        return SearchParams.model_validate(raw)
    except ValueError as error:
        errors = [
            {"field": "query." + ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_context=False)  # type: ignore[attr-defined]
        ]
        raise InvalidInput("Some search fields are not valid.", errors=errors) from None


async def results(searches: SearchDeps, params: SearchParams) -> dict[str, Any]:
    return await search.search(searches, search_query(searches, params), params.cursor)


async def suggestions(searches: SearchDeps, prefix: str) -> list[dict[str, Any]]:
    prefix = prefix.strip()[:100]
    return await search.suggest(searches, prefix, 8) if prefix else []


async def availability(runtime: Runtime, property_id: uuid.UUID, check_in: date, check_out: date, guests: int) -> dict:
    with stay_fields_in("query"):
        return orjson.loads(await inventory.property_availability(runtime, property_id, check_in, check_out, guests))


@dataclass(frozen=True)
class CalendarDay:
    day: date | None
    state: str = "blank"  # available | few | sold_out | closed | past | outside | blank
    price: int | None = None
    available: int = 0
    total: int = 0
    booked: int = 0
    min_stay: int = 1
    closed_to_arrival: bool = False


# The months a calendar grid may show around today: the calendar has no nights outside them, and
# the grid's previous/next links must stay inside the dates Python can represent (years 1-9999).
MONTHS_BACK_DAYS, MONTHS_AHEAD_DAYS = 366, 1100


def month_of(text: str | None, fallback: date, today: date) -> date:
    """The first of the month `text` (YYYY-MM) names, else of `fallback`, else of `today`: the first
    of them within the months a grid may show."""
    earliest, latest = today - timedelta(days=MONTHS_BACK_DAYS), today + timedelta(days=MONTHS_AHEAD_DAYS)
    candidates = [fallback]
    if text:
        try:
            year, month = (int(part) for part in text.split("-")[:2])
            candidates.insert(0, date(year, month, 1))
        except ValueError:
            pass
    return next((day for day in candidates if earliest <= day <= latest), today).replace(day=1)


def month_grid(first: date, nights: list, today: date) -> list[list[CalendarDay]]:
    """Weeks (Monday first) of the month starting `first`, each day with its state from `nights`."""
    by_night = {n.night: n for n in nights}
    weeks = []
    for week in calendar.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month):
        row = []
        for day in week:
            if day.month != first.month:
                row.append(CalendarDay(None))
                continue
            night = by_night.get(day)
            if day < today:
                row.append(CalendarDay(day, "past"))
            elif night is None:
                row.append(CalendarDay(day, "outside"))
            else:
                state = "closed" if night.closed else "sold_out" if night.available <= 0 else "available"
                row.append(
                    CalendarDay(
                        day,
                        state,
                        night.price,
                        night.available,
                        night.total,
                        max(0, night.total - night.available),
                        night.min_stay,
                        night.closed_to_arrival,
                    )
                )
        weeks.append(row)
    return weeks


def next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def previous_month(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


async def room_type_month(runtime: Runtime, room_type_id: uuid.UUID, first: date) -> list:
    async with runtime.db.session() as session:
        return await inventory.nights(session, room_type_id, first, next_month(first))


# --------------------------------------------------------------------------- what guests' pages cache
#
# A guest's property and checkout pages read the same catalog and calendar data on every view.
# It is cached beside the availability answers (ADR 0009): under the property's availability
# namespace, for as long as they are, so every change that makes the page's offers stale (calendar,
# holds, room types, archive) makes its listing and calendar stale too; the catalog's own changes
# (property edits, a photo made ready) bump it through `web.bootstrap`. A hit is one cache round trip
# instead of a database session per read.

SHOWN_PHOTOS = 6  # the gallery's photos; the cached value stays small however many a property has


@dataclass(frozen=True)
class Listing:
    """The property with its active room types, and its first ready photos."""

    prop: PropertyOut
    photos: list[PhotoOut]


async def _cached(runtime: Runtime, property_id: uuid.UUID, key: str, load) -> bytes:
    seconds = runtime.settings.inventory.availability_cache_seconds
    if not seconds:
        return await load()
    namespace = inventory.availability_namespace(property_id)
    return await runtime.cache.get_or_load_versioned(namespace, key, seconds, load, metric="web")


async def listing(runtime: Runtime, property_id: uuid.UUID) -> Listing:
    """The property as a guest's page shows it (NotFound for an unknown one, which is not cached)."""

    async def load() -> bytes:
        prop = await catalog.get_property(runtime, property_id)
        ready = [p for p in await catalog.list_photos(runtime, property_id) if p.status == "ready"]
        return orjson.dumps({"property": prop.model_dump(mode="json"),
                             "photos": [p.model_dump(mode="json") for p in ready[:SHOWN_PHOTOS]]})  # fmt: skip

    found = orjson.loads(await _cached(runtime, property_id, "web.listing", load))
    return Listing(PropertyOut.model_validate(found["property"]), [PhotoOut.model_validate(p) for p in found["photos"]])


async def guest_month(runtime: Runtime, property_id: uuid.UUID, room_type_id: uuid.UUID, first: date) -> list:
    """The nights of a month of one room type, as the guest's calendar shows them."""

    async def load() -> bytes:
        nights = await room_type_month(runtime, room_type_id, first)
        return orjson.dumps([n.model_dump(mode="json") for n in nights])

    key = f"web.month:{room_type_id}:{first.isoformat()}"
    return [NightSnapshot.model_validate(n) for n in orjson.loads(await _cached(runtime, property_id, key, load))]


# A room type never moves to another property: the checkout page finds the property of the
# room type it is given without a database read once it has seen it.
ROOM_TYPE_PROPERTIES = 50_000
_property_of: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()


async def property_of_room_type(runtime: Runtime, room_type_id: uuid.UUID) -> uuid.UUID:
    found = _property_of.get(room_type_id)
    if found is None:
        found = (await catalog.get_room_type(runtime, room_type_id)).property_id
        _property_of[room_type_id] = found
        if len(_property_of) > ROOM_TYPE_PROPERTIES:
            _property_of.popitem(last=False)
    return found


def refund_preview(view: dict, now: datetime | None = None) -> int:
    """What cancelling now would refund the guest (the same rule the booking context applies)."""
    prop = view["property"]
    return policy.refund_amount(
        view["cancellation_policy"],
        [night["amount"] for night in view["price_breakdown"]],
        booked_at=datetime.fromisoformat(view["created_at"]),
        starts_at=policy.check_in_moment(
            date.fromisoformat(view["check_in"]), prop.get("check_in_time", "15:00"), prop.get("timezone", "UTC")
        ),
        cancelled_at=now or datetime.now(UTC),
    )


def hold_seconds_left(view: dict, now: datetime | None = None) -> int:
    if view["status"] != "held" or not view.get("expires_at"):
        return 0
    left = datetime.fromisoformat(view["expires_at"]) - (now or datetime.now(UTC))
    return max(0, int(left.total_seconds()))


async def once(runtime: Runtime, principal: Principal, key: str, path: str, body: dict, work) -> tuple[int, Any, bool]:
    """A page's change under the Idempotency-Key its form carries: pressing submit twice (or
    reloading the POST) gives the first answer, not a second booking or charge."""
    store = IdempotencyStore(runtime.db, runtime.settings.booking.idempotency_ttl_seconds)
    claim = store.claim(principal.user_id, key, fingerprint("POST", path, body))
    return await answer_once(claim, work, instance=path)


async def guest_bookings(runtime: Runtime, principal: Principal) -> tuple[list[dict], list[dict]]:
    """(upcoming, past) bookings of the guest, newest first; held and failed ones are left out."""
    page = await booking.list_for_guest(runtime, principal, cursor=None, limit=100)
    today = datetime.now(UTC).date()
    shown = [b for b in page["items"] if b["status"] in ("confirmed", "cancelled")]
    upcoming = [b for b in shown if date.fromisoformat(b["check_out"]) > today and b["status"] == "confirmed"]
    past = [b for b in shown if b not in upcoming]
    return upcoming, past


def property_today(timezone: str) -> date:
    return catalog_facts.today_in(timezone)


async def invalidate_property(runtime: Runtime, property_id: uuid.UUID) -> None:
    """Availability answers of the property are stale after a listing change (as the catalog API does)."""
    await inventory.invalidate_availability(runtime, property_id)


DASHBOARD_DAYS = 30


def occupancy(nights: list) -> tuple[int, int]:
    """(room-nights taken, room-nights on sale) over `nights` of any room types; closed nights are not on sale."""
    on_sale = [n for n in nights if not n.closed]
    return sum(max(0, n.total - n.available) for n in on_sale), sum(n.total for n in on_sale)


def revenue_by_currency(bookings: list[dict], start: date, end: date) -> dict[str, int]:
    """Confirmed bookings' nightly amounts that fall in [start, end), per currency (never mixed)."""
    totals: dict[str, int] = {}
    for view in bookings:
        if view["status"] != "confirmed":
            continue
        currency = view["total"]["currency"]
        for night in view["price_breakdown"]:
            if start <= date.fromisoformat(night["night"]) < end:
                totals[currency] = totals.get(currency, 0) + night["amount"] * view["units"]
    return totals


async def host_dashboard(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    """Today's and the coming week's arrivals and departures, and 30 days of occupancy and revenue."""
    today = datetime.now(UTC).date()
    end = today + timedelta(days=DASHBOARD_DAYS)
    page = await booking.list_for_host(runtime, principal, property_id=None, start=today, end=end, cursor=None,
                                       limit=100)  # fmt: skip
    confirmed = [b for b in page["items"] if b["status"] == "confirmed"]
    week = today + timedelta(days=7)
    properties = (await catalog.host_properties(runtime, principal, cursor=None, limit=200)).items
    taken = offered = 0
    # One session for every read: on SQLite a second one opened inside it would wait on its lock.
    async with runtime.db.session() as session:
        for prop in properties:
            if prop.status != "active":
                continue
            for room_type in await catalog_facts.property_room_types(session, prop.id):
                nights = await inventory.nights(session, room_type.room_type_id, today, end)
                night_taken, night_offered = occupancy(nights)
                taken, offered = taken + night_taken, offered + night_offered
    return {
        "today": today,
        "arrivals_today": [b for b in confirmed if date.fromisoformat(b["check_in"]) == today],
        "departures_today": [b for b in confirmed if date.fromisoformat(b["check_out"]) == today],
        "arrivals_soon": [b for b in confirmed if today < date.fromisoformat(b["check_in"]) <= week],
        "occupancy_percent": round(100 * taken / offered) if offered else 0,
        "room_nights": (taken, offered),
        "revenue": revenue_by_currency(confirmed, today, end),
        "properties": properties,
        "days": DASHBOARD_DAYS,
    }
