"""Use cases of the inventory context: calendars, and the hold/confirm/release moves of room-nights.

The booking core lives here. A hold is ONE conditional UPDATE over every night of
the stay, accepted only if it touched every night:

    UPDATE room_nights SET held = held + :units
    WHERE room_type_id = :rt AND night >= :check_in AND night < :check_out
      AND total - held - booked >= :units AND NOT closed
      AND (night <> :check_in OR (NOT closed_to_arrival AND min_stay <= :nights))
    RETURNING ...

On PostgreSQL (READ COMMITTED) a concurrent writer of the same row waits for the
first to commit and re-checks the WHERE clause against the new row, so two holds
can never both take the last unit; rows are locked in index order, so holds over
overlapping ranges do not deadlock. On SQLite the single writer serialises the
statement. The CHECK constraint `held + booked <= total` backs it all up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import orjson
from sqlalchemy.exc import IntegrityError

from staybook.catalog import facts as catalog
from staybook.inventory import repository
from staybook.inventory.events import InventoryChanged, NightSnapshot
from staybook.inventory.models import CalendarFeed
from staybook.inventory.pricing import assess_stay

# search/service.py reads these streamed listings through this module until it imports the repository.
from staybook.inventory.repository import NightListing as NightListing
from staybook.inventory.repository import night_count as night_count
from staybook.inventory.repository import night_listings as night_listings
from staybook.kernel.cache import Cache
from staybook.kernel.dates import check_stay, check_stay_at_property, stay_nights
from staybook.kernel.db import UnitOfWork
from staybook.kernel.errors import Conflict, InvalidInput, NotFound
from staybook.kernel.orm import utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.settings import Settings


@dataclass(frozen=True)
class Stay:
    """`units` rooms of one room type for the nights [check_in, check_out)."""

    room_type_id: uuid.UUID
    check_in: date
    check_out: date
    units: int = 1

    def __post_init__(self) -> None:
        stay_nights(self.check_in, self.check_out)
        if self.units < 1:
            raise InvalidInput("units must be at least 1", field="units")

    @property
    def night_count(self) -> int:
        return (self.check_out - self.check_in).days

    @property
    def nights(self) -> list[date]:
        return [self.check_in + timedelta(days=i) for i in range(self.night_count)]


class NightsUnavailable(Conflict):
    """Some nights of the stay cannot be held; `nights` names each with its reason."""

    code, title = "nights-unavailable", "Not available for these nights"

    def __init__(self, nights: list[dict]) -> None:
        listed = ", ".join(f"{n['night']} ({n['reason']})" for n in nights)
        super().__init__(f"Not available: {listed}", nights=nights)


class InventoryInconsistent(RuntimeError):
    """A release or confirm found fewer held/booked units than the booking says it has: a bug, never a race."""


def snapshot(row) -> NightSnapshot:
    return NightSnapshot(
        night=row.night,
        total=row.total,
        available=row.total - row.held - row.booked,
        price=row.price_amount,
        closed=row.closed,
        closed_to_arrival=row.closed_to_arrival,
        min_stay=row.min_stay,
    )


def changed_event(room_type_id: uuid.UUID, rows: Sequence, reason: str) -> InventoryChanged:
    ordered = sorted(rows, key=lambda r: r.night)
    return InventoryChanged(
        property_id=ordered[0].property_id,
        room_type_id=room_type_id,
        start=ordered[0].night,
        end=ordered[-1].night + timedelta(days=1),
        currency=ordered[0].currency,
        reason=reason,
        nights=[snapshot(r) for r in ordered],
    )


async def open_calendar(
    uow: UnitOfWork,
    *,
    property_id: uuid.UUID,
    room_type_id: uuid.UUID,
    total: int,
    price_amount: int,
    currency: str,
    start: date,
    days: int,
    reason: str = "created",
) -> int:
    """Creates room-night rows for [start, start + days) that do not exist yet; returns how many."""
    existing = await repository.existing_nights(uow.session, room_type_id, start, start + timedelta(days=days))
    rows = [
        {
            "room_type_id": room_type_id,
            "night": night,
            "property_id": property_id,
            "total": total,
            "held": 0,
            "booked": 0,
            "price_amount": price_amount,
            "currency": currency,
            "min_stay": 1,
            "closed": False,
            "closed_to_arrival": False,
        }
        for night in (start + timedelta(days=i) for i in range(days))
        if night not in existing
    ]
    if rows:
        await repository.insert_nights(uow.session, rows)
        uow.emit(
            InventoryChanged(
                property_id=property_id,
                room_type_id=room_type_id,
                start=rows[0]["night"],
                end=rows[-1]["night"] + timedelta(days=1),
                currency=currency,
                reason=reason,
                nights=[
                    NightSnapshot(
                        night=r["night"],
                        total=total,
                        available=total,
                        price=price_amount,
                        closed=False,
                        closed_to_arrival=False,
                        min_stay=1,
                    )
                    for r in rows
                ],
            )
        )
    return len(rows)


async def hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Holds `stay.units` on every night of the stay, or raises NightsUnavailable naming the nights.

    Must run inside the caller's unit of work (the booking row and its event commit with it);
    the exception makes the unit of work roll back, undoing any nights the statement did touch.
    """
    rows = await repository.hold_nights(uow, stay)
    if len(rows) != stay.night_count:
        touched = {row.night for row in rows}
        raise NightsUnavailable(await _explain_unavailable(uow, stay, touched))
    uow.emit(changed_event(stay.room_type_id, rows, "hold"))
    return [snapshot(row) for row in rows]


