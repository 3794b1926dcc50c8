"""Events the payments context publishes (payloads per docs/events.md)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from staybook.kernel.events import Event
from staybook.kernel.schemas import Money


class PaymentAuthorised(Event):
    context: ClassVar[str] = "payments"
    event_type: ClassVar[str] = "payment.authorised"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    amount: Money
    provider: str
    provider_reference: str


class PaymentCaptured(Event):
    context: ClassVar[str] = "payments"
    event_type: ClassVar[str] = "payment.captured"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    amount: Money
    provider: str
    provider_reference: str


class PaymentFailed(Event):
    context: ClassVar[str] = "payments"
    event_type: ClassVar[str] = "payment.failed"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    reason: str
    provider: str


class PaymentRefunded(Event):
    context: ClassVar[str] = "payments"
    event_type: ClassVar[str] = "payment.refunded"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
    amount: Money
    provider_reference: str


class PaymentVoided(Event):
    context: ClassVar[str] = "payments"
    event_type: ClassVar[str] = "payment.voided"

    payment_id: uuid.UUID
    booking_id: uuid.UUID
