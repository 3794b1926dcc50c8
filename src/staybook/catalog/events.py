"""Events the catalog context publishes, and the subscriptions it reacts with."""

from __future__ import annotations

import uuid
from typing import ClassVar

from staybook.kernel.events import Event
from staybook.kernel.schemas import Money


class PropertyState(Event):
    """What search and personalisation need to show a property (event-carried state transfer)."""

    context: ClassVar[str] = "catalog"

    property_id: uuid.UUID
    host_id: uuid.UUID
    name: str
    description: str
    address: str
    city: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    currency: str
    amenities: list[str]
    property_type: str
    rating: float | None
    check_in_time: str
    check_out_time: str
    cancellation_policy: str
    status: str
    thumbnail_url: str | None


class PropertyCreated(PropertyState):
    event_type: ClassVar[str] = "property.created"


class PropertyUpdated(PropertyState):
    event_type: ClassVar[str] = "property.updated"


class PropertyArchived(Event):
    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "property.archived"

    property_id: uuid.UUID
    host_id: uuid.UUID


class RoomTypeState(Event):
    context: ClassVar[str] = "catalog"

    room_type_id: uuid.UUID
    property_id: uuid.UUID
    name: str
    max_guests: int
    beds: int
    units: int
    base_price: Money
    status: str


class RoomTypeCreated(RoomTypeState):
    event_type: ClassVar[str] = "room_type.created"


class RoomTypeUpdated(RoomTypeState):
    event_type: ClassVar[str] = "room_type.updated"


class RoomTypeArchived(Event):
    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "room_type.archived"

    room_type_id: uuid.UUID
    property_id: uuid.UUID


class PhotoUploaded(Event):
    context: ClassVar[str] = "catalog"
    event_type: ClassVar[str] = "photo.uploaded"

    photo_id: uuid.UUID
    property_id: uuid.UUID
    original_key: str
    content_type: str
