"""Use cases of the catalog context: commands in, events out.

Hosts own properties (`Property.host_id` is the identity user id); a property's
room types and photos are changed only by its host or an admin. Creating a room
type opens its inventory calendar in the same unit of work, so a room type never
exists without nights to sell.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import orjson
import structlog
from sqlalchemy import and_, column, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from staybook.catalog.events import (
    PhotoUploaded,
    PropertyArchived,
    PropertyCreated,
    PropertyUpdated,
    RoomTypeArchived,
    RoomTypeCreated,
    RoomTypeUpdated,
)
from staybook.catalog.media import (
    PUBLIC_MEDIA_PREFIX,
    RENDER_ERRORS,
    MediaStore,
    inspect_image,
    media_store,
    media_url,
    render_variants,
)
from staybook.catalog.models import Photo, Property, RoomType
from staybook.catalog.schemas import (
    PhotoOut,
    PhotoVariant,
    PropertyCreate,
    PropertyOut,
    PropertyPage,
    PropertyUpdate,
    RoomTypeCreate,
    RoomTypeOut,
    RoomTypeUpdate,
)
from staybook.inventory import service as inventory
from staybook.kernel.db import Sql, UnitOfWork
from staybook.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from staybook.kernel.orm import new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.schemas import Money
from staybook.kernel.security import Principal
from staybook.kernel.settings import Settings

log = structlog.get_logger("staybook.catalog")


# ------------------------------------------------------------------ what other contexts read


@dataclass(frozen=True)
class RoomTypeSummary:
    """A room type with the property facts booking and inventory need, without importing catalog models."""

    room_type_id: uuid.UUID
    room_type_name: str
    max_guests: int
    units: int
    base_price_amount: int
    room_type_status: str
    property_id: uuid.UUID
    property_name: str
    host_id: uuid.UUID
    address: str
    city: str
    country: str
    timezone: str
    currency: str
    check_in_time: str
    check_out_time: str
    cancellation_policy: str
    property_status: str
    latitude: float = 0.0

    @property
    def on_sale(self) -> bool:
        return self.room_type_status == "active" and self.property_status == "active"

    def today(self) -> date:
        """Today's date where the property is (stays are in the property's local dates)."""
        return today_in(self.timezone)


def today_in(timezone: str, now: datetime | None = None) -> date:
    """The calendar date at a place at `now` (default: this instant); stays are in local dates.

    Every UTC offset in use and every transition between them falls on a quarter hour of UTC, so
    the local date cannot change inside a UTC quarter hour: it is computed once per zone and quarter
    (the availability hot path asks on every request).
    """
    return _local_date(timezone, int((now or datetime.now(UTC)).timestamp()) // 900)


@lru_cache(maxsize=2048)
def _local_date(timezone: str, quarter_hour: int) -> date:
    return datetime.fromtimestamp(quarter_hour * 900, UTC).astimezone(ZoneInfo(timezone)).date()


def _summary(room_type: RoomType, prop: Property) -> RoomTypeSummary:
    return RoomTypeSummary(
        room_type_id=room_type.id,
        room_type_name=room_type.name,
        max_guests=room_type.max_guests,
        units=room_type.units,
        base_price_amount=room_type.base_price_amount,
        room_type_status=room_type.status,
        property_id=prop.id,
        property_name=prop.name,
        host_id=prop.host_id,
        address=prop.address,
        city=prop.city,
        country=prop.country,
        timezone=prop.timezone,
        currency=prop.currency,
        check_in_time=prop.check_in_time,
        check_out_time=prop.check_out_time,
        cancellation_policy=prop.cancellation_policy,
        property_status=prop.status,
        latitude=prop.latitude,
    )


async def room_type_summary(session: AsyncSession, room_type_id: uuid.UUID) -> RoomTypeSummary:
    """The room type and its property in one query; NotFound when the room type does not exist."""
    row = (
        await session.execute(
            select(RoomType, Property)
            .join(Property, Property.id == RoomType.property_id)
            .where(RoomType.id == room_type_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"No room type {room_type_id}")
    return _summary(*row)


_RT, _P = RoomType.__table__.c, Property.__table__.c
# RoomTypeSummary's fields and where they come from.
_SUMMARY_COLUMNS = {
    "room_type_id": ("rt", _RT.id),
    "room_type_name": ("rt", _RT.name),
    "max_guests": ("rt", _RT.max_guests),
    "units": ("rt", _RT.units),
    "base_price_amount": ("rt", _RT.base_price_amount),
    "room_type_status": ("rt", _RT.status),
    "property_id": ("p", _P.id),
    "property_name": ("p", _P.name),
    "host_id": ("p", _P.host_id),
    "address": ("p", _P.address),
    "city": ("p", _P.city),
    "country": ("p", _P.country),
    "timezone": ("p", _P.timezone),
    "currency": ("p", _P.currency),
    "check_in_time": ("p", _P.check_in_time),
    "check_out_time": ("p", _P.check_out_time),
    "cancellation_policy": ("p", _P.cancellation_policy),
    "property_status": ("p", _P.status),
    "latitude": ("p", _P.latitude),
}
_SUMMARY = Sql(
    "SELECT "
    + ", ".join(f"{alias}.{source.name} AS {name}" for name, (alias, source) in _SUMMARY_COLUMNS.items())
    + " FROM room_types rt JOIN properties p ON p.id = rt.property_id WHERE rt.id = :room_type_id",
    types={"room_type_id": _RT.id.type},
    returns=[column(name, source.type) for name, (_, source) in _SUMMARY_COLUMNS.items()],
)


async def room_type_summary_in(uow: UnitOfWork, room_type_id: uuid.UUID) -> RoomTypeSummary | None:
    """`room_type_summary` as one prepared statement in the caller's unit of work (a booking's hold);
    None when the room type does not exist."""
    row = await uow.fetchrow(_SUMMARY, {"room_type_id": room_type_id})
    return None if row is None else RoomTypeSummary(**row)


async def property_room_types(session: AsyncSession, property_id: uuid.UUID) -> list[RoomTypeSummary]:
    """The property's active room types, in one query (NotFound when the property does not exist)."""
    rows = (
        await session.execute(
            select(Property, RoomType)
            .outerjoin(RoomType, and_(RoomType.property_id == Property.id, RoomType.status == "active"))
            .where(Property.id == property_id)
            .order_by(RoomType.created_at, RoomType.id)
        )
    ).all()
    if not rows:
        raise NotFound(f"No property {property_id}")
    return [_summary(room_type, prop) for prop, room_type in rows if room_type is not None]