async def _explain_unavailable(uow: UnitOfWork, stay: Stay, touched: set[date]) -> list[dict]:
    rows = await repository.stay_nights(uow, stay)
    explained = []
    for night in stay.nights:
        if night in touched:
            continue
        row = rows.get(night)
        if row is None:
            reason = "not on sale"
        elif row.closed:
            reason = "closed"
        elif row.total - row.held - row.booked < stay.units:
            reason = "sold out"
        elif night == stay.check_in and row.closed_to_arrival:
            reason = "closed to arrival"
        elif night == stay.check_in and row.min_stay > stay.night_count:
            reason = f"minimum stay {row.min_stay} nights"
        else:
            reason = "changed concurrently"
        explained.append({"night": night.isoformat(), "reason": reason})
    return explained


async def _move(uow: UnitOfWork, stay: Stay, reason: str) -> list[NightSnapshot]:
    rows = await repository.move_nights(uow, stay, reason)
    if len(rows) != stay.night_count:
        raise InventoryInconsistent(
            f"{reason}: expected {stay.night_count} nights of {stay.room_type_id} from {stay.check_in}, "
            f"matched {len(rows)}"
        )
    uow.emit(changed_event(stay.room_type_id, rows, reason))
    return [snapshot(row) for row in rows]


async def release_hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Gives held units back (hold expired, payment failed)."""
    return await _move(uow, stay, "release")


async def confirm_hold(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Turns held units into booked units (payment captured)."""
    return await _move(uow, stay, "confirm")


async def release_booking(uow: UnitOfWork, stay: Stay) -> list[NightSnapshot]:
    """Gives booked units back (cancellation)."""
    return await _move(uow, stay, "cancel")


async def nights(session, room_type_id: uuid.UUID, start: date, end: date) -> list[NightSnapshot]:
    """The calendar of one room type over [start, end), nights without rows omitted."""
    return [snapshot(row) for row in await repository.calendar_rows(session, room_type_id, start, end)]


# ------------------------------------------------------------------ calendar changes by the host


class UnitsBelowCommitted(Conflict):
    """The new unit count is below what is already held + booked on some nights; `nights` names them."""

    code, title = "units-below-committed", "Fewer units than already sold"

    def __init__(self, units: int, nights: list[dict]) -> None:
        listed = ", ".join(n["night"] for n in nights[:20]) + (" ..." if len(nights) > 20 else "")
        super().__init__(f"{units} units is fewer than held + booked on: {listed}", nights=nights)


