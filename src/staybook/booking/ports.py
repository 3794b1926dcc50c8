"""What booking needs to know about the thing being booked, behind a port.

`StayCatalog` is the booking context's view of the catalog: the facts of a room
type and its property that a booking copies in at hold time. `SqlStayCatalog`
reads them with plain SQL over the `properties` and `room_types` tables (their
columns are a published contract; booking never imports catalog's models).
Nightly prices come from the hold itself (the inventory's RETURNING clause), so
the price charged is the price of the rows actually held.

When `staybook.catalog.service.room_type_summary` lands, `SqlStayCatalog` becomes
a thin call to it; the port does not change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class RoomTypeFacts:
    room_type_id: uuid.UUID
    room_type_name: str
    max_guests: int
    room_type_status: str
    property_id: uuid.UUID
    host_id: uuid.UUID
    property_name: str
    address: str
    city: str
    country: str
    timezone: str
    currency: str
    check_in_time: str
    check_out_time: str
    cancellation_policy: str
    property_status: str

    @property
    def bookable(self) -> bool:
        return self.room_type_status == "active" and self.property_status == "active"

    def property_snapshot(self) -> dict:
        return {
            "property_id": str(self.property_id),
            "name": self.property_name,
            "address": self.address,
            "city": self.city,
            "country": self.country,
            "timezone": self.timezone,
            "check_in_time": self.check_in_time,
            "check_out_time": self.check_out_time,
        }


class StayCatalog(Protocol):
    async def room_type(self, session: AsyncSession, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        """The room type with its property's facts, or None when it does not exist."""


_ROOM_TYPE = (
    text(
        """
    SELECT rt.id AS room_type_id, rt.name AS room_type_name, rt.max_guests, rt.status AS room_type_status,
           p.id AS property_id, p.host_id, p.name AS property_name, p.address, p.city, p.country, p.timezone,
           p.currency, p.check_in_time, p.check_out_time, p.cancellation_policy, p.status AS property_status
    FROM room_types rt JOIN properties p ON p.id = rt.property_id
    WHERE rt.id = :room_type_id
    """
    )
    .bindparams(bindparam("room_type_id", type_=Uuid))
    .columns(room_type_id=Uuid, property_id=Uuid, host_id=Uuid)
)


class SqlStayCatalog:
    async def room_type(self, session: AsyncSession, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        row = (await session.execute(_ROOM_TYPE, {"room_type_id": room_type_id})).mappings().first()
        if row is None:
            return None
        return RoomTypeFacts(**row)