async def active_room_types(session: AsyncSession, *, after: uuid.UUID | None, limit: int) -> list[RoomTypeSummary]:
    """Active room types of active properties in id order, `limit` at a time after `after` (for batch jobs)."""
    query = _active_room_type_page(select(RoomType, Property), after=after, limit=limit)
    return [_summary(*row) for row in (await session.execute(query)).all()]


def _active_room_type_page(query, *, after: uuid.UUID | None, limit: int):
    """Narrows `query` to one page of active room types of active properties, in id order."""
    query = (
        query.join(Property, Property.id == RoomType.property_id)
        .where(RoomType.status == "active", Property.status == "active")
        .order_by(RoomType.id)
        .limit(limit)
    )
    return query if after is None else query.where(RoomType.id > after)


@dataclass(frozen=True, slots=True)
class CalendarSeed:
    """What opening a room type's calendar needs, read in bulk without building ORM objects."""

    room_type_id: uuid.UUID
    property_id: uuid.UUID
    units: int
    base_price_amount: int
    currency: str
    timezone: str
    latitude: float


async def calendar_seeds(session: AsyncSession, *, after: uuid.UUID | None, limit: int) -> list[CalendarSeed]:
    """Active room types of active properties in id order, `limit` at a time after `after`: the
    compact rows bulk calendar seeding works from (one Core query, plain tuples)."""
    columns = (
        RoomType.id, RoomType.property_id, RoomType.units, RoomType.base_price_amount, RoomType.currency,
        Property.timezone, Property.latitude,
    )  # fmt: skip
    query = _active_room_type_page(select(*columns), after=after, limit=limit)
    return [CalendarSeed(*row) for row in (await session.execute(query)).all()]


