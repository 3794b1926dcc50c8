"""Use cases of the catalog context: commands in, events out.

Hosts own properties (`Property.host_id` is the identity user id); a property's
room types and photos are changed only by its host or an admin. Creating a room
type opens its inventory calendar in the same unit of work, so a room type never
exists without nights to sell.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from staybook.catalog import repository
from staybook.catalog.events import (
    PhotoUploaded,
    PropertyArchived,
    PropertyCreated,
    PropertyUpdated,
    RoomTypeArchived,
    RoomTypeCreated,
    RoomTypeUpdated,
)
from staybook.catalog.facts import ensure_may_change
from staybook.catalog.media import (
    PUBLIC_MEDIA_PREFIX,
    RENDER_ERRORS,
    MediaStore,
    inspect_image,
    media_store,
    media_url,
    render_variants,
)
from staybook.catalog.models import ListingStatus, Photo, PhotoStatus, Property, RoomType
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
from staybook.kernel.db import UnitOfWork
from staybook.kernel.errors import Conflict, InvalidInput, NotFound
from staybook.kernel.orm import as_uuid, new_id, utcnow
from staybook.kernel.runtime import Runtime
from staybook.kernel.schemas import Money
from staybook.kernel.security import Principal
from staybook.kernel.settings import Settings

log = structlog.get_logger("staybook.catalog")


# ------------------------------------------------------------------ read models


def _room_type_fields(room_type: RoomType) -> dict:
    """The fields a room type's API view and its events share."""
    return {
        "property_id": room_type.property_id,
        "name": room_type.name,
        "max_guests": room_type.max_guests,
        "beds": room_type.beds,
        "units": room_type.units,
        "base_price": Money(amount=room_type.base_price_amount, currency=room_type.currency),
        "status": room_type.status,
    }


