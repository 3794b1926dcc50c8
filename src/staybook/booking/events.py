"""Events the booking context publishes (payloads per docs/events.md), and its subscriptions."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel

from staybook.kernel.events import Event
from staybook.kernel.schemas import Money


class BookingSnapshot(BaseModel):
    """The `booking` object every booking event carries (event-carried state transfer). The guest's
    name, email and phone are not in it: a consumer that needs them asks
    `booking.service.guest_details` (events and the outbox hold ids, not contact data)."""

    booking_id: uuid.UUID
    reference: str
    status: str
    guest_user_id: uuid.UUID
    host_id: uuid.UUID
    property: dict
    room_type: dict
    check_in: str
    check_out: str
    nights: int
    units: int
    guests: int
    total: Money
    expires_at: str | None
    cancellation_policy: str


class BookingHeld(Event):
    context: ClassVar[str] = "booking"
    event_type: ClassVar[str] = "booking.held"

    booking: BookingSnapshot


class BookingConfirmed(Event):
    context: ClassVar[str] = "booking"
    event_type: ClassVar[str] = "booking.confirmed"

    booking: BookingSnapshot
    payment_id: uuid.UUID


class BookingPaymentFailed(Event):
    context: ClassVar[str] = "booking"
    event_type: ClassVar[str] = "booking.payment_failed"

    booking: BookingSnapshot
    reason: str


class BookingExpired(Event):
    context: ClassVar[str] = "booking"
    event_type: ClassVar[str] = "booking.expired"

    booking: BookingSnapshot


class BookingCancelled(Event):
    context: ClassVar[str] = "booking"
    event_type: ClassVar[str] = "booking.cancelled"

    booking: BookingSnapshot
    cancelled_by: str
    refund: Money