async def update_calendar(
    uow: UnitOfWork,
    room_type_id: uuid.UUID,
    start: date,
    end: date,
    *,
    price_amount: int | None = None,
    prices: dict[date, int] | None = None,
    units: int | None = None,
    closed: bool | None = None,
    min_stay: int | None = None,
    closed_to_arrival: bool | None = None,
    reason: str = "calendar",
) -> list[NightSnapshot]:
    """Sets the given fields on every open night in [start, end) with ONE UPDATE; returns the nights.

    `prices` (night -> amount, from pricing rules) becomes a CASE over the night. When new
    `units` would go below held + booked, the CHECK constraint refuses the statement; the
    savepoint keeps the caller's transaction usable and UnitsBelowCommitted names the nights.
    """
    values: dict = {}
    if not prices and price_amount is not None:
        values["price_amount"] = price_amount
    for name, value in (("total", units), ("closed", closed), ("min_stay", min_stay)):
        if value is not None:
            values[name] = value
    if closed_to_arrival is not None:
        values["closed_to_arrival"] = closed_to_arrival
    if not values and not prices:
        raise InvalidInput("Nothing to change: send price, units, closed, min_stay or closed_to_arrival", field="body")
    try:
        async with uow.session.begin_nested():
            rows = await repository.update_nights(uow.session, room_type_id, start, end, values, prices=prices)
    except IntegrityError as error:
        if units is None:
            raise
        raise UnitsBelowCommitted(units, await _overcommitted(uow, room_type_id, start, end, units)) from error
    if rows:
        uow.emit(changed_event(room_type_id, rows, reason))
    return [snapshot(row) for row in sorted(rows, key=lambda r: r.night)]


async def _overcommitted(uow: UnitOfWork, room_type_id: uuid.UUID, start: date, end: date, units: int) -> list[dict]:
    rows = await repository.nights_above(uow.session, room_type_id, start, end, units)
    return [{"night": r.night.isoformat(), "held": r.held, "booked": r.booked} for r in rows]


async def set_units(uow: UnitOfWork, room_type_id: uuid.UUID, *, start: date, units: int) -> list[NightSnapshot]:
    """Changes the room count of every night from `start` on (the room type's `units` changed)."""
    return await update_calendar(uow, room_type_id, start, date.max, units=units)


async def close_nights(uow: UnitOfWork, room_type_id: uuid.UUID, nights_to_close: Sequence[date]) -> int:
    """Closes the listed nights (an iCal import from another channel) in one UPDATE; returns how many existed."""
    if not nights_to_close:
        return 0
    rows = await repository.close_listed_nights(uow.session, room_type_id, nights_to_close)
    if rows:
        uow.emit(changed_event(room_type_id, rows, "calendar"))
    return len(rows)


# ------------------------------------------------------------------ signed calendar feeds


