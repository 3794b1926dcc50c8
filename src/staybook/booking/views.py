"""How a booking reads outside the context: the API's view and the events' snapshot, from one
builder, and the guest's details as stored (sealed) and shown (opened).

Both views read the same attributes of an ORM row or a driver Record (repository.py).
"""

from __future__ import annotations

from staybook.booking.domain import BookingStatus
from staybook.booking.events import BookingSnapshot
from staybook.booking.schemas import BookingOut, PaymentOutcome, PaymentSummary
from staybook.kernel.crypto import Sealer

GUEST_PURPOSE = "bookings.guest"
ERASED_GUEST = {"erased": True}


def seal_guest(sealer: Sealer, guest: dict) -> dict:
    """The guest's name, email and phone as stored: sealed (kernel/crypto.py), never plain text."""
    return {"sealed": sealer.seal(guest, GUEST_PURPOSE)}


def open_guest(sealer: Sealer, stored: dict) -> dict:
    """A stored guest, opened; `{"erased": true}` once the guest's data was erased."""
    if isinstance(stored, dict) and "sealed" in stored:
        return sealer.open(stored["sealed"], GUEST_PURPOSE)
    return stored


def _shared(booking) -> dict:
    """What the event's snapshot and the API's view both say of a booking, in the same words."""
    return {
        "reference": booking.reference,
        "status": booking.status,
        "guest_user_id": booking.guest_user_id,
        "host_id": booking.host_id,
        "property": booking.property,
        "room_type": {"room_type_id": str(booking.room_type_id), "name": booking.room_type_name},
        "nights": (booking.check_out - booking.check_in).days,
        "units": booking.units,
        "guests": booking.guests,
        "total": {"amount": booking.total_amount, "currency": booking.currency},
        "cancellation_policy": booking.cancellation_policy,
    }


def _expires_at(booking):
    """A hold's deadline; no other status has one."""
    return booking.expires_at if booking.status == BookingStatus.HELD else None


def snapshot(booking) -> BookingSnapshot:
    """The `booking` object every booking event carries (no guest details: docs/events.md)."""
    expires_at = _expires_at(booking)
    return BookingSnapshot(
        booking_id=booking.id,
        check_in=booking.check_in.isoformat(),
        check_out=booking.check_out.isoformat(),
        expires_at=expires_at.isoformat() if expires_at is not None else None,
        **_shared(booking),
    )


def present(booking, sealer: Sealer) -> dict:
    """The booking as the API shows it (JSON-ready; also what idempotent replays return)."""
    return BookingOut(
        id=booking.id,
        guest=open_guest(sealer, booking.guest),
        check_in=booking.check_in,
        check_out=booking.check_out,
        price_breakdown=booking.nightly_prices,
        expires_at=_expires_at(booking),
        payment_id=booking.payment_id,
        refund={"amount": booking.refund_amount, "currency": booking.currency}
        if booking.refund_amount is not None
        else None,
        cancelled_by=booking.cancelled_by,
        failure_reason=booking.failure_reason,
        created_at=booking.created_at,
        **_shared(booking),
    ).model_dump(mode="json")


def outcome(sealer: Sealer, booking, payment, outcome: str, detail: str) -> dict:
    """A payment request's answer: the booking, its payment (a payments.PaymentView), what happened."""
    summary = None
    if payment is not None:
        summary = PaymentSummary(
            payment_id=payment.id,
            status=payment.status,
            amount={"amount": payment.amount, "currency": payment.currency},
            refunded={"amount": payment.refunded_amount, "currency": payment.currency},
        )
    return PaymentOutcome(booking=present(booking, sealer), payment=summary, outcome=outcome, detail=detail).model_dump(
        mode="json"
    )