@dataclass(frozen=True, slots=True)
class PropertyListing:
    """What read models (search) keep of a property; any status."""

    property_id: uuid.UUID
    name: str
    description: str
    property_type: str
    city: str
    country: str
    latitude: float
    longitude: float
    currency: str
    amenities: tuple[str, ...]
    rating_tenths: int | None
    status: str


@dataclass(frozen=True, slots=True)
class RoomTypeListing:
    """What read models keep of a room type; any status."""

    room_type_id: uuid.UUID
    property_id: uuid.UUID
    name: str
    max_guests: int
    status: str


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def property_count(runtime: Runtime, source: AsyncEngine | None = None) -> int:
    async with (source or runtime.db.engine).connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(Property)) or 0)


async def room_type_count(runtime: Runtime, source: AsyncEngine | None = None) -> int:
    async with (source or runtime.db.engine).connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(RoomType)) or 0)


async def property_listings(
    runtime: Runtime, *, batch_size: int = 2000, source: AsyncEngine | None = None
) -> AsyncIterator[list[PropertyListing]]:
    """Every property, any status, in batches streamed from one read (for rebuilding read models)
    of `source` (a caught-up standby, `Database.caught_up_reader`; default the primary).

    In place order (country, city), so an in-memory read model filled in this order keeps a
    city's properties together."""
    columns = (
        Property.id, Property.name, Property.description, Property.property_type, Property.city, Property.country,
        Property.latitude, Property.longitude, Property.currency, Property.amenities, Property.rating_tenths,
        Property.status,
    )  # fmt: skip
    async with (source or runtime.db.engine).connect() as conn:
        query = select(*columns).order_by(Property.country, Property.city, Property.id)
        rows = await conn.stream(query.execution_options(yield_per=batch_size))
        async for batch in rows.partitions(batch_size):
            listings = []
            for row in batch:
                amenities = row.amenities
                if isinstance(amenities, str | bytes):
                    amenities = orjson.loads(amenities)
                listings.append(
                    PropertyListing(
                        property_id=_as_uuid(row.id),
                        name=row.name,
                        description=row.description or "",
                        property_type=row.property_type,
                        city=row.city,
                        country=row.country,
                        latitude=float(row.latitude),
                        longitude=float(row.longitude),
                        currency=row.currency,
                        amenities=tuple(amenities or ()),
                        rating_tenths=row.rating_tenths,
                        status=row.status,
                    )
                )
            yield listings


async def room_type_listings(
    runtime: Runtime, *, batch_size: int = 5000, source: AsyncEngine | None = None
) -> AsyncIterator[list[RoomTypeListing]]:
    """Every room type, any status, in batches streamed from one read; in the order of
    `property_listings` (their property's place), then by id."""
    query = (
        select(RoomType.id, RoomType.property_id, RoomType.name, RoomType.max_guests, RoomType.status)
        .join(Property, Property.id == RoomType.property_id)
        .order_by(Property.country, Property.city, Property.id, RoomType.id)
    )
    async with (source or runtime.db.engine).connect() as conn:
        rows = await conn.stream(query.execution_options(yield_per=batch_size))
        async for batch in rows.partitions(batch_size):
            yield [
                RoomTypeListing(_as_uuid(r.id), _as_uuid(r.property_id), r.name, int(r.max_guests), r.status)
                for r in batch
            ]


