"""What booking needs from outside, behind ports: the process's payments (`BookingDeps`), and what it
needs to know about the thing being booked.

`StayCatalog` is the booking context's view of the catalog: the facts of a room
type and its property that a booking copies in at hold time. `CatalogStayCatalog`
asks the catalog context's service for them (booking never imports catalog's
models). Nightly prices come from the hold itself (the inventory's RETURNING
clause), so the price charged is the price of the rows actually held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from staybook.catalog import facts as catalog_service
from staybook.kernel.db import UnitOfWork
from staybook.payments.service import PaymentsDeps


@dataclass(frozen=True)
class BookingDeps:
    """What the booking context uses in a process (built by `bootstrap.lifespan`): the payments
    context's provider and breaker, which the saga calls."""

    payments: PaymentsDeps


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
    async def room_type(self, uow: UnitOfWork, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        """The room type with its property's facts (read in the caller's unit of work), or None
        when it does not exist."""


class CatalogStayCatalog:
    async def room_type(self, uow: UnitOfWork, room_type_id: uuid.UUID) -> RoomTypeFacts | None:
        summary = await catalog_service.room_type_summary_in(uow, room_type_id)
        if summary is None:
            return None
        return RoomTypeFacts(
            room_type_id=summary.room_type_id,
            room_type_name=summary.room_type_name,
            max_guests=summary.max_guests,
            room_type_status=summary.room_type_status,
            property_id=summary.property_id,
            host_id=summary.host_id,
            property_name=summary.property_name,
            address=summary.address,
            city=summary.city,
            country=summary.country,
            timezone=summary.timezone,
            currency=summary.currency,
            check_in_time=summary.check_in_time,
            check_out_time=summary.check_out_time,
            cancellation_policy=summary.cancellation_policy,
            property_status=summary.property_status,
        )
