"""Request and response models of the notifications context."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from staybook.kernel.schemas import Schema

NotificationTypeName = Literal[
    "booking_held",
    "booking_confirmed",
    "booking_payment_failed",
    "booking_expired",
    "booking_cancelled",
    "payment_refunded",
    "host_new_booking",
    "host_booking_cancelled",
    "sign_in_alert",
]


class NotificationPreferences(BaseModel):
    """Whether each notification type is sent on each channel (effective values, defaults included)."""

    email: dict[str, bool]
    sms: dict[str, bool]
    push: dict[str, bool]
    transactional: list[str] = Field(description="Types whose email cannot be switched off")


class NotificationPreferencesUpdate(Schema):
    """Choices to change; types left out keep their current value."""

    email: dict[NotificationTypeName, bool] = Field(default_factory=dict)
    sms: dict[NotificationTypeName, bool] = Field(default_factory=dict)
    push: dict[NotificationTypeName, bool] = Field(default_factory=dict)


class DeadDelivery(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    status: str = Field(description="dead: attempts exhausted; failed: refused for good (e.g. an invalid address)")
    channel: str
    template: str
    recipient_hash: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ReplayAccepted(BaseModel):
    id: uuid.UUID
    status: str