def ensure_may_change(principal: Principal, host_id: uuid.UUID) -> None:
    """Only the owning host or an admin changes a property and everything under it."""
    if not principal.is_admin and principal.user_id != host_id:
        raise Forbidden("Only the property's host or an admin may change it")


async def authorize_room_type(session: AsyncSession, principal: Principal, room_type_id: uuid.UUID) -> RoomTypeSummary:
    """The room type's summary if `principal` may change it (its calendar, for instance); 404/403 otherwise."""
    summary = await room_type_summary(session, room_type_id)
    ensure_may_change(principal, summary.host_id)
    return summary


# ------------------------------------------------------------------ read models


def room_type_out(room_type: RoomType) -> RoomTypeOut:
    return RoomTypeOut(
        id=room_type.id,
        property_id=room_type.property_id,
        name=room_type.name,
        description=room_type.description,
        max_guests=room_type.max_guests,
        beds=room_type.beds,
        units=room_type.units,
        base_price=Money(amount=room_type.base_price_amount, currency=room_type.currency),
        status=room_type.status,
        created_at=room_type.created_at,
        updated_at=room_type.updated_at,
    )


def _property_fields(prop: Property) -> dict:
    """The fields a property's API view and its events share."""
    return {
        "host_id": prop.host_id,
        "name": prop.name,
        "description": prop.description,
        "property_type": prop.property_type,
        "address": prop.address,
        "city": prop.city,
        "country": prop.country,
        "latitude": prop.latitude,
        "longitude": prop.longitude,
        "timezone": prop.timezone,
        "currency": prop.currency,
        "amenities": list(prop.amenities or []),
        "check_in_time": prop.check_in_time,
        "check_out_time": prop.check_out_time,
        "cancellation_policy": prop.cancellation_policy,
        "rating": None if prop.rating_tenths is None else prop.rating_tenths / 10,
        "status": prop.status,
    }


def property_out(prop: Property, room_types: list[RoomType] | None = None) -> PropertyOut:
    return PropertyOut(
        id=prop.id,
        **_property_fields(prop),
        created_at=prop.created_at,
        updated_at=prop.updated_at,
        room_types=[room_type_out(r) for r in room_types or []],
    )


def property_state(prop: Property, event_type, thumbnail_url: str | None = None):
    return event_type(property_id=prop.id, **_property_fields(prop), thumbnail_url=thumbnail_url)


def room_type_state(room_type: RoomType, event_type):
    return event_type(
        room_type_id=room_type.id,
        property_id=room_type.property_id,
        name=room_type.name,
        max_guests=room_type.max_guests,
        beds=room_type.beds,
        units=room_type.units,
        base_price=Money(amount=room_type.base_price_amount, currency=room_type.currency),
        status=room_type.status,
    )


# ------------------------------------------------------------------ properties


async def _property_for_change(uow: UnitOfWork, principal: Principal, property_id: uuid.UUID) -> Property:
    prop = await uow.session.get(Property, property_id, with_for_update=True)
    if prop is None:
        raise NotFound(f"No property {property_id}")
    ensure_may_change(principal, prop.host_id)
    if prop.status == "archived":
        raise Conflict(f"Property {property_id} is archived")
    return prop


async def create_property(runtime: Runtime, principal: Principal, data: PropertyCreate) -> PropertyOut:
    """A host lists a property (admins list it for themselves); emits property.created."""
    async with runtime.db.unit_of_work() as uow:
        now = utcnow()
        prop = Property(id=new_id(), host_id=principal.user_id, status="active", created_at=now, updated_at=now)
        for field, value in data.model_dump().items():
            setattr(prop, field, value)
        uow.session.add(prop)
        await uow.session.flush()
        uow.emit(property_state(prop, PropertyCreated))
    return property_out(prop)


