"""Request and response models of the booking context."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field, field_validator

from staybook.kernel.contact import EmailAddress, PhoneNumber
from staybook.kernel.schemas import Money, Schema, examples

# A payment method is the provider's token; anything that looks like a card number is refused
# here so it is never logged or stored (PCI scope stays with the provider).
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{2,99}$")


class GuestDetails(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    email: EmailAddress = Field(..., max_length=254)
    phone: PhoneNumber | None = Field(None, max_length=32)
    locale: str = Field("en", max_length=16)


class HoldRequest(Schema):
    model_config = examples(
        {
            "room_type_id": "01a23b60-2b1b-7d6e-8c3a-5f0e9b7c2d41",
            "check_in": "2027-03-01",
            "check_out": "2027-03-04",
            "guests": 2,
            "units": 1,
            "guest": {"name": "Dana Guest", "email": "guest@staybook.demo", "phone": "+33612345678", "locale": "en"},
        }
    )

    room_type_id: uuid.UUID
    check_in: date
    check_out: date
    guests: int = Field(..., ge=1, le=50)
    units: int = Field(1, ge=1, le=20)
    guest: GuestDetails


class PaymentRequest(Schema):
    model_config = examples({"payment_method": "tok_success"})

    payment_method: str = Field(..., description="A token from the payment provider, e.g. tok_success")

    @field_validator("payment_method")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError("must be a payment provider token (card numbers are never accepted)")
        return value


class CancelRequest(Schema):
    model_config = examples({"reason": "Our plans changed"})

    reason: str | None = Field(None, max_length=500)


class NightPrice(BaseModel):
    night: date
    amount: int


class PaymentSummary(BaseModel):
    payment_id: uuid.UUID
    status: str
    amount: Money
    refunded: Money


class BookingOut(BaseModel):
    id: uuid.UUID
    reference: str
    status: str
    guest_user_id: uuid.UUID
    guest: dict
    host_id: uuid.UUID
    property: dict
    room_type: dict
    check_in: date
    check_out: date
    nights: int
    units: int
    guests: int
    total: Money
    price_breakdown: list[NightPrice]
    cancellation_policy: str
    expires_at: datetime | None
    payment_id: uuid.UUID | None
    refund: Money | None
    cancelled_by: str | None
    failure_reason: str | None
    created_at: datetime


class PaymentOutcome(BaseModel):
    booking: BookingOut
    payment: PaymentSummary | None
    outcome: str = Field(..., description="confirmed | payment_failed | pending | refunded")
    detail: str