def feed_token(settings: Settings, room_type_id: uuid.UUID, version: int) -> str:
    """The token of a room type's iCal export URL: an HMAC of (room type, feed version) under the
    platform secret, so channel managers fetch a plain URL and a rotation revokes the old one."""
    message = f"calendar-feed:{room_type_id}:{version}".encode()
    digest = hmac.new(settings.secret_key.get_secret_value().encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


async def feed_version(session, room_type_id: uuid.UUID) -> int:
    """The room type's current feed version (0 before the first rotation)."""
    return await repository.feed_version(session, room_type_id)


async def rotate_feed(uow: UnitOfWork, room_type_id: uuid.UUID) -> int:
    """Bumps the feed version (every URL handed out before stops working); returns the new version."""
    feed = await uow.session.get(CalendarFeed, room_type_id, with_for_update=True)
    if feed is None:
        feed = CalendarFeed(room_type_id=room_type_id, version=0, rotated_at=utcnow())
        uow.session.add(feed)
    feed.version += 1
    feed.rotated_at = utcnow()
    await uow.session.flush()
    return feed.version


async def check_feed_token(session, settings: Settings, room_type_id: uuid.UUID, token: str) -> None:
    """NotFound unless `token` is the room type's current feed token: a wrong or revoked URL looks
    like no calendar at all, so tokens cannot be probed against known room type ids."""
    expected = feed_token(settings, room_type_id, await feed_version(session, room_type_id))
    if not hmac.compare_digest(expected.encode(), token.encode()):
        raise NotFound(f"No calendar feed for room type {room_type_id} with this token")


def availability_namespace(property_id: uuid.UUID | str) -> str:
    return f"availability:{property_id}"


async def invalidate_availability(runtime: Runtime, property_id: uuid.UUID | str) -> None:
    """Makes every cached availability answer of the property stale (bumps its namespace version)."""
    await forget_availability(runtime.cache, property_id)


async def forget_availability(cache: Cache, property_id: uuid.UUID | str) -> None:
    await cache.bump_namespace(availability_namespace(property_id))


async def property_availability(
    runtime: Runtime, property_id: uuid.UUID, check_in: date, check_out: date, guests: int
) -> bytes:
    """Per active room type: available units, nightly prices, total, bookable and why not, as JSON bytes.

    Answers are cached per property under a namespace version bumped on every inventory change
    of the property (see `invalidate_availability` and the inventory.changed replica subscription).
    A hit is one cache round trip (version and answer together) and no database work or JSON
    encoding: the cached bytes are the response body, behind the property's time zone, which the
    date checks need on every call.
    """
    settings = runtime.settings.inventory
    # Before the cache or the database: the answer (and its cache value) grows with the nights.
    check_stay(check_in, check_out, max_nights=settings.max_stay_nights, horizon_days=settings.horizon_days)
    if guests < 1:
        raise InvalidInput("guests must be at least 1", field="query.guests")

    async def load() -> bytes:
        # Two prepared reads, no ORM session (ADR 0012): a miss is most of an availability call's
        # cost, and random stays miss. No common snapshot is needed: a change in between bumps the
        # namespace, so this answer is never served from the cache.
        async with runtime.db.transaction(autocommit=True) as uow:
            room_types = await catalog.property_room_types_in(uow, property_id)
            rows = await repository.property_calendar_rows(uow, property_id, check_in, check_out)
        answer = availability_answer(room_types, rows, property_id, check_in, check_out, guests)
        return answer["timezone"].encode() + b"\n" + orjson.dumps(answer)

    if settings.availability_cache_seconds:
        cached = await runtime.cache.get_or_load_versioned(
            availability_namespace(property_id),
            f"{check_in.isoformat()}:{check_out.isoformat()}:{guests}",
            settings.availability_cache_seconds,
            load,
            metric="availability",
        )
    else:
        cached = await load()
    timezone, _, body = cached.partition(b"\n")
    # Re-checked on every call, hit or miss: "today" moves while an answer sits in the cache.
    check_stay_at_property(
        check_in,
        check_out,
        today=catalog.today_in(timezone.decode()),
        max_nights=settings.max_stay_nights,
    )
    return body


def availability_answer(room_types, rows, property_id, check_in: date, check_out: date, guests: int) -> dict:
    by_room_type: dict[uuid.UUID, list[NightSnapshot]] = {}
    for row in rows:
        by_room_type.setdefault(row.room_type_id, []).append(snapshot(row))
    offers = []
    timezone = "UTC"
    for summary in room_types:
        timezone = summary.timezone
        assessment = assess_stay(
            by_room_type.get(summary.room_type_id, []),
            check_in=check_in,
            check_out=check_out,
            guests=guests,
            max_guests=summary.max_guests,
            on_sale=summary.on_sale,
        )
        offers.append(
            {
                "room_type_id": str(summary.room_type_id),
                "name": summary.room_type_name,
                "max_guests": summary.max_guests,
                "available_units": assessment.available_units,
                "nightly_prices": [
                    {"night": night.isoformat(), "price": {"amount": price, "currency": summary.currency}}
                    for night, price in assessment.prices
                ],
                "total": {"amount": assessment.total_amount, "currency": summary.currency},
                "bookable": assessment.bookable,
                "reasons": assessment.reasons,
            }
        )
    return {
        "property_id": str(property_id),
        "timezone": timezone,
        "check_in": check_in.isoformat(),
        "check_out": check_out.isoformat(),
        "guests": guests,
        "room_types": offers,
    }