async def get_property(runtime: Runtime, property_id: uuid.UUID) -> PropertyOut:
    """A property with its active room types; archived ones are still returned (bookings refer to them)."""
    async with runtime.db.session() as session:
        prop = await session.get(Property, property_id)
        if prop is None:
            raise NotFound(f"No property {property_id}")
        room_types = (
            await session.scalars(
                select(RoomType)
                .where(RoomType.property_id == property_id, RoomType.status == "active")
                .order_by(RoomType.created_at, RoomType.id)
            )
        ).all()
    return property_out(prop, list(room_types))


async def update_property(
    runtime: Runtime, principal: Principal, property_id: uuid.UUID, data: PropertyUpdate
) -> PropertyOut:
    """Changes the fields sent; emits property.updated when something changed."""
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise InvalidInput(f"{field} may not be null", field=f"body.{field}")
    async with runtime.db.unit_of_work() as uow:
        prop = await _property_for_change(uow, principal, property_id)
        if "currency" in changes and changes["currency"] != prop.currency:
            # Room types and every sold night are priced in the property's currency.
            raise InvalidInput("The currency of a property with prices cannot change", field="body.currency")
        changed = {f: v for f, v in changes.items() if getattr(prop, f) != v}
        for field, value in changed.items():
            setattr(prop, field, value)
        if changed:
            prop.updated_at = utcnow()
            await uow.session.flush()
            uow.emit(
                property_state(prop, PropertyUpdated, await _thumbnail_url(uow.session, runtime.settings, prop.id))
            )
    return await get_property(runtime, property_id)


async def archive_property(runtime: Runtime, principal: Principal, property_id: uuid.UUID) -> None:
    """Takes a property off sale (it vanishes from search, its bookings stay); idempotent."""
    async with runtime.db.unit_of_work() as uow:
        prop = await uow.session.get(Property, property_id, with_for_update=True)
        if prop is None:
            raise NotFound(f"No property {property_id}")
        ensure_may_change(principal, prop.host_id)
        if prop.status == "archived":
            return
        prop.status = "archived"
        prop.updated_at = utcnow()
        uow.emit(PropertyArchived(property_id=prop.id, host_id=prop.host_id))


async def host_properties(runtime: Runtime, principal: Principal, *, cursor: str | None, limit: int) -> PropertyPage:
    """The caller's properties, oldest first (ids are time-ordered), cursor-paginated."""
    query = select(Property).where(Property.host_id == principal.user_id).order_by(Property.id).limit(limit + 1)
    if cursor:
        try:
            query = query.where(Property.id > uuid.UUID(cursor))
        except ValueError as error:
            raise InvalidInput("Invalid cursor", field="query.cursor") from error
    async with runtime.db.replica_session() as session:  # a listing may be a moment behind
        props = list((await session.scalars(query)).all())
    page = props[:limit]
    return PropertyPage(
        items=[property_out(p) for p in page], next_cursor=str(page[-1].id) if len(props) > limit else None
    )


# ------------------------------------------------------------------ room types