def room_type_out(room_type: RoomType) -> RoomTypeOut:
    return RoomTypeOut(
        id=room_type.id,
        **_room_type_fields(room_type),
        description=room_type.description,
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
    return event_type(room_type_id=room_type.id, **_room_type_fields(room_type))


# ------------------------------------------------------------------ properties


async def _property_for_change(uow: UnitOfWork, principal: Principal, property_id: uuid.UUID) -> Property:
    prop = await uow.session.get(Property, property_id, with_for_update=True)
    if prop is None:
        raise NotFound(f"No property {property_id}")
    ensure_may_change(principal, prop.host_id)
    if prop.status == ListingStatus.ARCHIVED:
        raise Conflict(f"Property {property_id} is archived")
    return prop


async def create_property(runtime: Runtime, principal: Principal, data: PropertyCreate) -> PropertyOut:
    """A host lists a property (admins list it for themselves); emits property.created."""
    async with runtime.db.unit_of_work() as uow:
        now = utcnow()
        prop = Property(
            id=new_id(), host_id=principal.user_id, status=ListingStatus.ACTIVE, created_at=now, updated_at=now
        )
        for field, value in data.model_dump().items():
            setattr(prop, field, value)
        uow.session.add(prop)
        await uow.session.flush()
        uow.emit(property_state(prop, PropertyCreated))
    return property_out(prop)


def _property_namespace(property_id: uuid.UUID) -> str:
    return f"catalog:property:{property_id}"


async def property_document(runtime: Runtime, property_id: uuid.UUID) -> bytes:
    """`get_property` as the JSON bytes the API sends, from the cache (`property_cache_seconds`)
    under a namespace every change of the property bumps after its commit (`_forget_property`), so
    no reader sees an answer older than a change it could have seen. A hit is one cache round trip
    and no database session; an unknown property is not cached."""
    seconds = runtime.settings.catalog.property_cache_seconds

    async def load() -> bytes:
        return (await get_property(runtime, property_id)).model_dump_json().encode()

    if not seconds:
        return await load()
    namespace = _property_namespace(property_id)
    return await runtime.cache.get_or_load_versioned(namespace, "document", seconds, load, metric="catalog")


async def _forget_property(runtime: Runtime, property_id: uuid.UUID) -> None:
    await runtime.cache.bump_namespace(_property_namespace(property_id))


async def get_property(runtime: Runtime, property_id: uuid.UUID) -> PropertyOut:
    """A property with its active room types; archived ones are still returned (bookings refer to them)."""
    async with runtime.db.session() as session:
        prop = await session.get(Property, property_id)
        if prop is None:
            raise NotFound(f"No property {property_id}")
        room_types = await repository.room_types_of(session, property_id, active_only=True)
    return property_out(prop, room_types)


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
    if changed:
        await _forget_property(runtime, property_id)
    return await get_property(runtime, property_id)


async def archive_property(runtime: Runtime, principal: Principal, property_id: uuid.UUID) -> None:
    """Takes a property off sale (it vanishes from search, its bookings stay); idempotent."""
    async with runtime.db.unit_of_work() as uow:
        prop = await uow.session.get(Property, property_id, with_for_update=True)
        if prop is None:
            raise NotFound(f"No property {property_id}")
        ensure_may_change(principal, prop.host_id)
        if prop.status == ListingStatus.ARCHIVED:
            return
        prop.status = ListingStatus.ARCHIVED
        prop.updated_at = utcnow()
        uow.emit(PropertyArchived(property_id=prop.id, host_id=prop.host_id))
    await _forget_property(runtime, property_id)


async def host_properties(runtime: Runtime, principal: Principal, *, cursor: str | None, limit: int) -> PropertyPage:
    """The caller's properties, oldest first (ids are time-ordered), cursor-paginated."""
    after = None
    if cursor:
        try:
            after = uuid.UUID(cursor)
        except ValueError as error:
            raise InvalidInput("Invalid cursor", field="query.cursor") from error
    async with runtime.db.replica_session() as session:  # a listing may be a moment behind
        props = await repository.host_property_page(session, principal.user_id, after=after, limit=limit + 1)
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
            status=ListingStatus.ACTIVE,
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
    await _forget_property(runtime, property_id)
    return room_type_out(room_type)


async def list_room_types(runtime: Runtime, property_id: uuid.UUID) -> list[RoomTypeOut]:
    async with runtime.db.session() as session:
        if await session.get(Property, property_id) is None:
            raise NotFound(f"No property {property_id}")
        room_types = await repository.room_types_of(session, property_id, active_only=False)
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
        if ListingStatus.ARCHIVED in (room_type.status, prop.status):
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
    await _forget_property(runtime, room_type.property_id)
    return room_type_out(room_type)


async def archive_room_type(runtime: Runtime, principal: Principal, room_type_id: uuid.UUID) -> None:
    """Takes a room type off sale; its nights and bookings stay. Idempotent."""
    async with runtime.db.unit_of_work() as uow:
        room_type, _ = await _room_type_for_change(uow, principal, room_type_id)
        if room_type.status == ListingStatus.ARCHIVED:
            return
        room_type.status = ListingStatus.ARCHIVED
        room_type.updated_at = utcnow()
        uow.emit(RoomTypeArchived(room_type_id=room_type.id, property_id=room_type.property_id))
    await _forget_property(runtime, room_type.property_id)


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
                status=PhotoStatus.PROCESSING,
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
        photos = await repository.photos_of(session, property_id)
    return [photo_out(runtime.settings, p) for p in photos]


async def make_photo_variants(store: MediaStore, uow: UnitOfWork, payload: dict, settings: Settings) -> None:
    """Worker side of photo.uploaded: writes the variants, marks the photo ready, re-announces the property
    (its thumbnail may have changed)."""
    photo = await uow.session.get(Photo, as_uuid(payload["photo_id"]), with_for_update=True)
    if photo is None or photo.status == PhotoStatus.READY:
        return
    original = await store.get(payload["original_key"])
    try:
        rendered = await asyncio.to_thread(render_variants, original)
    except RENDER_ERRORS as error:
        log.warning(
            "photo could not be processed", error_type=type(error).__name__, context={"photo_id": str(photo.id)}
        )
        photo.status = PhotoStatus.FAILED
        return
    variants = []
    for name, data, width, height, content_type, extension in rendered:
        key = f"{PUBLIC_MEDIA_PREFIX}{photo.property_id}/{photo.id}/{name}.{extension}"
        await store.put(key, data, content_type)
        variants.append({"name": name, "key": key, "width": width, "height": height, "content_type": content_type})
    photo.variants = variants
    photo.status = PhotoStatus.READY
    await uow.session.flush()
    prop = await uow.session.get(Property, photo.property_id)
    if prop is not None and prop.status == ListingStatus.ACTIVE:
        uow.emit(property_state(prop, PropertyUpdated, await _thumbnail_url(uow.session, settings, prop.id)))


async def _thumbnail_url(session: AsyncSession, settings: Settings, property_id: uuid.UUID) -> str | None:
    """The first ready photo's thumbnail: what search shows on a result card."""
    for variant in await repository.first_ready_photo_variants(session, property_id):
        if variant["name"] == "thumb":
            return media_url(settings.catalog, variant["key"])
    return None
