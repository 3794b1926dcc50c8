"""The catalog's SQL: the queries of its use cases and of `catalog.facts`, the prepared statement of
a booking's hold (ADR 0012), and the plain shapes they return (room type summaries, calendar seeds,
listings). The ORM objects a use case changes are loaded in `service.py` through its session; every
SELECT written out is here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import orjson
from sqlalchemy import and_, column, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from staybook.catalog.models import ListingStatus, Photo, PhotoStatus, Property, RoomType, on_sale
from staybook.kernel.dates import today_in
from staybook.kernel.db import Sql, UnitOfWork
from staybook.kernel.errors import NotFound
from staybook.kernel.orm import as_uuid
from staybook.kernel.runtime import Runtime

# ------------------------------------------------------------------ what other contexts read (through catalog.facts)


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
        return on_sale(self.room_type_status, self.property_status)

    def today(self) -> date:
        """Today's date where the property is (stays are in the property's local dates)."""
        return today_in(self.timezone)


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


# A property's active room types as summaries: the property row always (so an unknown property is
# told from one without active room types), its room types' columns NULL when it has none.
_PROPERTY_ROOM_TYPES = Sql(
    "SELECT "
    + ", ".join(f"{alias}.{source.name} AS {name}" for name, (alias, source) in _SUMMARY_COLUMNS.items())
    + " FROM properties p LEFT JOIN room_types rt ON rt.property_id = p.id AND rt.status = :active"
    " WHERE p.id = :property_id ORDER BY rt.created_at, rt.id",
    types={"property_id": _P.id.type, "active": _RT.status.type},
    returns=[column(name, source.type) for name, (_, source) in _SUMMARY_COLUMNS.items()],
)


async def property_room_types_in(uow: UnitOfWork, property_id: uuid.UUID) -> list[RoomTypeSummary]:
    """`property_room_types` as one prepared statement (the availability answer's cache miss)."""
    rows = await uow.fetch(_PROPERTY_ROOM_TYPES, {"property_id": property_id, "active": ListingStatus.ACTIVE.value})
    if not rows:
        raise NotFound(f"No property {property_id}")
    return [RoomTypeSummary(**row) for row in rows if row["room_type_id"] is not None]


async def property_room_types(session: AsyncSession, property_id: uuid.UUID) -> list[RoomTypeSummary]:
    """The property's active room types, in one query (NotFound when the property does not exist)."""
    rows = (
        await session.execute(
            select(Property, RoomType)
            .outerjoin(RoomType, and_(RoomType.property_id == Property.id, RoomType.status == ListingStatus.ACTIVE))
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
        .where(RoomType.status == ListingStatus.ACTIVE, Property.status == ListingStatus.ACTIVE)
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
                        property_id=as_uuid(row.id),
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
                RoomTypeListing(as_uuid(r.id), as_uuid(r.property_id), r.name, int(r.max_guests), r.status)
                for r in batch
            ]


# ------------------------------------------------------------------ the use cases' reads


async def room_types_of(session: AsyncSession, property_id: uuid.UUID, *, active_only: bool) -> list[RoomType]:
    """The property's room types (only the active ones, or all), oldest first."""
    query = select(RoomType).where(RoomType.property_id == property_id)
    if active_only:
        query = query.where(RoomType.status == ListingStatus.ACTIVE)
    return list((await session.scalars(query.order_by(RoomType.created_at, RoomType.id))).all())


async def host_property_page(
    session: AsyncSession, host_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Property]:
    """Up to `limit` of the host's properties in id order (time order: ids are UUIDv7), after `after`."""
    query = select(Property).where(Property.host_id == host_id).order_by(Property.id).limit(limit)
    if after is not None:
        query = query.where(Property.id > after)
    return list((await session.scalars(query)).all())


async def photos_of(session: AsyncSession, property_id: uuid.UUID) -> list[Photo]:
    return list((await session.scalars(select(Photo).where(Photo.property_id == property_id).order_by(Photo.id))).all())


async def first_ready_photo_variants(session: AsyncSession, property_id: uuid.UUID) -> list[dict]:
    """The variants of the property's first ready photo (none: an empty list)."""
    variants = await session.scalar(
        select(Photo.variants)
        .where(Photo.property_id == property_id, Photo.status == PhotoStatus.READY)
        .order_by(Photo.id)
        .limit(1)
    )
    return list(variants or [])