async def create_room_type(
    runtime: Runtime, principal: Principal, property_id: uuid.UUID, data: RoomTypeCreate
) -> RoomTypeOut:
    """Adds a room type and opens its calendar for the horizon in the same transaction."""
    async with runtime.db.unit_of_work() as uow:
        prop = await _property_for_change(uow, principal, property_id)
        if data.base_price.currency != prop.currency:
            raise InvalidInput(f"Prices of this property are in {prop.currency}", field="body.base_price.currency")
        now = utcnow()
        room_type = RoomType(
            id=new_id(),
            property_id=prop.id,
            name=data.name,
            description=data.description,
            max_guests=data.max_guests,
            beds=data.beds,
            units=data.units,
            base_price_amount=data.base_price.amount,
            currency=prop.currency,
            status="active",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(room_type)
        await uow.session.flush()
        uow.emit(room_type_state(room_type, RoomTypeCreated))
        await inventory.open_calendar(
            uow,
            property_id=prop.id,
            room_type_id=room_type.id,
            total=data.units,
            price_amount=data.base_price.amount,
            currency=prop.currency,
            start=datetime.now(ZoneInfo(prop.timezone)).date(),
            days=runtime.settings.inventory.horizon_days,
        )
    return room_type_out(room_type)


async def list_room_types(runtime: Runtime, property_id: uuid.UUID) -> list[RoomTypeOut]:
    async with runtime.db.session() as session:
        if await session.get(Property, property_id) is None:
            raise NotFound(f"No property {property_id}")
        room_types = (
            await session.scalars(
                select(RoomType).where(RoomType.property_id == property_id).order_by(RoomType.created_at, RoomType.id)
            )
        ).all()
    return [room_type_out(r) for r in room_types]


async def get_room_type(runtime: Runtime, room_type_id: uuid.UUID) -> RoomTypeOut:
    async with runtime.db.session() as session:
        room_type = await session.get(RoomType, room_type_id)
    if room_type is None:
        raise NotFound(f"No room type {room_type_id}")
    return room_type_out(room_type)


async def _room_type_for_change(
    uow: UnitOfWork, principal: Principal, room_type_id: uuid.UUID
) -> tuple[RoomType, Property]:
    room_type = await uow.session.get(RoomType, room_type_id, with_for_update=True)
    if room_type is None:
        raise NotFound(f"No room type {room_type_id}")
    prop = await uow.session.get(Property, room_type.property_id)
    ensure_may_change(principal, prop.host_id)
    return room_type, prop


async def update_room_type(
    runtime: Runtime, principal: Principal, room_type_id: uuid.UUID, data: RoomTypeUpdate
) -> RoomTypeOut:
    """Changes a room type. New `units` apply to every night from today on (409 naming the nights
    where more are held or booked); a new base price applies to nights opened from now on, the
    calendar keeps the prices already set (change those with PUT /room-types/{id}/calendar)."""
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise InvalidInput(f"{field} may not be null", field=f"body.{field}")
    async with runtime.db.unit_of_work() as uow:
        room_type, prop = await _room_type_for_change(uow, principal, room_type_id)
        if room_type.status == "archived" or prop.status == "archived":
            raise Conflict(f"Room type {room_type_id} is archived")
        if data.base_price is not None:
            if data.base_price.currency != prop.currency:
                raise InvalidInput(f"Prices of this property are in {prop.currency}", field="body.base_price.currency")
            room_type.base_price_amount = data.base_price.amount
        for field in ("name", "description", "max_guests", "beds"):
            if field in changes:
                setattr(room_type, field, changes[field])
        if data.units is not None and data.units != room_type.units:
            await inventory.set_units(
                uow,
                room_type.id,
                start=datetime.now(ZoneInfo(prop.timezone)).date(),
                units=data.units,
            )
            room_type.units = data.units
        room_type.updated_at = utcnow()
        await uow.session.flush()
        uow.emit(room_type_state(room_type, RoomTypeUpdated))
    return room_type_out(room_type)


async def archive_room_type(runtime: Runtime, principal: Principal, room_type_id: uuid.UUID) -> None:
    """Takes a room type off sale; its nights and bookings stay. Idempotent."""
    async with runtime.db.unit_of_work() as uow:
        room_type, _ = await _room_type_for_change(uow, principal, room_type_id)
        if room_type.status == "archived":
            return
        room_type.status = "archived"
        room_type.updated_at = utcnow()
        uow.emit(RoomTypeArchived(room_type_id=room_type.id, property_id=room_type.property_id))


# ------------------------------------------------------------------ photos


def photo_out(settings: Settings, photo: Photo) -> PhotoOut:
    return PhotoOut(
        id=photo.id,
        property_id=photo.property_id,
        status=photo.status,
        content_type=photo.content_type,
        width=photo.width,
        height=photo.height,
        variants=[
            PhotoVariant(
                name=v["name"],
                url=media_url(settings.catalog, v["key"]),
                width=v["width"],
                height=v["height"],
                content_type=v["content_type"],
            )
            for v in photo.variants or []
        ],
        created_at=photo.created_at,
    )


async def upload_photo(
    runtime: Runtime, principal: Principal, property_id: uuid.UUID, data: bytes, store: MediaStore | None = None
) -> PhotoOut:
    """Checks the bytes, stores the original (private) and emits photo.uploaded for the variant worker."""
    settings = runtime.settings
    inspected = inspect_image(data, max_bytes=settings.catalog.max_photo_bytes)
    store = store or media_store(settings.catalog)
    photo_id = new_id()
    key = f"originals/{property_id}/{photo_id}.{inspected.extension}"
    # The file goes in before the commit, so a committed row always has its original; when the
    # transaction fails the file is removed again, so nothing is left half-written either way.
    try:
        async with runtime.db.unit_of_work() as uow:
            await _property_for_change(uow, principal, property_id)
            photo = Photo(
                id=photo_id,
                property_id=property_id,
                original_key=key,
                content_type=inspected.content_type,
                width=inspected.width,
                height=inspected.height,
                size_bytes=len(data),
                status="processing",
                variants=[],
                created_at=utcnow(),
            )
            uow.session.add(photo)
            uow.emit(
                PhotoUploaded(
                    photo_id=photo_id, property_id=property_id, original_key=key, content_type=inspected.content_type
                )
            )
            await store.put(key, data, inspected.content_type)
    except BaseException:
        await store.delete(key)
        raise
    return photo_out(settings, photo)


async def list_photos(runtime: Runtime, property_id: uuid.UUID) -> list[PhotoOut]:
    async with runtime.db.session() as session:
        if await session.get(Property, property_id) is None:
            raise NotFound(f"No property {property_id}")
        photos = (await session.scalars(select(Photo).where(Photo.property_id == property_id).order_by(Photo.id))).all()
    return [photo_out(runtime.settings, p) for p in photos]


async def make_photo_variants(store: MediaStore, uow: UnitOfWork, payload: dict, settings: Settings) -> None:
    """Worker side of photo.uploaded: writes the variants, marks the photo ready, re-announces the property
    (its thumbnail may have changed)."""
    photo = await uow.session.get(Photo, uuid.UUID(payload["photo_id"]), with_for_update=True)
    if photo is None or photo.status == "ready":
        return
    original = await store.get(payload["original_key"])
    try:
        rendered = await asyncio.to_thread(render_variants, original)
    except RENDER_ERRORS as error:
        log.warning(
            "photo could not be processed", error_type=type(error).__name__, context={"photo_id": str(photo.id)}
        )
        photo.status = "failed"
        return
    variants = []
    for name, data, width, height, content_type, extension in rendered:
        key = f"{PUBLIC_MEDIA_PREFIX}{photo.property_id}/{photo.id}/{name}.{extension}"
        await store.put(key, data, content_type)
        variants.append({"name": name, "key": key, "width": width, "height": height, "content_type": content_type})
    photo.variants = variants
    photo.status = "ready"
    await uow.session.flush()
    prop = await uow.session.get(Property, photo.property_id)
    if prop is not None and prop.status == "active":
        uow.emit(property_state(prop, PropertyUpdated, await _thumbnail_url(uow.session, settings, prop.id)))


async def _thumbnail_url(session: AsyncSession, settings: Settings, property_id: uuid.UUID) -> str | None:
    """The first ready photo's thumbnail: what search shows on a result card."""
    variants = await session.scalar(
        select(Photo.variants)
        .where(Photo.property_id == property_id, Photo.status == "ready")
        .order_by(Photo.id)
        .limit(1)
    )
    for variant in variants or []:
        if variant["name"] == "thumb":
            return media_url(settings.catalog, variant["key"])
    return None
