"""The events notifications react to (docs/events.md). It publishes none.

Every handler runs in the consumer's unit of work with the kernel inbox, so a redelivered
event records nothing twice; handlers only write rows, the sender job does the network I/O.
"""

from __future__ import annotations

import uuid

from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.notifications import service

# Event type -> (guest notice, host notice or None).
BOOKING_NOTICES: dict[str, tuple[str, str | None]] = {
    "booking.held": ("booking_held", None),
    "booking.confirmed": ("booking_confirmed", "host_new_booking"),
    "booking.payment_failed": ("booking_payment_failed", None),
    "booking.expired": ("booking_expired", None),
    "booking.cancelled": ("booking_cancelled", "host_booking_cancelled"),
}


async def on_user_changed(envelope: EventEnvelope, uow: UnitOfWork) -> None:
    await service.remember_contact(uow, envelope.payload)


async def on_user_erased(envelope: EventEnvelope, uow: UnitOfWork) -> None:
    await service.erase_user(uow, uuid.UUID(str(envelope.payload["user_id"])))


async def on_user_signed_in(envelope: EventEnvelope, uow: UnitOfWork) -> None:
    await service.notify_user(uow, envelope, "sign_in_alert", envelope.payload)


async def on_booking_event(envelope: EventEnvelope, uow: UnitOfWork) -> None:
    booking = envelope.payload["booking"]
    guest_notice, host_notice = BOOKING_NOTICES[envelope.type]
    extra = {}
    if envelope.type == "booking.payment_failed":
        extra["reason"] = envelope.payload.get("reason") or "declined"
    if envelope.type == "booking.cancelled":
        extra["cancelled_by"] = envelope.payload.get("cancelled_by") or "guest"
        extra["refund"] = envelope.payload.get("refund") or {"amount": 0, "currency": booking["total"]["currency"]}
    await service.remember_booking(uow, booking)
    await service.notify_guest(uow, envelope, guest_notice, booking, **extra)
    if host_notice is not None:
        host_extra = {"cancelled_by": extra["cancelled_by"]} if "cancelled_by" in extra else {}
        await service.notify_host(uow, envelope, host_notice, booking, **host_extra)


async def on_payment_refunded(envelope: EventEnvelope, uow: UnitOfWork) -> None:
    await service.notify_refund(uow, envelope, envelope.payload)


def _subscription(context: str, event_type: str, handler) -> Subscription:
    # One consumer name per subject: kernel dead-letter replay finds the handler by that name.
    return Subscription(f"notifications.{event_type}", f"staybook.{context}.{event_type}", handler)


SUBSCRIPTIONS = [
    _subscription("identity", "user.registered", on_user_changed),
    _subscription("identity", "user.updated", on_user_changed),
    _subscription("identity", "user.erased", on_user_erased),
    _subscription("identity", "user.signed_in", on_user_signed_in),
    *(_subscription("booking", event_type, on_booking_event) for event_type in BOOKING_NOTICES),
    _subscription("payments", "payment.refunded", on_payment_refunded),
]
